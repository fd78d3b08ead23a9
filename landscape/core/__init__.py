"""What every analysis uses, and nothing analysis-specific: model-state guard, the batched evaluator, and more."""

from landscape.core.evaluate import Evaluation, LossFn, cross_entropy, evaluate
from landscape.core.state import ModelState

__all__ = ["Evaluation", "LossFn", "ModelState", "cross_entropy", "evaluate"]
