"""Named tokenizers at named sizes, a thin registry in the style of timm's ``create_model``.

``create_tokenizer(preset, kind)`` builds TrajTok or one of its peers (``list_tokenizers()``) at a size
(``list_presets()``): ``tiny`` for CPU runs on 64 px clips, ``base`` for the paper's 224 px layout, and their
efficient layouts ``tiny_lite`` and ``lite`` (the segmenter's queries on a pooled context, per-patch activations
recomputed in training; ``lite`` adds a pretrained EfficientNet-Lite0 pixel encoder and a narrow per-patch width;
the peers take the sizes of the scale they belong to). A new tokenizer registers a builder with
``@register_tokenizer(name)`` and is then covered by the shared contract tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from trajtok.tokenizer.pixel_encoder import ConvPyramid, EfficientNetLite
from trajtok.tokenizer.rlt import RLT
from trajtok.tokenizer.token_learner import TokenLearner
from trajtok.tokenizer.tome import ToMe
from trajtok.tokenizer.trajtok import TrajTok
from trajtok.tokenizer.tubelets import ViT3D

_TINY = {"dim": 128, "num_slots": 32, "depth": 2, "heads": 4, "head_dim": 32, "assign_dim": 64,
         "encoder": {"widths": (32, 64, 96, 128), "depths": (1, 1, 1, 1)}}
PRESETS: dict[str, dict[str, Any]] = {
    # CPU-sized: 64-112 px, 8 frames, fits a 2-core test suite.
    "tiny": _TINY,
    "small": {"dim": 256, "num_slots": 64, "depth": 2, "heads": 8, "head_dim": 32, "assign_dim": 64,
              "encoder": {"widths": (48, 96, 192, 384), "depths": (2, 2, 4, 2)}},
    # The paper's: 224 px, 8 frames, K = 128, D = 512, Perceiver depth 2 with 8 heads, ConvNeXt-T-sized pyramid.
    "base": {"dim": 512, "num_slots": 128, "depth": 2, "heads": 8, "head_dim": 64, "assign_dim": 64,
             "encoder": {"widths": (96, 192, 384, 768), "depths": (3, 3, 9, 3)}},
    # The efficient layout at 224 px: a pretrained EfficientNet-Lite0 pyramid (fine-tuned) instead of a ConvNeXt-T
    # trained from scratch; the per-patch work (pyramid fusion, both Perceivers, the assignment head) at width 128
    # on the 56 x 56 grid, the tokens projected to 512 at the end (per-patch costs fall with the width squared, the
    # K tokens cost next to nothing); the segmenter's queries on a 2 x 2-pooled context; per-patch activations
    # recomputed in the backward. About 1/9 of base's tokenizer FLOPs (benchmarks/flops.py).
    "lite": {"dim": 128, "token_dim": 512, "num_slots": 128, "depth": 2, "heads": 4, "head_dim": 32,
             "assign_dim": 64, "context_pool": 2, "recompute": True, "encoder": {"kind": "efficientnet_lite"}},
    # The efficient layout at the CPU scale (configs/layouts/lite.yaml): tiny's with the pooled segmenter context
    # and recomputation. It keeps tiny's pyramid: at 64 px the pretrained EfficientNet-Lite0 is slower and segments
    # worse (configs/layouts/pretrained_encoder.yaml, README).
    "tiny_lite": {**_TINY, "context_pool": 2, "recompute": True},
}

#: Pixel encoders by the ``kind`` a preset's ``encoder`` names (default ``conv_pyramid``).
PIXEL_ENCODERS: dict[str, Callable[..., nn.Module]] = {"conv_pyramid": ConvPyramid, "efficientnet_lite": EfficientNetLite}

#: The scale (frame size, video transformer) each preset belongs to: the peers' sizes are those of its scale.
SCALE_OF = {"tiny": "tiny", "small": "small", "base": "base", "lite": "base", "tiny_lite": "tiny"}

#: The tubelets of the patch-based peers at each size: the paper's 2 x 16 x 16 at 224 px, scaled to 8 px patches
#: at 64 px so a CPU clip still has a 8 x 8 grid; token width that of the video transformer they feed.
TUBELETS: dict[str, dict[str, Any]] = {
    "tiny": {"dim": 192, "patch_size": 8, "tubelet_frames": 2, "image_size": 64},
    "small": {"dim": 384, "patch_size": 16, "tubelet_frames": 2, "image_size": 112},
    "base": {"dim": 768, "patch_size": 16, "tubelet_frames": 2, "image_size": 224},
}

#: ToMe's merging blocks (the first half of the video transformer) and r at each size: at 8 frames, r takes the
#: tubelet count to a quarter (base; r is capped at half the tokens, so tiny ends at 80 of 256) by the end of the
#: merging blocks.
TOME: dict[str, dict[str, Any]] = {
    "tiny": {"depth": 2, "heads": 4, "r": 96},
    "small": {"depth": 2, "heads": 6, "r": 60},
    "base": {"depth": 6, "heads": 12, "r": 98},
}

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}


def register_tokenizer(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register ``builder(preset: str, **overrides) -> nn.Module`` under ``name``."""
    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _BUILDERS:
            raise ValueError(f"tokenizer {name!r} is already registered")
        _BUILDERS[name] = builder
        return builder
    return decorate


def list_presets() -> list[str]:
    return sorted(PRESETS)


def list_tokenizers() -> list[str]:
    return sorted(_BUILDERS)


def create_tokenizer(preset: str = "tiny", kind: str = "trajtok", **overrides: Any) -> nn.Module:
    """Build tokenizer ``kind`` at size ``preset``; keyword arguments override the preset's."""
    if preset not in PRESETS:
        raise ValueError(f"unknown tokenizer preset {preset!r}; known: {list_presets()}")
    if kind not in _BUILDERS:
        raise ValueError(f"unknown tokenizer kind {kind!r}; known: {list_tokenizers()}")
    return _BUILDERS[kind](preset, **overrides)


@register_tokenizer("trajtok")
def _trajtok(preset: str, **overrides: Any) -> TrajTok:
    kwargs = {k: v for k, v in PRESETS[preset].items() if k != "encoder"}
    kwargs.update(overrides)
    if "pixel_encoder" not in kwargs:
        encoder = dict(PRESETS[preset]["encoder"])
        kwargs["pixel_encoder"] = PIXEL_ENCODERS[encoder.pop("kind", "conv_pyramid")](out_dim=kwargs["dim"], **encoder)
    return TrajTok(**kwargs)


@register_tokenizer("vit3d")
def _vit3d(preset: str, **overrides: Any) -> ViT3D:
    return ViT3D(**{**TUBELETS[SCALE_OF[preset]], **overrides})


@register_tokenizer("tome")
def _tome(preset: str, **overrides: Any) -> ToMe:
    return ToMe(**{**TUBELETS[SCALE_OF[preset]], **TOME[SCALE_OF[preset]], **overrides})


@register_tokenizer("rlt")
def _rlt(preset: str, **overrides: Any) -> RLT:
    return RLT(**{**TUBELETS[SCALE_OF[preset]], **overrides})


@register_tokenizer("token_learner")
def _token_learner(preset: str, **overrides: Any) -> TokenLearner:
    return TokenLearner(**{**TUBELETS[SCALE_OF[preset]], "num_tokens": PRESETS[preset]["num_slots"], **overrides})
