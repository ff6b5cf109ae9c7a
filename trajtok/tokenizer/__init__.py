"""The TrajTok tokenizer and its parts."""

from trajtok.tokenizer.adapter import FeaturePatches, FeatureTrajTok, PooledPatches
from trajtok.tokenizer.features import FrozenVideoFeatures
from trajtok.tokenizer.pixel_encoder import ConvPyramid, HFBackbone, PixelEncoder
from trajtok.tokenizer.presets import create_tokenizer, list_presets
from trajtok.tokenizer.segmenter import Segmenter
from trajtok.tokenizer.trajectory_encoder import TrajectoryEncoder
from trajtok.tokenizer.trajtok import TrajTok

__all__ = [
    "ConvPyramid",
    "FeaturePatches",
    "FeatureTrajTok",
    "FrozenVideoFeatures",
    "HFBackbone",
    "PixelEncoder",
    "PooledPatches",
    "Segmenter",
    "TrajTok",
    "TrajectoryEncoder",
    "create_tokenizer",
    "list_presets",
]
