"""Training: the loop with its callbacks, checkpoints every epoch, resume, and the trajectory of a run."""

from landscape.training.loop import (
    OPTIMIZERS,
    SCHEDULES,
    StepContext,
    TrainResult,
    evaluate,
    lr_at,
    seeded_model,
    train,
    trajectory,
)
from landscape.training.losses import LOSSES

__all__ = ["LOSSES", "OPTIMIZERS", "SCHEDULES", "StepContext", "TrainResult", "evaluate", "lr_at", "seeded_model",
           "train", "trajectory"]
