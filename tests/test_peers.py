"""What each peer tokenizer promises: ViT3D's count, ToMe's merging, RLT's run-length dropping, fixed-K pooling."""

from __future__ import annotations

import pytest
import torch

from heads.transformer import Transformer
from trajtok.tokenizer import RLT, TokenLearner, ToMe, ViT3D, create_tokenizer
from trajtok.tokenizer.peers.rlt import (
    changed_tubelets,
    compact,
    run_lengths,
    run_starts,
)
from trajtok.tokenizer.peers.tome import (
    bipartite_soft_matching,
    merge_weighted,
    merged_positions,
)


@pytest.mark.parametrize("frames, height, width", [(8, 224, 224), (16, 64, 96), (2, 32, 32)])
def test_vit3d_has_one_token_per_2x16x16_tubelet(frames, height, width):
    model = create_tokenizer("base", "vit3d", dim=32)
    out = model(torch.randn(1, frames, 3, height, width))
    assert out.tokens.shape[1] == frames // 2 * (height // 16) * (width // 16) == out.num_valid.item()
    assert out.grid == (frames // 2, height // 16, width // 16)
    assert torch.equal(out.labels.flatten(), torch.arange(out.tokens.shape[1]))


def test_tubelets_refuse_what_their_position_table_cannot_hold():
    model = ViT3D(dim=32, patch_size=16, image_size=64, max_frames=8)
    with pytest.raises(ValueError, match="max_frames=8"):
        model(torch.randn(1, 10, 3, 64, 64))
    with pytest.raises(ValueError, match="patch_size=16"):
        model(torch.randn(1, 8, 3, 64, 60))


def naive_matching(metric: torch.Tensor, r: int) -> list[tuple[list[int], list[tuple[int, int]]]]:
    """Per clip, by loops: (kept A indices, [(A index, B index) merged]) from the r most similar A->B edges."""
    result = []
    for clip in torch.nn.functional.normalize(metric, dim=-1):
        a, b = clip[::2], clip[1::2]
        edges = sorted(((float(a[i] @ b[j]), i, j) for i in range(len(a)) for j in range(len(b))), reverse=True)
        best = {}
        for score, i, j in edges:
            best.setdefault(i, (score, j))
        ranked = sorted(best, key=lambda i: -best[i][0])
        result.append((sorted(ranked[r:]), sorted((i, best[i][1]) for i in ranked[:r])))
    return result


def test_bipartite_matching_merges_the_r_most_similar_pairs():
    torch.manual_seed(0)
    metric = torch.randn(3, 11, 8)
    matching = bipartite_soft_matching(metric, r=4)
    for clip, (kept, merged) in enumerate(naive_matching(metric, 4)):
        assert sorted(matching.unmerged[clip].tolist()) == kept
        assert sorted(zip(matching.merged[clip].tolist(), matching.destination[clip].tolist())) == merged


def test_merging_keeps_the_size_weighted_mean_across_blocks():
    torch.manual_seed(0)
    x, size = torch.randn(2, 20, 5, dtype=torch.float64), torch.ones(2, 20, 1, dtype=torch.float64)
    owner = torch.arange(20).expand(2, -1)
    original = x
    for r in (6, 4, 3):  # merged twice over: the means must compose
        matching = bipartite_soft_matching(torch.randn(2, x.shape[1], 4), r)
        count = x.shape[1]
        x, size = merge_weighted(x, size, matching)
        owner = merged_positions(matching, count).gather(1, owner)
        assert x.shape[1] == count - r
    for clip in range(2):
        for token in range(x.shape[1]):
            members = owner[clip] == token
            assert size[clip, token, 0] == members.sum() > 0
            torch.testing.assert_close(x[clip, token], original[clip, members].mean(dim=0))


def test_tome_merges_exactly_r_tokens_per_block_and_labels_its_tubelets():
    torch.manual_seed(0)
    model = ToMe(dim=32, depth=3, heads=2, r=10, patch_size=8, image_size=32, max_frames=8).eval()
    counts = []
    for block in model.blocks:
        block.register_forward_hook(lambda _m, _i, out: counts.append(out[0].shape[1]))
    out = model(torch.randn(2, 8, 3, 32, 32))  # 4 x 4 x 4 = 64 tubelets
    assert counts == [54, 44, 34]
    assert out.tokens.shape[1] == 34 and out.valid.all()
    for labels in out.labels.flatten(1):  # every tubelet is held by one token, every token holds some
        assert torch.equal(labels.unique(), torch.arange(34))


def test_tome_hands_its_token_sizes_to_the_head():
    """Proportional attention continues after the merging blocks: ToMe's tokens carry their sizes, and a head
    block gives a token of size s the weight of s copies of it."""
    torch.manual_seed(0)
    out = ToMe(dim=32, depth=2, heads=4, r=8, patch_size=8, image_size=32, max_frames=16).eval()(
        torch.randn(2, 4, 3, 32, 32))
    assert out.sizes.shape == out.valid.shape and torch.all(out.sizes >= 1)
    assert torch.allclose(out.sizes.sum(1), torch.full((2,), 32.0))  # every tubelet in exactly one token
    block = Transformer(width=32, depth=2, heads=4).eval()
    a, b = torch.randn(1, 1, 32), torch.randn(1, 1, 32)
    merged = block(torch.cat([a, b], 1), sizes=torch.tensor([[2.0, 1.0]]))
    copies = block(torch.cat([a, a, b], 1))
    torch.testing.assert_close(merged, copies[:, [0, 2]], atol=1e-5, rtol=1e-5)
    keep = torch.tensor([[True, True, False]])
    padded = block(torch.cat([a, b, torch.randn(1, 1, 32)], 1), keep, torch.tensor([[2.0, 1.0, 5.0]]))
    torch.testing.assert_close(padded[:, :2], merged, atol=1e-5, rtol=1e-5)


def test_tome_without_proportional_attention_emits_no_sizes_and_attends_plainly():
    """The switch the peer table compares: the same weights and merges, no ``log(size)`` bias anywhere."""
    torch.manual_seed(0)
    with_sizes = ToMe(dim=32, depth=2, heads=4, r=8, patch_size=8, image_size=32, max_frames=16).eval()
    plain = ToMe(dim=32, depth=2, heads=4, r=8, patch_size=8, image_size=32, max_frames=16,
                 proportional_attention=False).eval()
    plain.load_state_dict(with_sizes.state_dict())
    video = torch.randn(2, 4, 3, 32, 32)
    a, b = with_sizes(video), plain(video)
    assert b.sizes is None and a.tokens.shape == b.tokens.shape
    # The first block's attention sees sizes of 1 either way; the second's differ once tokens are merged.
    assert not torch.allclose(a.tokens, b.tokens)


def test_tome_proportional_attention_in_the_merging_blocks_only_keeps_their_output_and_emits_no_sizes():
    """``"merging"``: the merging blocks weight attention by size as with ``True`` (the same tokens), but no sizes
    reach the head, so its blocks attend plainly; ``False`` changes the merging blocks' output too."""
    torch.manual_seed(0)
    options = {"dim": 32, "depth": 2, "heads": 4, "r": 8, "patch_size": 8, "image_size": 32, "max_frames": 16}
    everywhere = ToMe(**options).eval()
    merging = ToMe(**options, proportional_attention="merging").eval()
    plain = ToMe(**options, proportional_attention=False).eval()
    merging.load_state_dict(everywhere.state_dict())
    plain.load_state_dict(everywhere.state_dict())
    video = torch.randn(2, 4, 3, 32, 32)
    a, b, c = everywhere(video), merging(video), plain(video)
    torch.testing.assert_close(a.tokens, b.tokens)
    assert a.sizes is not None and b.sizes is None and c.sizes is None
    assert not torch.allclose(b.tokens, c.tokens)
    with pytest.raises(ValueError, match="proportional_attention must be true, false or 'merging'"):
        ToMe(**options, proportional_attention="head")


def test_tome_caps_r_at_half_the_tokens():
    model = ToMe(dim=32, depth=2, heads=2, r=1000, patch_size=8, image_size=32, max_frames=8).eval()
    assert model(torch.randn(1, 2, 3, 32, 32)).tokens.shape[1] == 4  # 16 -> 8 -> 4


def test_proportional_attention_weights_a_merged_key_by_its_size():
    """A token of size s attends like s copies of itself: the bias is log(size)."""
    torch.manual_seed(0)
    block = ToMe(dim=16, depth=1, heads=1, r=0, patch_size=8, image_size=8, max_frames=2).blocks[0].eval()
    x = torch.randn(1, 3, 16)
    merged, _, _ = block(x, torch.tensor([[[1.0], [1.0], [2.0]]]), r=0)
    copies, _, _ = block(torch.cat([x, x[:, 2:]], dim=1), torch.ones(1, 4, 1), r=0)
    torch.testing.assert_close(merged, copies[:, :3], atol=1e-5, rtol=1e-5)


def rlt(threshold: float = 0.1) -> RLT:
    torch.manual_seed(0)
    return RLT(dim=32, threshold=threshold, patch_size=8, image_size=32, max_frames=16).eval()


def test_rlt_keeps_every_tubelet_of_a_changing_clip_and_one_step_of_a_static_one():
    torch.manual_seed(0)
    changing = torch.randn(1, 16, 3, 32, 32)
    static = changing[:, :1].expand(-1, 16, -1, -1, -1)
    out = rlt()(torch.cat([changing, static]))
    assert out.num_valid.tolist() == [8 * 4 * 4, 4 * 4]
    assert out.tokens.shape[1] == 8 * 4 * 4  # padded to the longer clip
    # The static clip: every step's tubelet belongs to the run of the first step at the same place.
    assert torch.equal(out.labels[1], torch.arange(16).view(1, 4, 4).expand(8, -1, -1))


def test_rlt_drops_only_the_unchanged_places():
    torch.manual_seed(0)
    video = torch.randn(1, 1, 3, 32, 32).repeat(1, 8, 1, 1, 1)
    video[:, 4:, :, :8, :8] += 1.0  # one tubelet place changes at step 2 (frames 4-5) and then stays
    model = rlt()
    out = model(video)
    assert out.num_valid.item() == 16 + 1
    assert out.labels[0, 2:, 0, 0].unique().numel() == 1 and out.labels[0, :2, 0, 0].unique().numel() == 1
    assert model(video + 0.2 * torch.randn_like(video)).num_valid.item() == 16 * 4  # noise over the threshold


def test_rlt_compares_single_frames_across_the_two_tubelets():
    """RLT's code compares the last frame of step t with the first frame of step t-1 (3 frames apart for
    2-frame tubelets): a drift of 0.04 per frame is kept (0.12 > 0.1), though neighbouring tubelets differ by
    only 0.08 frame by frame; a change inside the first frame of a step alone is not seen until the next."""
    torch.manual_seed(0)
    video = torch.randn(1, 1, 3, 32, 32).repeat(1, 8, 1, 1, 1)
    video[:, :, :, :8, :8] += 0.04 * torch.arange(8.0).view(1, 8, 1, 1, 1)  # place (0, 0) drifts
    out = rlt()(video)
    assert out.num_valid.item() == 16 + 3  # place (0, 0) kept at every step, the 15 others once
    assert out.labels[0, :, 0, 0].unique().numel() == 4 and out.labels[0, :, 0, 1].unique().numel() == 1
    frames = torch.zeros(1, 4, 1, 1, 1)
    frames[:, 2] = 1.0  # only the first frame of step 1 changes: last of step 1 (3) equals first of step 0 (0)
    assert changed_tubelets(frames, 2, 0.1).flatten().tolist() == [True, False]


def test_run_lengths_and_compaction():
    keep = torch.tensor([[True, False, False, True, False]]).view(1, 5, 1, 1)
    starts = run_starts(keep)
    assert starts.flatten().tolist() == [0, 0, 0, 3, 3]
    assert run_lengths(starts).flatten().tolist() == [3, 0, 0, 2, 0]
    tokens = torch.arange(10.0).view(2, 5, 1)
    flags = torch.tensor([[True, False, True, False, False], [False, True, True, True, False]])
    compacted, valid, index = compact(tokens, flags)
    assert compacted[0, :2].flatten().tolist() == [0, 2] and compacted[1].flatten().tolist() == [6, 7, 8]
    assert valid.tolist() == [[True, True, False], [True, True, True]]
    assert index.tolist() == [[0, -1, 1, -1, -1], [-1, 0, 1, 2, -1]]


def test_token_learner_has_k_tokens_whatever_the_clip():
    model = TokenLearner(dim=32, num_tokens=5, patch_size=8, image_size=32, max_frames=16).eval()
    for frames in (2, 16):
        assert model(torch.randn(1, frames, 3, 32, 32)).num_valid.item() == 5
