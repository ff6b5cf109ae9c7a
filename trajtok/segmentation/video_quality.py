"""Video segmentation quality of whole-clip trajectories: VEQ and STQ_EN, as the official TrajTok segmenter drivers
(DAVIS-2017, MOSE, YouTube-VIS) score them.

The segmenter predicts class-agnostic trajectory ids; a benchmark gives instance ids. Each id is a *tube*: all its
pixels over all frames of the clip. Per video:

1. **Tubes.** Ground-truth id 0 is background and is not a tube; the void value (255 in DAVIS / MOSE) becomes
   background first, so void pixels belong to no ground-truth tube but still count in the size of the predicted
   tubes that cover them. Every predicted id is a tube (see ``drop_predicted_zero`` for the official exception),
   and a predicted tube's size counts all its pixels, background included: a trajectory that spills over the
   background is a worse match.
2. **Matching.** Ground-truth tubes (rows) are matched one-to-one to predicted tubes (columns) by scipy's
   Hungarian solver on the cost ``1 - max(IoU, threshold)``: every pair below the threshold costs the same, so
   only pairs at or above it (at most one per tube when the threshold is 0.5, since predicted tubes are disjoint)
   steer the assignment. A matched pair is a true positive when its IoU is at least the threshold.
3. **VEQ** = SQ x RQ: SQ is the mean IoU of the true positives, RQ = tp / (tp + fp / 2 + fn / 2) with fp every
   predicted tube that is not a true positive (background slots included) and fn every ground-truth tube that is
   not. Over-segmenting the background therefore costs RQ.
4. **STQ_EN** = sqrt(SQ x AQ), with AQ = (summed intersections) / (summed unions) of the true positives. Despite
   its name it is not Weber et al.'s STQ: it ignores unmatched tubes entirely.
5. **No true positive** (no ground-truth tube, no prediction, an empty video, or nothing matched): both scores are
   0, as the official code returns; such a video still counts in the average over videos.

``drop_predicted_zero`` reproduces the official drivers' quirk: they pass ``ignore_id=0`` for the prediction too,
so the trajectory whose id is 0 (the segmenter's first slot) silently disappears, neither matched nor counted as a
false positive. That can raise VEQ (one fewer false positive) or lower it (a good trajectory 0 is lost). Off by
default: the standard form counts every predicted trajectory; turn it on to reproduce the published numbers.

IoU and the matching decisions use float32, as the official code does, so that a pair exactly at, or within
float32 rounding of, the threshold is decided the same way; the reported averages use float64.

``VideoSegmentationQuality`` (a torchmetrics ``Metric``) accumulates both forms over an evaluation and averages
them over videos, summed across processes; ``trajtok.module.TrajTokModule`` updates it for batches that carry
``vos_mask`` (``datamodules.video_segmentation``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torchmetrics import Metric

#: The ground-truth value of unlabelled ("void") pixels in DAVIS and MOSE palette PNGs; treated as background.
VOID_ID = 255
#: A matched pair counts when its IoU reaches this (the official drivers' ``--iou_thr`` default).
IOU_THRESHOLD = 0.5


@dataclass(frozen=True)
class TubeOverlaps:
    """How every ground-truth tube overlaps every predicted tube of one video.

    Attributes:
        target_ids: ``(G,)`` the ground-truth ids, ascending, background excluded.
        predicted_ids: ``(P,)`` the predicted ids, ascending.
        intersection: ``(G, P)`` long, pixels where ground truth ``g`` and prediction ``p`` meet.
        target_sizes: ``(G,)`` long, pixels of each ground-truth tube.
        predicted_sizes: ``(P,)`` long, pixels of each predicted tube, background and void included.
    """

    target_ids: torch.Tensor
    predicted_ids: torch.Tensor
    intersection: torch.Tensor
    target_sizes: torch.Tensor
    predicted_sizes: torch.Tensor

    def without_predicted(self, predicted_id: int) -> TubeOverlaps:
        """The same overlaps with one predicted tube left out (not matched, not counted)."""
        keep = self.predicted_ids != predicted_id
        return TubeOverlaps(self.target_ids, self.predicted_ids[keep], self.intersection[:, keep],
                            self.target_sizes, self.predicted_sizes[keep])


def _compact(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.unique(ids, return_inverse=True)``: the ids present, ascending, and each element's position among
    them; by a histogram when the ids are small non-negative integers (benchmark ids, trajectory slots), which is
    linear where sorting a full-resolution volume is not."""
    if ids.numel() and int(ids.min()) >= 0 and int(ids.max()) < 1 << 20:
        present = torch.bincount(ids.flatten()) > 0
        values = present.nonzero().flatten()
        position = torch.cumsum(present, 0) - 1
        return values, position[ids]
    return torch.unique(ids, return_inverse=True)


def tube_overlaps(predicted: torch.Tensor, target: torch.Tensor, void_id: int | None = VOID_ID) -> TubeOverlaps:
    """The overlaps of the tubes of ``predicted`` and ``target``, two id volumes of one shape (``(T, H, W)``).

    ``target`` id 0 is background, and ``void_id`` (None: none) is made background first. One joint histogram
    of (ground-truth id, predicted id) gives every intersection and size at once.
    """
    if predicted.shape != target.shape:
        raise ValueError(f"predicted ids {tuple(predicted.shape)} and ground truth {tuple(target.shape)} differ in shape")
    target = target.long()
    if void_id is not None:
        target = target.masked_fill(target == void_id, 0)
    target_ids, target_index = _compact(target)
    predicted_ids, predicted_index = _compact(predicted.long())
    rows, cols = len(target_ids), len(predicted_ids)
    joint = torch.bincount((target_index * cols + predicted_index).flatten(), minlength=rows * cols)
    joint = joint.view(rows, cols)
    objects = target_ids != 0
    return TubeOverlaps(
        target_ids=target_ids[objects],
        predicted_ids=predicted_ids,
        intersection=joint[objects],
        target_sizes=joint.sum(1)[objects],
        predicted_sizes=joint.sum(0),
    )


@dataclass(frozen=True)
class VideoQuality:
    """The scores of one video (module docstring for the definitions).

    Attributes:
        veq: VEQ = ``segmentation * recognition``.
        stq: STQ_EN = ``sqrt(segmentation * association)``.
        segmentation: SQ, the mean IoU of the true positives.
        recognition: RQ, ``tp / (tp + fp / 2 + fn / 2)``.
        association: AQ, summed intersections over summed unions of the true positives.
        true_positives, false_positives, false_negatives: tube counts.
    """

    veq: float
    stq: float
    segmentation: float
    recognition: float
    association: float
    true_positives: int
    false_positives: int
    false_negatives: int


def matched_pairs(overlaps: TubeOverlaps, iou_threshold: float = IOU_THRESHOLD) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rows, cols)``: the ground-truth and predicted tube indices of the true positives.

    Hungarian matching on ``1 - max(IoU, iou_threshold)`` in float32 (the module docstring says why), then the
    pairs whose IoU reaches the threshold.
    """
    inter = overlaps.intersection
    union = overlaps.target_sizes[:, None] + overlaps.predicted_sizes[None, :] - inter
    iou = torch.where(inter > 0, inter.float() / union.float().clamp(min=1), 0.0)
    cost = 1.0 - iou.clamp(min=iou_threshold)
    rows, cols = linear_sum_assignment(cost.cpu().numpy())
    rows = torch.as_tensor(rows, dtype=torch.long, device=iou.device)
    cols = torch.as_tensor(cols, dtype=torch.long, device=iou.device)
    hit = iou[rows, cols] >= iou_threshold
    return rows[hit], cols[hit]


def quality_of_overlaps(overlaps: TubeOverlaps, iou_threshold: float = IOU_THRESHOLD) -> VideoQuality:
    """VEQ, STQ_EN and their parts from the overlaps of one video."""
    rows, cols = matched_pairs(overlaps, iou_threshold)
    tp = len(rows)
    fp = len(overlaps.predicted_ids) - tp
    fn = len(overlaps.target_ids) - tp
    if tp == 0:
        return VideoQuality(0.0, 0.0, 0.0, 0.0, 0.0, 0, fp, fn)
    inter = overlaps.intersection[rows, cols].double()
    union = overlaps.target_sizes[rows].double() + overlaps.predicted_sizes[cols].double() - inter
    segmentation = float((inter / union).mean())
    recognition = tp / (tp + 0.5 * fp + 0.5 * fn)
    association = float(inter.sum() / union.sum())
    return VideoQuality(
        veq=segmentation * recognition,
        stq=math.sqrt(segmentation * association),
        segmentation=segmentation,
        recognition=recognition,
        association=association,
        true_positives=tp,
        false_positives=fp,
        false_negatives=fn,
    )


def video_quality(
    predicted: torch.Tensor,
    target: torch.Tensor,
    *,
    drop_predicted_zero: bool = False,
    void_id: int | None = VOID_ID,
    iou_threshold: float = IOU_THRESHOLD,
) -> VideoQuality:
    """VEQ and STQ_EN of one video: ``predicted`` trajectory ids and ``target`` instance ids, ``(T, H, W)`` each
    at the ground truth's resolution.

    ``drop_predicted_zero``: leave the predicted id 0 out, as the official drivers do (module docstring); off, every
    predicted trajectory counts. ``void_id``: the ground-truth value made background (None: none).
    """
    overlaps = tube_overlaps(predicted, target, void_id)
    if drop_predicted_zero:
        overlaps = overlaps.without_predicted(0)
    return quality_of_overlaps(overlaps, iou_threshold)


def nearest_sources(size_in: int, size_out: int, device: torch.device | None = None) -> torch.Tensor:
    """``(size_out,)`` the input index each output index copies under ``F.interpolate(..., mode="nearest")`` on a
    float32 tensor: the official drivers upsample float32 ids that way, and float64 picks other rows at some
    boundaries (its scale ``in / out`` rounds differently)."""
    index = torch.arange(size_in, dtype=torch.float32, device=device).view(1, 1, size_in, 1)
    return F.interpolate(index, size=(size_out, 1), mode="nearest").view(size_out).long()


def labels_at(labels: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Trajectory ids ``labels (t, h, w)`` on the feature grid, nearest-upsampled to ``size = (T, H, W)``.

    With ``t == T`` (TrajTok keeps every frame) this is exactly what the official drivers do, ``F.interpolate`` in
    ``nearest`` mode of the float32 id map to ``(H, W)``; a tokenizer whose grid has fewer steps in time
    (tubelets) is upsampled in time the same way. The pixels are gathered by index, so every id survives exactly.
    """
    frames, height, width = size
    t, h, w = labels.shape
    device = labels.device
    times = nearest_sources(t, frames, device)
    rows, cols = nearest_sources(h, height, device), nearest_sources(w, width, device)
    return labels[times[:, None, None], rows[None, :, None], cols[None, None, :]]


class VideoSegmentationQuality(Metric):
    """VEQ and STQ_EN per video, averaged over the videos of an evaluation and summed across processes.

    ``update(labels, targets)``: ``labels (B, t, h, w)``, the tokenizer's hard trajectory ids on its feature grid
    (``TrajectoryTokens.labels``), and ``targets``, the ground-truth id volumes (a sequence of B ``(T, H, W)``
    tensors, since resolutions differ between videos, or one ``(B, T, H, W)`` tensor). Each clip's ids are
    nearest-upsampled to its ground truth's resolution (``labels_at``) and scored in both forms.

    ``compute`` returns:
        - ``vos_veq``, ``vos_stq``: the standard form, every predicted trajectory counted.
        - ``vos_veq_official``, ``vos_stq_official``: the official drivers' form, predicted trajectory 0 dropped
          (``drop_predicted_zero``): the numbers to compare with the published ones.
        - ``vos_videos``: how many videos were scored.

    Args:
        void_id: the ground-truth value made background (255 for DAVIS / MOSE; None: none).
        iou_threshold: the IoU a matched pair needs to count.

    A video repeated by a distributed sampler (to even out processes) is counted twice, at most a few per run.
    """

    full_state_update = False

    def __init__(self, void_id: int | None = VOID_ID, iou_threshold: float = IOU_THRESHOLD) -> None:
        super().__init__()
        self.void_id = void_id
        self.iou_threshold = iou_threshold
        for name in ("veq", "stq", "veq_official", "stq_official", "videos"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, labels: torch.Tensor, targets: torch.Tensor | Sequence[torch.Tensor]) -> None:
        if len(labels) != len(targets):
            raise ValueError(f"{len(labels)} clips of trajectory ids but {len(targets)} ground-truth volumes")
        for clip, target in zip(labels, targets):
            if target.dim() != 3:
                raise ValueError(f"a ground-truth volume must be (T, H, W), got {tuple(target.shape)}")
            overlaps = tube_overlaps(labels_at(clip, target.shape), target, self.void_id)
            standard = quality_of_overlaps(overlaps, self.iou_threshold)
            official = quality_of_overlaps(overlaps.without_predicted(0), self.iou_threshold)
            self.veq += standard.veq
            self.stq += standard.stq
            self.veq_official += official.veq
            self.stq_official += official.stq
            self.videos += 1

    def compute(self) -> dict[str, torch.Tensor]:
        videos = self.videos.clamp(min=1)
        return {
            "vos_veq": (self.veq / videos).float(),
            "vos_stq": (self.stq / videos).float(),
            "vos_veq_official": (self.veq_official / videos).float(),
            "vos_stq_official": (self.stq_official / videos).float(),
            "vos_videos": self.videos.float(),
        }


def video_segmentation_table(metrics: dict[str, float], stage: str) -> str:
    """``VideoSegmentationQuality``'s keys in two lines, or ``""`` without them."""
    if "vos_veq" not in metrics:
        return ""
    return (
        f"Video segmentation ({stage}, {int(metrics['vos_videos'])} videos): VEQ {metrics['vos_veq']:.3f}  "
        f"STQ_EN {metrics['vos_stq']:.3f}\n"
        f"  official form (predicted trajectory 0 dropped): VEQ {metrics['vos_veq_official']:.3f}  "
        f"STQ_EN {metrics['vos_stq_official']:.3f}"
    )
