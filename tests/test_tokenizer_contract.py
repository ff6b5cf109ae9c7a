"""The contract every registered tokenizer keeps (TrajTok and its peers): what heads may rely on."""

from __future__ import annotations

import pytest
import torch

from trajtok.tokenizer import create_tokenizer, list_tokenizers
from trajtok.tokens import TrajectoryTokens

KINDS = list_tokenizers()


def build(kind: str):
    torch.manual_seed(0)
    return create_tokenizer("tiny", kind).eval()


def test_every_peer_is_registered():
    assert {"trajtok", "vit3d", "tome", "rlt", "token_learner"} <= set(KINDS)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("frames", [1, 8])
def test_output_contract(kind, frames):
    model = build(kind)
    out = model(torch.randn(2, frames, 3, 64, 64))
    assert isinstance(out, TrajectoryTokens)
    batch, slots, dim = out.tokens.shape
    assert batch == 2 and dim == model.out_dim and out.tokens.dtype == torch.float32
    assert out.valid.shape == (2, slots) and out.valid.dtype == torch.bool
    assert out.labels.dtype == torch.long and out.labels.shape == (2, *out.grid)
    assert out.logits is None or out.logits.shape == (2, out.labels[0].numel(), slots // out.tokens_per_trajectory)
    assert out.sizes is None or (out.sizes.shape == (2, slots) and (out.sizes >= 1).all())
    assert torch.isfinite(out.tokens).all()
    assert (out.num_valid >= 1).all()
    # Every patch belongs to a valid token: heads may look a patch's token up by its label.
    ids = out.labels.flatten(1) // out.tokens_per_trajectory * out.tokens_per_trajectory
    assert ids.min() >= 0 and ids.max() < slots
    assert out.valid.gather(1, ids).all()


@pytest.mark.parametrize("kind", KINDS)
def test_clips_are_tokenised_independently_of_their_batch(kind):
    model = build(kind)
    torch.manual_seed(1)
    video = torch.randn(3, 8, 3, 64, 64)
    video[1] = video[1, :1]  # a static clip beside changing ones: RLT pads it to the batch's longest
    with torch.no_grad():
        together = model(video)
        alone = model(video[1:2])
    assert torch.equal(together.labels[1:2], alone.labels)
    assert together.num_valid[1] == alone.num_valid[0]
    torch.testing.assert_close(together.tokens[1][together.valid[1]], alone.tokens[0][alone.valid[0]],
                               atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_reach_the_parameters_and_runs_are_deterministic(kind):
    video = torch.randn(2, 8, 3, 64, 64)
    first = build(kind).train()
    out = first(video)
    (out.tokens * out.valid[..., None]).sum().backward()
    grads = [p.grad for p in first.parameters() if p.requires_grad]
    assert sum(g is not None and bool(g.abs().sum() > 0) for g in grads) >= len(grads) // 2
    assert all(g is None or torch.isfinite(g).all() for g in grads)
    torch.manual_seed(0)
    again = build(kind).train()(video)
    torch.testing.assert_close(again.tokens, out.tokens)


@pytest.mark.parametrize("kind", KINDS)
def test_bad_video_shape_is_named(kind):
    with pytest.raises(ValueError, match=r"\(B, T, 3, H, W\)"):
        build(kind)(torch.randn(2, 3, 64, 64))


def test_unknown_kind_and_preset_are_named():
    with pytest.raises(ValueError, match="unknown tokenizer kind 'vivit'"):
        create_tokenizer("tiny", "vivit")
    with pytest.raises(ValueError, match="unknown preset 'huge' for tokenizer"):
        create_tokenizer("huge", "vit3d")
