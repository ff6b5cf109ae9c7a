"""The steps of SAM's automatic mask generation ("segment everything") after the model, in vectorised torch: a grid
of point prompts, the stability score, boxes of masks, box NMS, and the panoptic map of the masks that survive.

transformers' ``mask-generation`` post-processing does these with torchvision's ``batched_nms``, which cannot be
installed beside the pinned CPU torch; these are the same rules (SAM's ``SamAutomaticMaskGenerator``), one crop.
"""

from __future__ import annotations

import torch

from trajtok.pseudo_labels.components import relabel_by_area


def point_grid(points_per_side: int) -> torch.Tensor:
    """Float ``(n * n, 2)`` ``(x, y)`` points at the centres of an ``n x n`` grid over ``[0, 1]^2``, x varying
    fastest (SAM's ``build_point_grid``)."""
    centres = (torch.arange(points_per_side, dtype=torch.float64) + 0.5) / points_per_side
    y, x = torch.meshgrid(centres, centres, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], 1).float()


def stability_score(logits: torch.Tensor, threshold: float = 0.0, offset: float = 1.0) -> torch.Tensor:
    """Float ``(Q,)``: IoU of each mask logit map ``(Q, H, W)`` thresholded at ``threshold + offset`` and at
    ``threshold - offset`` (the first lies inside the second, so it is a ratio of areas); a mask that moves little
    when its threshold does is stable. An empty mask scores 0."""
    inner = (logits > threshold + offset).flatten(1).sum(1)
    outer = (logits > threshold - offset).flatten(1).sum(1)
    return inner / outer.clamp(min=1)


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Float ``(Q, 4)`` ``(x0, y0, x1, y1)`` boxes of bool masks ``(Q, H, W)``, inclusive pixel bounds (SAM's
    convention: a one-pixel mask at (x, y) is ``(x, y, x, y)``); an empty mask gives ``(0, 0, 0, 0)``."""
    height, width = masks.shape[-2:]
    rows, cols = masks.any(2), masks.any(1)  # (Q, H), (Q, W)
    y = torch.arange(height, device=masks.device)
    x = torch.arange(width, device=masks.device)
    y0 = torch.where(rows, y, height).amin(1)
    y1 = torch.where(rows, y, -1).amax(1)
    x0 = torch.where(cols, x, width).amin(1)
    x1 = torch.where(cols, x, -1).amax(1)
    boxes = torch.stack([x0, y0, x1, y1], 1)
    return torch.where(rows.any(1, keepdim=True), boxes, 0).float()


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Float ``(Q, R)`` IoU of ``(x0, y0, x1, y1)`` boxes ``a (Q, 4)`` and ``b (R, 4)``, areas as
    ``(x1 - x0) * (y1 - y0)`` (torchvision's ``box_iou``, which SAM's NMS uses); 0 where the union is empty."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    low = torch.maximum(a[:, None, :2], b[None, :, :2])
    high = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (high - low).clamp(min=0).prod(2)
    union = area_a[:, None] + area_b[None] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-9), 0.0)


def box_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Indices of the boxes greedy non-maximum suppression keeps, by decreasing score (torchvision's ``nms``):
    a box is kept unless a kept box of higher score overlaps it with IoU above ``iou_threshold``.

    Greedy NMS is sequential in the boxes; here it is a fixed-point iteration over the whole IoU matrix instead:
    ``keep[i] = not any(keep[j] and iou[j, i] > t for j ranked above i)``. Each pass settles at least the next
    box in rank order (the top one is always kept), so it ends at the greedy answer after as many passes as the
    longest chain of suppressions, usually a handful; each pass is one matrix product.
    """
    order = scores.argsort(descending=True, stable=True)
    overlap = box_iou(boxes[order], boxes[order]) > iou_threshold
    overlap = overlap.triu(1).float()  # [j, i]: j ranks above i and suppresses it if kept
    keep = torch.ones(len(order), dtype=torch.bool, device=boxes.device)
    while True:
        new = (keep.float() @ overlap) == 0
        if torch.equal(new, keep):
            return order[keep]
        keep = new


def panoptic_ids(masks: torch.Tensor, min_area: int, max_segments: int) -> torch.Tensor:
    """Long ``(H, W)`` segment ids of overlapping bool masks ``(Q, H, W)``: every pixel goes to the smallest
    mask covering it (SAM's multimask prompts give nested whole / part / subpart masks; painting largest first
    lets the parts show and leaves the whole the pixels no part covers), 0 where none does; then numbered 1..K
    by decreasing visible area, keeping the ``max_segments`` largest of more than ``min_area`` pixels
    (``components.relabel_by_area``). Masks of at most ``min_area`` pixels are dropped before painting, so a
    speck leaves no hole in the mask under it."""
    area = masks.flatten(1).sum(1)
    masks, area = masks[area > min_area], area[area > min_area]
    if len(masks) == 0:
        return torch.zeros(masks.shape[1:], dtype=torch.long, device=masks.device)
    order = area.argsort(stable=True)  # smallest first
    ordered = masks[order]
    smallest = ordered.to(torch.uint8).argmax(0)  # argmax gives the first maximum: the smallest covering mask
    painted = torch.where(ordered.any(0), smallest + 1, 0)
    return relabel_by_area(painted, min_area, max_segments)
