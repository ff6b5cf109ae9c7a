"""The TrajTok tokenizer and its parts, and (re-exported from ``trajtok.tokenizer.peers``) the peers it is compared
against: every tokenizer a config names, by ``trajtok.tokenizer.<Class>``."""

from trajtok.tokenizer.adapter import FeatureTrajTok
from trajtok.tokenizer.features import FrozenVideoFeatures
from trajtok.tokenizer.peers import (
    RLT,
    FeaturePatches,
    PooledPatches,
    TokenLearner,
    ToMe,
    ViT3D,
)
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
from trajtok.tokenizer.segmenter import Segmenter
from trajtok.tokenizer.trajectory_encoder import TrajectoryEncoder
from trajtok.tokenizer.trajtok import TrajTok

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
