"""FLOP counts match the hand formula, on CPU (where SDPA takes a fused kernel) and on meta tensors."""

from __future__ import annotations

import pytest
import torch

from heads.transformer import Block
from trajtok.flops import count_flops, count_flops_by_module
from trajtok.tokenizer.tome import MergingBlock


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
