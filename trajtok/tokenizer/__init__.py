"""The TrajTok tokenizer and its parts."""

from trajtok.tokenizer.adapter import FeaturePatches, FeatureTrajTok, PooledPatches
from trajtok.tokenizer.features import FrozenVideoFeatures
from trajtok.tokenizer.pixel_encoder import (
    ConvPyramid,
    EfficientNetLite,
    HFBackbone,
    PixelEncoder,
)
from trajtok.tokenizer.registry import (
    create_tokenizer,
    list_presets,
    list_tokenizers,
    register_tokenizer,
    scale_of,
    tokenizer_sizes,
)
from trajtok.tokenizer.rlt import RLT
from trajtok.tokenizer.segmenter import Segmenter
from trajtok.tokenizer.token_learner import TokenLearner
from trajtok.tokenizer.tome import ToMe
from trajtok.tokenizer.trajectory_encoder import TrajectoryEncoder
from trajtok.tokenizer.trajtok import TrajTok
from trajtok.tokenizer.tubelets import ViT3D

__all__ = [
    "RLT",
    "ConvPyramid",
    "EfficientNetLite",
    "FeaturePatches",
    "FeatureTrajTok",
    "FrozenVideoFeatures",
    "HFBackbone",
    "PixelEncoder",
    "PooledPatches",
    "Segmenter",
    "ToMe",
    "TokenLearner",
    "TrajTok",
    "TrajectoryEncoder",
    "ViT3D",
    "create_tokenizer",
    "list_presets",
    "list_tokenizers",
    "register_tokenizer",
    "scale_of",
    "tokenizer_sizes",
]
