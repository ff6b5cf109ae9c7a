"""The absorbed trajectory attention: the same function as dense masked attention over projected (and rotated) keys
and values, and the trajectory encoder's segment form that uses it."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from builders import tiny_tokenizer

from trajtok.tokenizer import create_tokenizer
from trajtok.tokenizer.attention import (
    PerceiverLayer,
    SegmentLayout,
    dense_masked_attention,
    standardize,
)
from trajtok.tokenizer.position import create_rotary
from trajtok.tokenizer.segment_attention import AbsorbedSegmentAttention
from trajtok.tokenizer.trajectory_encoder import TrajectoryEncoder, pick_attention_form


def labels_for(case: str, slots: int, patches: int) -> torch.Tensor:
    labels = torch.randint(slots, (2, patches), generator=torch.Generator().manual_seed(1))
    if case == "single_patch":
        labels = torch.zeros(2, patches, dtype=torch.long)
        labels[:, 7] = 3  # trajectory 3 owns exactly one patch
    elif case == "empty_slots":
        labels = labels % 2  # slots 2.. own nothing: they see only their own sub-tokens
    return labels


def layer_with_affine(dim: int, heads: int, head_dim: int) -> PerceiverLayer:
    """A layer whose context norm has a non-trivial gain and shift, so the folded key/value biases matter."""
    torch.manual_seed(0)
    layer = PerceiverLayer(dim, heads, head_dim).double()
    with torch.no_grad():
        layer.norm_context.weight.uniform_(0.5, 1.5)
        layer.norm_context.bias.normal_()
    return layer


@pytest.mark.parametrize("rotary", ["none", "axial", "sequence"])
@pytest.mark.parametrize("sparse", [True, False], ids=["csr", "gather"])
@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("case", ["random", "single_patch", "empty_slots"])
def test_absorbed_attention_equals_dense_masked_attention(case, n, sparse, rotary):
    slots, grid, dim = 6, (2, 4, 5), 16
    patches = grid[0] * grid[1] * grid[2]
    labels = labels_for(case, slots, patches)
    layer = layer_with_affine(dim, heads=2, head_dim=8)
    position = create_rotary(rotary, 8)
    rotate = position.double().for_grid(grid, slots * n, torch.device("cpu")) if position is not None else None
    generator = torch.Generator().manual_seed(2)
    context = torch.randn(2, patches, dim, dtype=torch.float64, generator=generator, requires_grad=True)
    latents = torch.randn(2, slots * n, dim, dtype=torch.float64, generator=generator, requires_grad=True)
    inputs = [context, latents, *layer.parameters()]

    def outputs_and_grads(attend):
        out = layer(latents, standardize(context), attend, rotate)
        probe = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(3))
        return out, torch.autograd.grad((out * probe).sum(), inputs)

    dense, dense_grads = outputs_and_grads(partial(dense_masked_attention, labels=labels, num_subtokens=n))
    absorbed, absorbed_grads = outputs_and_grads(AbsorbedSegmentAttention(SegmentLayout(labels, slots, n, 2, sparse)))
    assert torch.isfinite(absorbed).all()
    torch.testing.assert_close(absorbed, dense, rtol=0, atol=1e-10)
    for got, expected in zip(absorbed_grads, dense_grads):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("rotary", ["none", "axial"])
def test_encoder_segment_form_equals_dense_form(rotary):
    """The trajectory encoder's (absorbed) segment form computes what its dense form does."""
    batch, grid, dim, slots = 2, (2, 4, 4), 32, 8
    patches = torch.randn(batch, 32, dim, requires_grad=True)
    logits = torch.randn(batch, 32, slots, requires_grad=True)
    results = {}
    for form in ("segment", "dense"):
        torch.manual_seed(0)
        encoder = TrajectoryEncoder(dim, slots, 2, heads=2, head_dim=16, attention=form, rotary=rotary)
        tokens = encoder(patches, logits, logits.argmax(-1), grid, 2)
        results[form] = (tokens, torch.autograd.grad(tokens.square().sum(), [patches, logits, *encoder.parameters()]))
    torch.testing.assert_close(results["segment"][0], results["dense"][0], rtol=0, atol=1e-5)
    for got, expected in zip(results["segment"][1], results["dense"][1]):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_rotary_free_encoder_under_bf16_autocast_and_on_meta():
    video = torch.randn(2, 4, 3, 32, 32)
    torch.manual_seed(0)
    model = tiny_tokenizer(attention="segment", encoder_rotary="none")
    reference = model(video).tokens
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(video)
    assert (low.tokens.float() - reference).abs().max() < 0.1
    low.tokens.float().sum().backward()
    grads = [p.grad for p in model.encoder.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    with torch.device("meta"):  # FLOP counting (benchmarks/flops.py) runs the efficient layouts on meta tensors
        shaped = tiny_tokenizer(attention="segment", encoder_rotary="none")
    out = shaped(torch.empty(1, 2, 3, 32, 32, device="meta"))
    out.tokens.sum().backward()
    assert out.tokens.is_meta


@pytest.mark.parametrize("preset", ["tiny_lite", "lite"])
def test_efficient_layouts_keep_the_encoder_rotary(preset):
    with torch.device("meta"):
        model = create_tokenizer(preset)
    assert model.encoder.rotary is not None  # without it retrieval falls (python -m benchmarks.quality)


def test_auto_form_switches_earlier_without_rotary():
    cpu = torch.device("cpu")
    assert pick_attention_form("auto", cpu, 32, 4 * 16 * 16, 128) == "dense"  # tiny, 4 frames: W = 2^22
    assert pick_attention_form("auto", cpu, 32, 4 * 16 * 16, 128, absorbed=True) == "segment"
    assert pick_attention_form("auto", cpu, 16, 128, 64, absorbed=True) == "dense"  # W = 2^17
