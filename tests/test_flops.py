"""FLOP counts match the hand formula, on CPU (where SDPA takes a fused kernel) and on meta tensors."""

from __future__ import annotations

import pytest
import torch

from heads.transformer import Block
from trajtok.flops import count_flops, count_flops_by_module
from trajtok.tokenizer.peers.tome import MergingBlock


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_linear_layer(device):
    layer = torch.nn.Linear(48, 80, device=device)
    x = torch.randn(3, 7, 48, device=device)
    assert count_flops(lambda: layer(x)) == 2 * 3 * 7 * 48 * 80  # the bias add is not a multiply-add
    x.requires_grad_(True)
    # Backward: the input gradient and the weight gradient are one such matmul each.
    assert count_flops(lambda: layer(x).sum().backward()) == 3 * (2 * 3 * 7 * 48 * 80)


def attention_block_flops(tokens: int, width: int) -> int:
    """qkv, output projection and the 4x MLP: 2 * tokens * 12 * width^2; scores and weighted sum: 2 * 2 * L^2 * W."""
    return 2 * tokens * 12 * width**2 + 4 * tokens**2 * width


@pytest.mark.parametrize("device", ["cpu", "meta"])
@pytest.mark.parametrize("masked", [False, True])
def test_one_attention_block(device, masked):
    torch.manual_seed(0)
    block = Block(64, heads=4).to(device)
    x = torch.randn(2, 50, 64, device=device)
    keep = torch.ones(2, 50, dtype=torch.bool, device=device) if masked else None
    assert count_flops(lambda: block(x, keep)) == 2 * attention_block_flops(50, 64)


def test_the_fused_cpu_attention_is_counted_only_with_the_correction():
    block = Block(64, heads=4).eval()
    x = torch.randn(1, 50, 64)
    with torch.no_grad():
        stock, corrected = count_flops(lambda: block(x), corrected=False), count_flops(lambda: block(x))
    assert corrected - stock == 4 * 50**2 * 64


def test_a_merging_block_counts_attention_before_and_the_mlp_after_merging():
    block = MergingBlock(32, heads=2)
    x, size = torch.randn(1, 40, 32), torch.ones(1, 40, 1)
    width, before, after, head_dim = 32, 40, 30, 16
    matching = 2 * (before // 2) ** 2 * head_dim  # cosine scores of the A half against the B half (mean key)
    expected = 2 * before * 4 * width**2 + 4 * before**2 * width + matching + 2 * after * 8 * width**2
    total, parts = count_flops_by_module(lambda: block(x, size, r=10))
    assert total == expected
    assert parts["mlp"] == 2 * after * 8 * width**2


def test_the_released_layout_is_counted_on_meta_with_its_own_head_at_every_224_px_scale():
    """benchmarks.flops's official row: the released TrajViT-v2 (transformers' DINOv3 ConvNeXt-S on meta) and its
    24-block width-512 head over [CLS] + K = 128 tokens, whichever 224 px scale it is listed under."""
    from benchmarks.common import OFFICIAL, build_video_model, layouts_at

    assert OFFICIAL in layouts_at("vit-b") and OFFICIAL in layouts_at("vit-l") and OFFICIAL not in layouts_at("cpu")
    with pytest.raises(ValueError, match="224 px"):
        build_video_model(OFFICIAL, "cpu", 8, device="meta")
    video = torch.empty(1, 8, 3, 224, 224, device="meta")

    def count(scale: str) -> tuple[int, int]:
        model = build_video_model(OFFICIAL, scale, 8, device="meta")
        assert sum(p.numel() for p in model.tokenizer.pixel_encoder.parameters()) > 45e6  # a ConvNeXt-S (depths 3-3-27-3), not a tiny stand-in
        tokens = model.tokenizer(video)
        assert tokens.tokens.shape == (1, 128, 512)
        head = count_flops(lambda: model.head.encode_video(tokens))
        assert head == 24 * attention_block_flops(129, 512) + 2 * 512 * 256  # blocks, then the projection
        return count_flops(lambda: model.tokenizer(video)), head

    vit_b = count("vit-b")
    assert vit_b == count("vit-l") and vit_b[0] > 10 * vit_b[1]
