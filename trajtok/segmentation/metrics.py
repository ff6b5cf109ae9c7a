"""Segmentation quality of the tokenizer's hard assignment against pseudo-label trajectories."""

from __future__ import annotations

import torch
from torchmetrics import Metric

from trajtok.segmentation.matching import hungarian_match

FOUND_IOU = 0.5


class SegmentationQuality(Metric):
    """Hungarian-matched trajectory IoU, accumulated over an evaluation epoch and summed across processes.

    Every target trajectory (objects and background alike) is matched to one predicted slot, as in the loss;
    the IoUs are then reported for objects and background apart, because a background that swallows an
    object, or an object split off the background, shows only in the object figures.

    ``compute`` returns:
        - ``seg_miou``: mean IoU of the *object* trajectories with their matched slots (the headline).
        - ``seg_found``: the fraction of object trajectories matched with IoU >= 0.5.
        - ``seg_background_iou``: mean IoU of the background ("stuff") trajectories; only when there were any.
        - ``seg_pred_trajectories``: non-empty predicted slots per clip (the valid token count).
        - ``seg_target_trajectories``: target trajectories per clip, objects and background (at most K kept).
    Without stuff flags every target is an object. A "clip" is one tokenised chunk. Samples repeated by a
    distributed sampler are counted twice; the effect is at most a few samples per epoch.
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        for name in ("iou_sum", "found", "objects", "stuff_iou_sum", "stuff", "predicted", "clips"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, targets: torch.Tensor, stuff: torch.Tensor | None = None) -> None:
        """``logits (B, N, K)`` and ``targets (B, N)`` as for ``SegmentationLoss``; ``stuff (B, K)`` bool marks
        the target ids that are background (``labels.stuff_targets``)."""
        match = hungarian_match(logits, targets)
        stuff = torch.zeros_like(match.present) if stuff is None else stuff.to(match.present.device)
        objects = match.present & ~stuff
        background = match.present & stuff
        predicted = logits.argmax(dim=-1)
        won = torch.zeros(logits.shape[0], logits.shape[-1], dtype=torch.bool, device=logits.device)
        won.scatter_(1, predicted, True)
        self.iou_sum += (match.iou * objects).sum().double()
        self.found += ((match.iou >= FOUND_IOU) & objects).sum()
        self.objects += objects.sum()
        self.stuff_iou_sum += (match.iou * background).sum().double()
        self.stuff += background.sum()
        self.predicted += won.sum()
        self.clips += logits.shape[0]

    def compute(self) -> dict[str, torch.Tensor]:
        objects = self.objects.clamp(min=1)
        clips = self.clips.clamp(min=1)
        out = {
            "seg_miou": (self.iou_sum / objects).float(),
            "seg_found": (self.found / objects).float(),
            "seg_pred_trajectories": (self.predicted / clips).float(),
            "seg_target_trajectories": ((self.objects + self.stuff) / clips).float(),
        }
        if self.stuff > 0:
            out["seg_background_iou"] = (self.stuff_iou_sum / self.stuff).float()
        return out


def segmentation_table(metrics: dict[str, float], stage: str) -> str:
    """Segmentation quality (``SegmentationQuality``'s keys) in a few lines, or ``""`` without it."""
    if "seg_miou" not in metrics:
        return ""
    first = (f"Segmentation ({stage}): object mIoU {metrics['seg_miou']:.3f}  objects found (IoU >= 0.5) "
             f"{100 * metrics['seg_found']:.1f}%")
    lines = [first]
    if "seg_background_iou" in metrics:
        lines[0] += f"  background IoU {metrics['seg_background_iou']:.3f}"
    lines.append(f"  trajectories per clip: predicted {metrics['seg_pred_trajectories']:.2f}, "
                 f"target {metrics['seg_target_trajectories']:.2f}")
    return "\n".join(lines)
