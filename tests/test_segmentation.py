"""Segmentation supervision: pseudo-label targets, Hungarian matching, Dice + focal, metrics, the module's
segmentation loss, the segment head, and warm-starting the tokenizer from a checkpoint."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from builders import quiet_trainer, tiny_module, tiny_tokenizer
from torch.utils.data import DataLoader

from heads import SegmentHead
from trajtok.module import TrajTokModule
from trajtok.segmentation import (
    SegmentationLoss,
    SegmentationQuality,
    align_slots,
    hard_iou,
    hungarian_match,
    resize_segments,
    segmentation_inputs,
    soft_dice,
    softmax_dice_loss,
    softmax_focal_loss,
    stuff_targets,
    trajectory_targets,
)
from trajtok.tokens import TrajectoryTokens


def labelled_batch(batch_size: int = 2, frames: int = 2, size: int = 32) -> dict:
    """Random video with two moving squares per clip as labels; segment ids differ per frame on purpose."""
    mask = torch.zeros(batch_size, frames, size, size, dtype=torch.uint8)
    for t in range(frames):
        mask[:, t, 4 + 2 * t: 12 + 2 * t, 4:12] = 3 + t  # trajectory 0: ids 3, 4, ...
        mask[:, t, 18:26, 16 + 2 * t: 24 + 2 * t] = 1  # trajectory 1: id 1
    graph = torch.zeros(batch_size, 3, frames, dtype=torch.long)  # row 2 is padding
    graph[:, 0] = torch.arange(frames) + 3
    graph[:, 1] = 1
    return {
        "video": torch.randn(batch_size, frames, 3, size, size),
        "text": [f"clip {i}" for i in range(batch_size)],
        "captions": [[f"clip {i}"] for i in range(batch_size)],
        "index": torch.arange(batch_size),
        "mask": mask,
        "graph": graph,
    }


# --- labels -----------------------------------------------------------------------------------------------

def blocks(ids: list[list[list[int]]], factor: int = 2) -> torch.Tensor:
    """``(T, h, w)`` ids blown up to ``(T, h*factor, w*factor)`` constant blocks, uint8."""
    grid = torch.tensor(ids, dtype=torch.uint8)
    return grid.repeat_interleave(factor, 1).repeat_interleave(factor, 2)


def test_trajectory_targets_by_hand():
    # Sample 0: frame ids differ per frame; the graph links them. Patches in t-major raster order:
    #   frame 0  [[0, 2, 2], [1, 1, 0]]   frame 1  [[3, 0, 1], [3, 2, 0]]
    mask0 = blocks([[[0, 2, 2], [1, 1, 0]], [[3, 0, 1], [3, 2, 0]]])
    graph0 = torch.tensor([
        [1, 2],  # A: segment 1, then 2          first patch 3
        [2, 0],  # B: segment 2, absent in frame 1  first patch 1
        [0, 3],  # C: absent in frame 0, then 3  first patch 6
        [0, 0],  # padding
        [0, 1],  # D: appears in frame 1 only    first patch 8
        [4, 0],  # a segment that is not in the mask: no patch, no id
    ])
    # Sample 1: one trajectory; segment 7 of frame 1 belongs to no trajectory (unlabelled).
    mask1 = blocks([[[5, 5, 0], [0, 0, 0]], [[7, 0, 0], [0, 0, 5]]])
    graph1 = torch.zeros(6, 2, dtype=torch.long)
    graph1[0] = torch.tensor([5, 5])
    mask, graph = torch.stack([mask0, mask1]), torch.stack([graph0, graph1])

    # First appearance: B (patch 1) = 0, A (3) = 1, C (6) = 2, D (8) = 3.
    expected0 = [-1, 0, 0, 1, 1, -1, 2, -1, 3, 2, 1, -1]
    expected1 = [0, 0, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0]
    targets = trajectory_targets(mask, graph, (2, 3), max_trajectories=8)
    assert targets.tolist() == [expected0, expected1]

    # More trajectories than K = 3: D, the last to appear, is ignored.
    targets = trajectory_targets(mask, graph, (2, 3), max_trajectories=3)
    assert targets[0].tolist() == [-1, 0, 0, 1, 1, -1, 2, -1, -1, 2, 1, -1]
    assert targets[1].tolist() == expected1

    # Which target ids are background follows the same ranks: C (graph row 2) is target 2 of sample 0.
    stuff = torch.zeros(2, 6, dtype=torch.bool)
    stuff[0, 2] = stuff[1, 3] = True  # sample 1's flagged row is padding: no target
    targets = trajectory_targets(mask, graph, (2, 3), max_trajectories=8)
    flags = stuff_targets(mask, graph, stuff, (2, 3), targets, 8)
    assert flags.tolist() == [[False, False, True] + [False] * 5, [False] * 8]


def test_resize_segments_samples_cell_centres():
    mask = torch.zeros(1, 1, 4, 4, dtype=torch.uint8)
    mask[0, 0, 0, 0] = 9  # a top-left corner pixel: plain 'nearest' would pick it, the cell centre does not
    mask[0, 0, 2:, 2:] = 4
    assert resize_segments(mask, (2, 2))[0, 0].tolist() == [[0, 0], [0, 4]]
    assert resize_segments(mask, (4, 4)).equal(mask.long())


def test_targets_per_chunk():
    """Chunks are tokenised separately, so their targets are numbered (and matched) separately."""
    batch = labelled_batch(batch_size=1, frames=4)
    k, grid = 4, (4, 8, 8)
    tokens = TrajectoryTokens(tokens=torch.zeros(1, 2 * k, 8), valid=torch.ones(1, 2 * k, dtype=torch.bool),
                              logits=torch.randn(1, 4 * 64, k), labels=torch.zeros(1, *grid, dtype=torch.long),
                              grid=grid, chunks=2)
    batch["stuff"] = torch.tensor([[False, True, False]])  # trajectory 1 (the lower square) is background
    logits, targets, stuff = segmentation_inputs(tokens, batch["mask"], batch["graph"], batch["stuff"])
    assert logits.shape == (2, 2 * 64, k)
    assert stuff.shape == (2, k) and stuff.sum(1).tolist() == [1, 1]
    assert all(set(targets[c][targets[c] >= 0].tolist()) == {0, 1} for c in range(2))
    for c in range(2):  # the flagged id is the one on the lower square's patches, whatever its rank
        assert stuff[c, targets[c].view(2, 8, 8)[0, 5, 5]]
    for c in range(2):
        frames = slice(2 * c, 2 * c + 2)
        alone = trajectory_targets(batch["mask"][:, frames], batch["graph"][:, :, frames], (8, 8), k)
        assert targets[c].equal(alone[0])


# --- matching -----------------------------------------------------------------------------------------------

def test_hungarian_matches_brute_force():
    gen = torch.Generator().manual_seed(0)
    batch, patches, slots = 24, 30, 5
    logits = torch.randn(batch, patches, slots, generator=gen)
    num_targets = torch.randint(1, slots + 1, (batch,), generator=gen)
    targets = torch.stack([
        torch.where(torch.rand(patches, generator=gen) < 0.2, -1, torch.randint(int(n), (patches,), generator=gen))
        for n in num_targets
    ])
    match = hungarian_match(logits, targets)
    iou = hard_iou(logits.argmax(-1), targets, slots)
    for b in range(batch):
        present = [j for j in range(slots) if (targets[b] == j).any()]
        best = max(sum(iou[b, perm[j], j] for j in present) for perm in itertools.permutations(range(slots)))
        assert match.iou[b].sum() == pytest.approx(float(best), abs=1e-6)
        assert sorted(match.permutation[b].tolist()) == list(range(slots))
        assert match.present[b].tolist() == [j in present for j in range(slots)]
    aligned = align_slots(logits, match.permutation)
    assert aligned[3, :, 1].equal(logits[3, :, match.permutation[3, 1]])


def test_hard_iou_counts_whole_predicted_regions():
    # Slot 0 wins patches 0-3, two of them unlabelled; target 0 is patches 0-1. IoU = 2 / 4.
    predicted = torch.tensor([[0, 0, 0, 0, 1, 1]])
    targets = torch.tensor([[0, 0, -1, -1, 1, 1]])
    iou = hard_iou(predicted, targets, 2)
    assert iou[0].tolist() == [[0.5, 0.0], [0.0, 1.0]]


def test_soft_matching_breaks_ties_of_a_collapsed_prediction():
    # Every patch's argmax is slot 0 (one cluster), but target 1's patches lean towards slot 2 and target 2's
    # towards slot 3. Hard IoU cannot see that; the soft term matches them there.
    targets = torch.tensor([[0, 0, 0, 0, 1, 1, 2, 2]])
    logits = torch.zeros(1, 8, 4)
    logits[0, :, 0] = 3.0
    logits[0, 4:6, 2] = 1.0
    logits[0, 6:8, 3] = 1.0
    assert hungarian_match(logits, targets, soft_weight=1.0).permutation[0, :3].tolist() == [0, 2, 3]
    assert hungarian_match(logits, targets).permutation[0, :3].tolist() != [0, 2, 3]
    assert hungarian_match(logits, targets, soft_weight=1.0).iou[0, 1].item() == 0.0  # reported IoU stays hard
    # Soft Dice by hand: two patches, probabilities [1/2, 1/2] and [3/4, 1/4], targets 0 and 1.
    probs = torch.tensor([[[0.0, 0.0], [math.log(3), 0.0]]])
    dice = soft_dice(probs, torch.tensor([[0, 1]]))
    expected = [2 * 0.5 / 2.25, 2 * 0.75 / 2.25, 2 * 0.5 / 1.75, 2 * 0.25 / 1.75]  # [slot, target]
    assert dice[0].flatten().tolist() == pytest.approx(expected)


# --- losses -------------------------------------------------------------------------------------------------

def test_dice_and_focal_by_hand():
    # Probabilities: patch 0 (target 0) [1/2, 1/2]; patch 1 (target 1) [3/4, 1/4]; patch 2 ignored.
    logits = torch.tensor([[[0.0, 0.0], [math.log(3), 0.0], [50.0, -50.0]],
                           [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]])  # sample 1: nothing labelled
    targets = torch.tensor([[0, 1, -1], [-1, -1, -1]])
    focal = (0.5 ** 2 * math.log(2) + 0.75 ** 2 * math.log(4)) / 2
    assert softmax_focal_loss(logits, targets).item() == pytest.approx(focal, rel=1e-6)
    # Dice of target 0: 2 * 1/2 / (1/2 + 3/4 + 1); of target 1: 2 * 1/4 / (1/2 + 1/4 + 1).
    dice = ((1 - 1 / 2.25) + (1 - 0.5 / 1.75)) / 2
    assert softmax_dice_loss(logits, targets, smooth=0.0).item() == pytest.approx(dice, rel=1e-6)
    assert softmax_focal_loss(logits, targets, gamma=0.0).item() == pytest.approx(
        F.cross_entropy(logits[0, :2], targets[0, :2]).item(), rel=1e-6)


def test_losses_without_labels_are_zero_and_differentiable():
    logits = torch.randn(2, 5, 3, requires_grad=True)
    targets = torch.full((2, 5), -1)
    losses = SegmentationLoss()(logits, targets)
    total = sum(losses.values())
    assert total.item() == 0.0
    total.backward()
    assert logits.grad is not None


def test_perfect_prediction_scores_iou_one_and_near_zero_loss():
    gen = torch.Generator().manual_seed(1)
    batch, patches, slots = 3, 40, 6
    targets = torch.randint(-1, 4, (batch, patches), generator=gen)
    # Background goes to slot 5; then the slots are shuffled, as a model's arbitrary query order would be.
    slot = torch.where(targets >= 0, targets, 5)
    logits = 30.0 * F.one_hot(slot, slots).float()
    shuffle = torch.stack([torch.randperm(slots, generator=gen) for _ in range(batch)])
    logits = logits.gather(2, shuffle.unsqueeze(1).expand_as(logits))
    losses = SegmentationLoss(focal_weight=1.0, dice_weight=1.0)(logits, targets)
    assert losses["seg_focal"].item() < 1e-8 and losses["seg_dice"].item() < 1e-8

    quality = SegmentationQuality()
    quality.update(logits, targets)
    metrics = quality.compute()
    assert metrics["seg_miou"].item() == pytest.approx(1.0)
    assert metrics["seg_found"].item() == 1.0
    assert metrics["seg_target_trajectories"].item() == 4.0
    assert metrics["seg_pred_trajectories"].item() == 5.0  # the four objects and the background


def test_metrics_count_found_trajectories():
    # One clip, targets 0 and 1; slot 0 covers target 0 and half of target 1's area again as background.
    targets = torch.tensor([[0, 0, 1, 1, 1, 1, -1, -1]])
    predicted = torch.tensor([[0, 0, 1, 2, 2, 2, 0, 0]])
    logits = 10.0 * F.one_hot(predicted, 4).float()
    quality = SegmentationQuality()
    quality.update(logits, targets)
    metrics = quality.compute()
    # Target 0 <-> slot 0: IoU 2/4; target 1 <-> slot 2: IoU 3/4. Found (>= 0.5): both.
    assert metrics["seg_miou"].item() == pytest.approx((0.5 + 0.75) / 2)
    assert metrics["seg_found"].item() == 1.0
    assert metrics["seg_pred_trajectories"].item() == 3.0


def test_metrics_report_objects_and_background_apart():
    # Target 0 is the background; slot 0 swallows it and object 1, slot 2 is object 2 exactly.
    targets = torch.tensor([[0, 0, 0, 0, 1, 1, 2, 2]])
    predicted = torch.tensor([[0, 0, 0, 0, 0, 0, 2, 2]])
    logits = 10.0 * F.one_hot(predicted, 4).float()
    stuff = torch.tensor([[True, False, False, False]])
    quality = SegmentationQuality()
    quality.update(logits, targets, stuff)
    metrics = quality.compute()
    # Background <-> slot 0: IoU 4/6; object 1 <-> an empty slot: 0; object 2 <-> slot 2: 1.
    assert metrics["seg_background_iou"].item() == pytest.approx(4 / 6)
    assert metrics["seg_miou"].item() == pytest.approx(0.5)  # objects only
    assert metrics["seg_found"].item() == 0.5
    assert metrics["seg_target_trajectories"].item() == 3.0 and metrics["seg_pred_trajectories"].item() == 2.0
    without = SegmentationQuality()  # no stuff flags: every target is an object, no background figure
    without.update(logits, targets)
    assert without.compute()["seg_miou"].item() == pytest.approx((4 / 6 + 0 + 1) / 3)
    assert "seg_background_iou" not in without.compute()


# --- the module ------------------------------------------------------------------------------------------

def test_segmentation_loss_only_with_labels():
    torch.manual_seed(0)
    module = tiny_module(segmentation=SegmentationLoss())
    batch = labelled_batch()
    tokens = module(batch["video"])
    assert set(module.losses(tokens, batch)) == {"contrastive", "seg_focal", "seg_dice"}
    unlabelled = {k: v for k, v in batch.items() if k not in ("mask", "graph")}
    assert set(module.losses(tokens, unlabelled)) == {"contrastive"}
    with pytest.raises(ValueError, match="both 'mask' and 'graph'"):
        module.losses(tokens, {k: v for k, v in batch.items() if k != "graph"})
    without = tiny_module()
    assert set(without.losses(without(batch["video"]), batch)) == {"contrastive"}


def test_segment_head_trains_the_segmenter_and_skips_the_encoder():
    torch.manual_seed(0)
    module = TrajTokModule(tiny_tokenizer(), SegmentHead(), segmentation=SegmentationLoss())
    batch = labelled_batch()
    loss = module.training_step(batch, 0)
    loss.backward()
    assert module.tokenizer.segmenter.query_head[0].weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.tokenizer.pixel_encoder.parameters())
    assert all(p.grad is None for p in module.tokenizer.encoder.parameters())  # skipped
    unlabelled = {k: v for k, v in batch.items() if k not in ("mask", "graph")}
    with pytest.raises(ValueError, match="nothing to train on"):
        module.training_step(unlabelled, 0)

    # The segmentation-only pass keeps the contract: same shapes, assignment and validity as a full pass.
    module.eval()
    with torch.no_grad():
        quick, full = module(batch["video"]), module.tokenizer(batch["video"])
    assert quick.tokens.shape == full.tokens.shape and quick.valid.equal(full.valid)
    assert quick.logits.equal(full.logits) and quick.labels.equal(full.labels)


def test_evaluation_logs_segmentation_quality():
    torch.manual_seed(0)
    module = TrajTokModule(tiny_tokenizer(), SegmentHead())  # metrics need labels, not the loss
    trainer = quiet_trainer()
    trainer.validate(module, DataLoader([labelled_batch(), labelled_batch()], batch_size=None))
    metrics = trainer.callback_metrics
    assert metrics["val/seg_target_trajectories"].item() == 2.0
    assert 0 <= metrics["val/seg_miou"].item() <= 1 and "val/loss" not in metrics  # no loss configured
    assert module.segmentation_quality.update_count == 0  # reset for the next epoch


# --- warm start ----------------------------------------------------------------------------------------

def fit_one_step(module: TrajTokModule, path) -> None:
    trainer = quiet_trainer(max_steps=1, limit_val_batches=0)
    trainer.fit(module, DataLoader([labelled_batch()], batch_size=None))
    trainer.save_checkpoint(path)


def test_warm_start_loads_exactly_the_saved_tokenizer(tmp_path):
    torch.manual_seed(0)
    path = str(tmp_path / "segmenter.ckpt")
    pretrained = TrajTokModule(tiny_tokenizer(), SegmentHead(), segmentation=SegmentationLoss(), lr=1e-2)
    before = {k: v.clone() for k, v in pretrained.tokenizer.state_dict().items()}
    fit_one_step(pretrained, path)
    saved = pretrained.tokenizer.state_dict()
    assert any(not before[k].equal(v) for k, v in saved.items())  # the step changed the weights

    torch.manual_seed(1)
    module = tiny_module(segmentation=SegmentationLoss(), tokenizer_checkpoint=path)
    loaded = module.tokenizer.state_dict()
    assert loaded.keys() == saved.keys() and all(loaded[k].equal(saved[k]) for k in saved)

    with pytest.raises(ValueError, match=r"segmenter\.ckpt.*shape mismatch.*segmenter\.queries"):
        TrajTokModule(tiny_tokenizer(num_slots=4), SegmentHead(), tokenizer_checkpoint=path)
    with pytest.raises(ValueError, match=r"segmenter\.ckpt.*missing \(\d+\): pixel_encoder\.stages"):
        TrajTokModule(tiny_tokenizer(depths=(2, 1)), SegmentHead(), tokenizer_checkpoint=path)
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        TrajTokModule(tiny_tokenizer(), SegmentHead(), tokenizer_checkpoint=str(tmp_path / "nope.ckpt"))


def test_warm_start_reads_a_checkpoint_from_before_keys_and_values_were_split(tmp_path):
    """Checkpoints written with one fused ``to_kv`` per Perceiver layer still warm-start a tokenizer (its load hook
    splits them); anything else missing is still an error."""
    torch.manual_seed(0)
    path = tmp_path / "old.ckpt"
    pretrained = TrajTokModule(tiny_tokenizer(), SegmentHead(), segmentation=SegmentationLoss(), lr=1e-2)
    fit_one_step(pretrained, str(path))
    checkpoint = torch.load(path, weights_only=False)
    state = checkpoint["state_dict"]
    for key in [k for k in state if k.endswith(".to_k.weight")]:
        stem = key.removesuffix("to_k.weight")
        state[stem + "to_kv.weight"] = torch.cat([state.pop(key), state.pop(stem + "to_v.weight")])
    torch.save(checkpoint, path)
    module = TrajTokModule(tiny_tokenizer(), SegmentHead(), tokenizer_checkpoint=str(path))
    saved = pretrained.tokenizer.state_dict()
    assert all(module.tokenizer.state_dict()[k].equal(v) for k, v in saved.items())
