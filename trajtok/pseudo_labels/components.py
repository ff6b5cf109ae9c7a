"""Panoptic segments from a boundary map (DirectSAM's output): the connected regions enclosed by boundaries."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage


def relabel_by_area(labels: torch.Tensor, min_area: int, max_segments: int) -> torch.Tensor:
    """Ids of ``labels (H, W)`` renumbered 1..K by decreasing area (the order TrajViT's segmenter gives), keeping
    the ``max_segments`` largest of those with more than ``min_area`` pixels; the rest become 0."""
    area = torch.bincount(labels.reshape(-1), minlength=int(labels.max()) + 1)
    area[0] = 0
    order = torch.argsort(area, descending=True, stable=True)
    keep = order[: max_segments][area[order[: max_segments]] > min_area]
    lookup = torch.zeros_like(area)
    lookup[keep] = torch.arange(1, len(keep) + 1)
    return lookup[labels]


def grow_into_gaps(labels: torch.Tensor, steps: int, kernel: int = 5) -> torch.Tensor:
    """Fill unlabelled pixels (boundaries, dropped specks) with a neighbouring segment's id, ``steps`` times
    over a ``kernel`` square; labelled pixels keep theirs, so the result stays a partition (TrajViT dilates
    each mask 5x5 twice, which makes them overlap)."""
    for _ in range(steps):
        grown = F.max_pool2d(labels[None, None].double(), kernel, stride=1, padding=kernel // 2)[0, 0].long()
        labels = torch.where(labels == 0, grown, labels)
    return labels


def boundary_segments(boundary_prob: torch.Tensor, threshold: float = 0.2, min_area: int = 16,
                      max_segments: int = 128, dilation: int = 2) -> torch.Tensor:
    """Long ``(N, H, W)`` segment ids of ``N`` boundary-probability maps ``(N, H, W)``: pixels below ``threshold``
    are interior; their 4-connected components are the segments, filtered and numbered by ``relabel_by_area``,
    then grown over the gaps ``dilation`` times."""
    interior = (boundary_prob < threshold).cpu().numpy()
    out = []
    for frame in interior:  # scipy labels one frame at a time (a C loop over its pixels)
        labels, _ = ndimage.label(frame)
        labels = relabel_by_area(torch.from_numpy(labels.astype(np.int64)), min_area, max_segments)
        out.append(grow_into_gaps(labels, dilation))
    return torch.stack(out)
