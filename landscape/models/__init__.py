"""Model zoo: ResNet / FMMNet / attention variants in every depth, and users' own models."""

from landscape.models.attention import CBAM, AttentionModule, AttentionWeights, SqueezeExcitation
from landscape.models.registry import build_model, count_parameters, list_models, register_model
from landscape.models.resnet import BasicBlock, ResNet

__all__ = [
    "CBAM",
    "AttentionModule",
    "AttentionWeights",
    "BasicBlock",
    "ResNet",
    "SqueezeExcitation",
    "build_model",
    "count_parameters",
    "list_models",
    "register_model",
]
