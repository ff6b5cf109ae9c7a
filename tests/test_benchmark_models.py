"""The models and parsers the benchmarks rely on: counted FLOPs against a hand count, the CLI output parsers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (
    KINDS,
    SCALES,
    build_video_model,
    retrieval_metrics,
    tome_r,
    tubelet_count,
)
from trajtok.flops import count_flops
from heads.retrieval import retrieval_table


def vit_flops(tokens: int, width: int, depth: int) -> int:
    """A ViT encoder over ``tokens`` (+1 CLS): 12 width^2 weights per token per block, plus the attention."""
    length = tokens + 1
    return depth * (2 * length * 12 * width**2 + 4 * length**2 * width)


@pytest.mark.parametrize("scale, frames", [("vit-b", 8), ("vit-l", 32), ("cpu", 16)])
def test_vit3d_flops_match_the_hand_count(scale, frames):
    s = SCALES[scale]
    model = build_video_model("vit3d", scale, frames, device="meta")
    video = torch.empty(1, frames, 3, s["pixels"], s["pixels"], device="meta")
    tokens = tubelet_count(scale, frames)
    patch = model.tokenizer.embed.patch_size
    embed = 2 * tokens * (2 * patch * patch * 3) * s["width"]
    projection = 2 * s["width"] * 128  # the CLS embedding to the shared space
    expected = embed + vit_flops(tokens, s["width"], s["depth"]) + projection
    assert count_flops(lambda: model(video)) == expected
    if (scale, frames) == ("vit-b", 8):
        assert 150e9 < expected < 170e9  # the hand estimate: about 160 GFLOPs


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_builds_at_every_scale_on_meta(kind):
    for scale in SCALES:
        model = build_video_model(kind, scale, 8, device="meta")
        assert sum(p.numel() for p in model.parameters()) > 0
    out = build_video_model(kind, "cpu", 8)(torch.randn(2, 8, 3, 64, 64))
    assert out.shape == (2, 128) and torch.isfinite(out).all()


def test_tome_r_brings_the_tubelets_to_a_quarter():
    model = build_video_model("tome", "vit-b", 8, device="meta")
    assert model.tokenizer.r == tome_r(784, 6) == 98 and len(model.tokenizer.blocks) == 6
    assert len(model.head.transformer.blocks) == 6  # ToMe's merging blocks are half of ViT-B's 12


def test_retrieval_metrics_read_the_table_the_module_prints():
    metrics = {f"{d}_{k}": v for d in ("t2v", "v2t") for k, v in
               (("r1", 3.12), ("r5", 11.72), ("r10", 19.53), ("medr", 26.0), ("meanr", 30.5))}
    parsed = retrieval_metrics("noise\n" + retrieval_table(metrics, "test") + "\nmore noise")
    assert parsed == metrics
    with pytest.raises(ValueError, match="Retrieval"):
        retrieval_metrics("no table here")
