"""Size presets of the tokenizer, a thin registry in the style of timm's ``create_model``."""

from __future__ import annotations

from typing import Any

from trajtok.tokenizer.pixel_encoder import ConvPyramid
from trajtok.tokenizer.trajtok import TrajTok

PRESETS: dict[str, dict[str, Any]] = {
    # CPU-sized: 64-112 px, 8 frames, fits a 2-core test suite.
    "tiny": dict(dim=128, num_slots=32, depth=2, heads=4, head_dim=32, assign_dim=64,
                 encoder=dict(widths=(32, 64, 96, 128), depths=(1, 1, 1, 1))),
    "small": dict(dim=256, num_slots=64, depth=2, heads=8, head_dim=32, assign_dim=64,
                  encoder=dict(widths=(48, 96, 192, 384), depths=(2, 2, 4, 2))),
    # The paper's: 224 px, 8 frames, K = 128, D = 512, Perceiver depth 2 with 8 heads, ConvNeXt-T-sized pyramid.
    "base": dict(dim=512, num_slots=128, depth=2, heads=8, head_dim=64, assign_dim=64,
                 encoder=dict(widths=(96, 192, 384, 768), depths=(3, 3, 9, 3))),
}


def list_presets() -> list[str]:
    return sorted(PRESETS)


def create_tokenizer(preset: str = "tiny", **overrides: Any) -> TrajTok:
    """Build a ``TrajTok`` from a named preset; keyword arguments override the preset's."""
    if preset not in PRESETS:
        raise ValueError(f"unknown tokenizer preset {preset!r}; known: {list_presets()}")
    kwargs = {k: v for k, v in PRESETS[preset].items() if k != "encoder"}
    kwargs.update(overrides)
    if "pixel_encoder" not in kwargs:
        kwargs["pixel_encoder"] = ConvPyramid(out_dim=kwargs["dim"], **PRESETS[preset]["encoder"])
    return TrajTok(**kwargs)
