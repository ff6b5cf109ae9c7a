"""Segmentation supervision of the tokenizer's assignment: pseudo-label targets, Hungarian matching, the
Dice + focal loss, and segmentation quality metrics.

``labels``: per-patch trajectory targets from per-frame masks + a trajectory graph; which targets are background.
``matching``: IoU of hard predictions vs targets, per-sample Hungarian matching, slot alignment.
``losses``: softmax Dice and softmax focal on matched logits, and ``SegmentationLoss`` (weights, for yaml).
``metrics``: ``SegmentationQuality``, matched object mIoU / objects found / background IoU / counts, synced
across processes.
"""

from trajtok.segmentation.labels import (
    has_labels,
    resize_segments,
    segmentation_inputs,
    stuff_targets,
    trajectory_targets,
)
from trajtok.segmentation.losses import (
    SegmentationLoss,
    softmax_dice_loss,
    softmax_focal_loss,
)
from trajtok.segmentation.matching import (
    Matching,
    align_slots,
    hard_iou,
    hungarian_match,
    soft_dice,
)
from trajtok.segmentation.metrics import SegmentationQuality, segmentation_table

__all__ = [
    "Matching",
    "SegmentationLoss",
    "SegmentationQuality",
    "align_slots",
    "hard_iou",
    "has_labels",
    "hungarian_match",
    "resize_segments",
    "segmentation_inputs",
    "segmentation_table",
    "soft_dice",
    "softmax_dice_loss",
    "softmax_focal_loss",
    "stuff_targets",
    "trajectory_targets",
]
