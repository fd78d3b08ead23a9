"""What every analysis uses, and nothing analysis-specific: model-state guard, the batched evaluator, and more."""

from landscape.core.evaluate import Evaluation, LossFn, cross_entropy, evaluate
from landscape.core.state import ModelState
from landscape.core.threads import default_threads, set_threads

__all__ = ["Evaluation", "LossFn", "ModelState", "cross_entropy", "default_threads", "evaluate", "set_threads"]
