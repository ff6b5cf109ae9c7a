"""VEQ and STQ_EN (``trajtok.segmentation.video_quality``): hand-made videos whose scores are worked out by hand in
the comments, random videos against a brute-force reference written here, the upsampling of trajectory ids to the
ground truth's resolution, and the metric's averaging over videos."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trajtok.segmentation.video_quality import (
    VideoSegmentationQuality,
    labels_at,
    video_quality,
    video_segmentation_table,
)


def volume(*rows: list[int]) -> torch.Tensor:
    """A ``(T, 1, W)`` id volume: one row of pixels per frame."""
    return torch.tensor(rows, dtype=torch.long)[:, None, :]


def scores(predicted, target, **kwargs) -> tuple[float, float]:
    quality = video_quality(predicted, target, **kwargs)
    return quality.veq, quality.stq


# ----------------------------------------------------------------------------------------------- by hand


def test_a_perfect_prediction_without_background_scores_one():
    target = volume([1, 1, 2, 2], [1, 2, 2, 2])
    predicted = volume([5, 5, 7, 7], [5, 7, 7, 7])  # other ids, same tubes
    for drop in (False, True):
        assert scores(predicted, target, drop_predicted_zero=drop) == pytest.approx((1.0, 1.0))


def test_the_background_trajectory_is_a_false_positive_unless_it_is_id_zero_and_dropped():
    target = volume([0, 0, 1, 1])
    # Standard: tubes 0 and 1 predicted; 1 matches (IoU 1), 0 is a false positive: RQ = 1 / (1 + 1/2) = 2/3.
    quality = video_quality(target, target)
    assert (quality.true_positives, quality.false_positives, quality.false_negatives) == (1, 1, 0)
    assert (quality.veq, quality.stq) == pytest.approx((2 / 3, 1.0))
    # Official: predicted id 0 is dropped, the background with it: a perfect score.
    assert scores(target, target, drop_predicted_zero=True) == pytest.approx((1.0, 1.0))


def test_a_split_object():
    target = volume([1] * 8)
    predicted = volume([3] * 5 + [4] * 3)
    # IoU(1, 3) = 5/8 matches, tube 4 (IoU 3/8) is a false positive: VEQ = 5/8 * 1 / (1 + 1/2); STQ = sqrt(5/8 * 5/8).
    quality = video_quality(predicted, target)
    assert (quality.true_positives, quality.false_positives, quality.false_negatives) == (1, 1, 0)
    assert (quality.veq, quality.stq) == pytest.approx((5 / 8 * 2 / 3, 5 / 8))
    assert (quality.segmentation, quality.recognition, quality.association) == pytest.approx((5 / 8, 2 / 3, 5 / 8))


def test_a_missed_object():
    target = volume([1, 1, 1, 1, 1, 1, 2, 2, 0, 0])
    predicted = volume([3, 3, 3, 3, 3, 3, 3, 3, 4, 4])
    # Tube 3 covers object 1 and object 2: IoU(1, 3) = 6/8 matches, object 2 (IoU 2/8 with 3) is missed, tube 4
    # (background) is a false positive: VEQ = 3/4 * 1 / (1 + 1/2 + 1/2) = 3/8; STQ = sqrt(3/4 * 6/8) = 3/4.
    quality = video_quality(predicted, target)
    assert (quality.true_positives, quality.false_positives, quality.false_negatives) == (1, 1, 1)
    assert (quality.veq, quality.stq) == pytest.approx((3 / 8, 3 / 4))


def test_false_positives_lower_veq_only():
    target = volume([1, 1, 1, 1, 0, 0, 0, 0])
    predicted = volume([1, 1, 1, 1, 2, 2, 3, 3])
    # Object 1 found exactly; tubes 2 and 3 are false positives: RQ = 1 / (1 + 2/2) = 1/2. STQ sees matches only.
    assert scores(predicted, target) == pytest.approx((0.5, 1.0))


def test_a_tube_spread_over_frames_is_one_tube():
    target = volume([1, 1, 0, 0], [0, 0, 1, 1])
    predicted = volume([4, 4, 4, 4], [9, 9, 4, 4])
    # Object 1 is 4 pixels over two frames; tube 4 is 6 pixels (4 overlap): IoU 4/6; tube 9 a false positive.
    assert scores(predicted, target) == pytest.approx((4 / 6 * 2 / 3, 4 / 6))


def test_dropping_predicted_zero_can_lose_a_good_trajectory():
    target = volume([1, 1, 1, 1, 0, 0, 0, 0])
    predicted = volume([0, 0, 0, 0, 1, 1, 1, 1])
    # Standard: tube 0 matches object 1 exactly, tube 1 is a false positive: VEQ 2/3, STQ 1.
    assert scores(predicted, target) == pytest.approx((2 / 3, 1.0))
    # Official: tube 0 is gone, tube 1 does not overlap the object: no true positive, both 0.
    assert scores(predicted, target, drop_predicted_zero=True) == (0.0, 0.0)


def test_void_pixels_are_background_but_count_in_predicted_sizes():
    target = volume([1, 1, 1, 1, 255, 255, 0, 0])
    predicted = volume([7, 7, 7, 7, 7, 7, 8, 8])
    # Void is background: object 1 against tube 7 of 6 pixels (2 on void): IoU 4/6; tube 8 a false positive.
    assert scores(predicted, target) == pytest.approx((4 / 6 * 2 / 3, 4 / 6))
    # Without a void value, 255 is an object of its own (IoU 2/6 with tube 7: missed): RQ = 1 / (1 + 1/2 + 1/2).
    assert scores(predicted, target, void_id=None) == pytest.approx((4 / 6 * 1 / 2, 4 / 6))


def test_an_iou_of_exactly_the_threshold_counts():
    target = volume([1, 1, 2, 2])
    predicted = volume([3, 3, 3, 3])
    # IoU 1/2 with both objects: one is matched (a true positive at exactly 0.5), the other missed.
    quality = video_quality(predicted, target)
    assert (quality.true_positives, quality.false_positives, quality.false_negatives) == (1, 0, 1)
    assert (quality.veq, quality.stq) == pytest.approx((0.5 * 2 / 3, 0.5))


@pytest.mark.parametrize("predicted, target", [
    (volume([3, 3, 4, 4]), volume([0, 0, 0, 0])),          # no ground-truth object
    (volume([0, 0, 0, 0]), volume([1, 0, 0, 0])),          # with the flag: no predicted trajectory
    (torch.zeros(0, 4, 4, dtype=torch.long), torch.zeros(0, 4, 4, dtype=torch.long)),  # an empty video
    (volume([5, 5, 5, 5]), volume([1, 0, 0, 0])),          # nothing reaches IoU 0.5
])
def test_no_true_positive_scores_zero(predicted, target):
    for drop in (False, True):
        assert scores(predicted, target, drop_predicted_zero=drop) == (0.0, 0.0)


def test_predicted_ids_may_be_any_integers():
    target = volume([1, 1, 1, 1, 1, 1, 2, 2, 0, 0])
    predicted = volume([3, 3, 3, 3, 3, 3, 3, 3, 4, 4])
    expected = scores(predicted, target)
    for shift in (-10, 2**40):  # -1 is what a tokenizer without an assignment writes; huge ids take another path
        assert scores(predicted + shift, target) == pytest.approx(expected)


def test_shapes_must_agree():
    with pytest.raises(ValueError, match="differ in shape"):
        video_quality(volume([1, 2]), volume([1, 2, 3]))


# ------------------------------------------------------------------------------------- against a reference


def reference(predicted: np.ndarray, target: np.ndarray, drop_zero: bool) -> tuple[float, float] | None:
    """VEQ and STQ_EN by definition, one pair of tubes at a time, the matching by trying every assignment (the
    one maximising the summed max(IoU - 1/2, 0) among those of min(G, P) pairs). None where an IoU is exactly 1/2,
    whose matching the definition leaves to the solver's tie-breaking."""
    target = np.where(target == 255, 0, target)
    gt_ids = [g for g in np.unique(target) if g != 0]
    pred_ids = [p for p in np.unique(predicted) if not (drop_zero and p == 0)]
    iou = np.zeros((len(gt_ids), len(pred_ids)))
    for i, g in enumerate(gt_ids):
        for j, p in enumerate(pred_ids):
            inter = np.sum((target == g) & (predicted == p))
            iou[i, j] = inter / np.sum((target == g) | (predicted == p))
    if np.any(iou == 0.5):
        return None
    best, best_pairs = -1.0, []
    if len(gt_ids) <= len(pred_ids):
        candidates = ([(i, j) for i, j in enumerate(cols)] for cols in itertools.permutations(range(len(pred_ids)), len(gt_ids)))
    else:
        candidates = ([(i, j) for j, i in enumerate(rows)] for rows in itertools.permutations(range(len(gt_ids)), len(pred_ids)))
    for pairs in candidates:
        gain = sum(max(iou[i, j] - 0.5, 0.0) for i, j in pairs)
        if gain > best:
            best, best_pairs = gain, pairs
    hits = [(i, j) for i, j in best_pairs if iou[i, j] >= 0.5]
    if not hits:
        return 0.0, 0.0
    tp, fp, fn = len(hits), len(pred_ids) - len(hits), len(gt_ids) - len(hits)
    sq = float(np.mean([iou[i, j] for i, j in hits]))
    inter = sum(np.sum((target == gt_ids[i]) & (predicted == pred_ids[j])) for i, j in hits)
    union = sum(np.sum((target == gt_ids[i]) | (predicted == pred_ids[j])) for i, j in hits)
    return sq * tp / (tp + fp / 2 + fn / 2), math.sqrt(sq * inter / union)


def random_video(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A ground truth of a few boxes (and void) and a prediction that copies it with noise, splits and merges."""
    t, h, w = rng.integers(1, 4), rng.integers(4, 10), rng.integers(4, 10)
    target = np.zeros((t, h, w), dtype=np.int64)
    for obj in range(1, rng.integers(1, 5)):
        y, x = rng.integers(0, h - 2), rng.integers(0, w - 2)
        target[:, y:y + rng.integers(2, h - y + 1), x:x + rng.integers(2, w - x + 1)] = obj
    target[rng.random(target.shape) < 0.05] = 255
    mapping = rng.permutation(6)  # ids shuffled, 0 among them
    predicted = mapping[np.minimum(np.where(target == 255, 0, target), 5)]
    noise = rng.random(target.shape) < rng.uniform(0, 0.4)
    predicted[noise] = rng.integers(0, 6, noise.sum())
    return predicted, target


def test_random_videos_match_the_reference():
    rng = np.random.default_rng(0)
    compared = 0
    for _ in range(150):
        predicted, target = random_video(rng)
        for drop in (False, True):
            expected = reference(predicted, target, drop)
            if expected is None:
                continue
            got = scores(torch.from_numpy(predicted), torch.from_numpy(target), drop_predicted_zero=drop)
            assert got == pytest.approx(expected, abs=1e-9), (predicted, target, drop)
            compared += 1
    assert compared > 250  # exact ties are rare


# ------------------------------------------------------------------------------------ upsampling, the metric


def test_labels_are_nearest_upsampled_as_the_official_drivers_do():
    labels = torch.randint(0, 128, (8, 56, 56))
    up = labels_at(labels, (8, 480, 854))
    official = F.interpolate(labels[None].float(), size=(480, 854), mode="nearest")[0].long()
    assert torch.equal(up, official)
    # Ids beyond float32's exact integers survive (the pixels are gathered, not interpolated).
    assert torch.equal(labels_at(labels + 2**40, (8, 480, 854)), official + 2**40)


def test_a_tubelet_grid_is_upsampled_in_time_too():
    labels = torch.arange(2 * 2 * 2).view(2, 2, 2)
    up = labels_at(labels, (4, 4, 4))
    assert up.shape == (4, 4, 4)
    assert torch.equal(up[0], up[1]) and torch.equal(up[2], up[3]) and not torch.equal(up[1], up[2])
    assert torch.equal(up[2, ::2, ::2], labels[1])


def test_the_metric_averages_videos_in_both_forms():
    metric = VideoSegmentationQuality()
    # Video 1: the grid of ids equals the ground truth (object 1 on the left, background id 0 on the right).
    grid = torch.zeros(1, 2, 2, 2, dtype=torch.long)
    grid[..., 0] = 1
    target = torch.zeros(2, 4, 4, dtype=torch.long)
    target[..., :2] = 1
    # Video 2: its ground truth of another size has no object at all: 0 in both forms.
    metric.update(grid, [target])
    metric.update(grid, torch.zeros(1, 2, 6, 6, dtype=torch.long))
    out = {k: float(v) for k, v in metric.compute().items()}
    assert out["vos_videos"] == 2
    assert out["vos_veq"] == pytest.approx((2 / 3 + 0) / 2)  # the background trajectory is a false positive
    assert out["vos_stq"] == pytest.approx((1 + 0) / 2)
    assert out["vos_veq_official"] == pytest.approx((1 + 0) / 2)  # ... dropped with id 0
    assert out["vos_stq_official"] == pytest.approx((1 + 0) / 2)
    table = video_segmentation_table(out, "test")
    assert "Video segmentation (test, 2 videos): VEQ 0.333  STQ_EN 0.500" in table
    assert video_segmentation_table({}, "test") == ""
    metric.reset()
    assert float(metric.videos) == 0


def test_the_metric_refuses_mismatched_batches():
    metric = VideoSegmentationQuality()
    with pytest.raises(ValueError, match="2 clips"):
        metric.update(torch.zeros(2, 1, 2, 2, dtype=torch.long), [torch.zeros(1, 4, 4, dtype=torch.long)])
