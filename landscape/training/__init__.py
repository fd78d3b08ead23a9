"""Training: the loop with its callbacks, checkpoints every epoch, resume, and the trajectory of a run."""

from landscape.training.loop import (
    SCHEDULES,
    StepContext,
    TrainResult,
    evaluate,
    lr_at,
    seeded_model,
    train,
    trajectory,
)

__all__ = ["SCHEDULES", "StepContext", "TrainResult", "evaluate", "lr_at", "seeded_model", "train", "trajectory"]
