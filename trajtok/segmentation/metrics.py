"""Segmentation quality of the tokenizer's hard assignment against pseudo-label trajectories."""

from __future__ import annotations

import torch
from torchmetrics import Metric

from trajtok.segmentation.matching import hungarian_match

FOUND_IOU = 0.5


class SegmentationQuality(Metric):
    """Hungarian-matched trajectory IoU, accumulated over an evaluation epoch and summed across processes.

    ``compute`` returns:
        - ``seg_miou``: mean over all target trajectories of the IoU with their matched slot.
        - ``seg_found``: the fraction of target trajectories matched with IoU >= 0.5.
        - ``seg_pred_trajectories``: non-empty predicted slots per clip (all patches, background included).
        - ``seg_target_trajectories``: target trajectories per clip (at most K are kept).
    A "clip" is one tokenised chunk. Samples repeated by a distributed sampler are counted twice; the effect
    is at most a few samples per epoch.
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        for name in ("iou_sum", "found", "targets", "predicted", "clips"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """``logits (B, N, K)`` and ``targets (B, N)`` as for ``SegmentationLoss``."""
        match = hungarian_match(logits, targets)
        predicted = logits.argmax(dim=-1)
        won = torch.zeros(logits.shape[0], logits.shape[-1], dtype=torch.bool, device=logits.device)
        won.scatter_(1, predicted, True)
        self.iou_sum += match.iou.sum().double()
        self.found += ((match.iou >= FOUND_IOU) & match.present).sum()
        self.targets += match.present.sum()
        self.predicted += won.sum()
        self.clips += logits.shape[0]

    def compute(self) -> dict[str, torch.Tensor]:
        targets = self.targets.clamp(min=1)
        clips = self.clips.clamp(min=1)
        return {
            "seg_miou": (self.iou_sum / targets).float(),
            "seg_found": (self.found / targets).float(),
            "seg_pred_trajectories": (self.predicted / clips).float(),
            "seg_target_trajectories": (self.targets / clips).float(),
        }
