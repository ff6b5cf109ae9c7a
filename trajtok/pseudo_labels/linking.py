"""Linking per-chunk segments into trajectories across chunks (the TrajViT rule), and the output arrays.

A chunk's labels are per-frame maps of its key segments' ids (1..K, 0 = unlabelled): frame 0 holds the
segmenter's segments of the chunk's first (key) frame, later frames the propagated ones. A key segment
continues the trajectory of the previous chunk's segment whose propagated mask at this key frame (``carry``)
has IoU >= the threshold with it; unmatched segments start new trajectories; no carry (a shot cut, the
first chunk) links nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ChunkLabels:
    """``labels`` long ``(L, H, W)``: the chunk's frames as ids of its key segments; ``carry`` long ``(H, W)``
    or None: those segments propagated onto the next chunk's key frame, which links the two chunks."""

    labels: torch.Tensor
    carry: torch.Tensor | None = None


def iou_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU ``(A, B)`` of the segments of two label maps of one frame (ids 1..A and 1..B; 0 is no segment),
    from their joint histogram."""
    num_a, num_b = int(a.max()) + 1, int(b.max()) + 1
    joint = torch.bincount((a.reshape(-1) * num_b + b.reshape(-1)).long(), minlength=num_a * num_b)
    joint = joint.view(num_a, num_b).double()
    union = joint.sum(1, keepdim=True) + joint.sum(0, keepdim=True) - joint
    return (joint / union.clamp(min=1))[1:, 1:]


def match_segments(previous: torch.Tensor, current: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """For each segment of ``current`` (long ``(B + 1,)``, entry 0 unused), the segment of ``previous`` it
    continues, 0 for none: IoU >= ``threshold`` and each the other's best match.

    In a partition IoU > 0.5 already makes the pair mutual best; asking for it keeps the matching one-to-one
    at an exact tie of 0.5 too (a segment split into two equal halves continues in one of them).
    """
    out = torch.zeros(int(current.max()) + 1, dtype=torch.long)
    iou = iou_matrix(previous, current)
    if iou.numel() == 0:
        return out
    best_prev = iou.argmax(0)  # (B,)
    best_cur = iou.argmax(1)  # (A,)
    cols = torch.arange(iou.shape[1])
    ok = (iou[best_prev, cols] >= threshold) & (best_cur[best_prev] == cols)
    out[1:] = torch.where(ok, best_prev + 1, 0)
    return out


def present_ids(labels: torch.Tensor, num_ids: int) -> torch.Tensor:
    """Bool ``(L, num_ids + 1)``: which ids occur in each frame of ``labels (L, H, W)``."""
    present = torch.zeros(labels.shape[0], num_ids + 1, dtype=torch.bool)
    present.scatter_(1, labels.reshape(labels.shape[0], -1).long().cpu(), True)
    return present


def link_chunks(chunks: Sequence[ChunkLabels], threshold: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks uint8 ``(T, H, W)`` (per-frame segment ids) and graph long ``(M, T)`` (trajectory ``m`` is segment
    ``graph[m, t]`` of frame ``t``, 0 = absent) of consecutive chunks, linked as the module says."""
    masks = torch.cat([c.labels.cpu() for c in chunks])
    if masks.max() > 255:
        raise ValueError(f"{int(masks.max())} segments in a chunk; the mask format holds at most 255")
    trajectories: list[torch.Tensor] = []  # per chunk: trajectory of each key id (entry 0 unused)
    num_trajectories = 0
    for i, chunk in enumerate(chunks):
        num_ids = int(chunk.labels.max())
        trajectory = torch.full((num_ids + 1,), -1, dtype=torch.long)
        carry = chunks[i - 1].carry if i else None
        if carry is not None:
            match = match_segments(carry.cpu(), chunk.labels[0].cpu(), threshold)
            continued = match > 0
            trajectory[continued] = trajectories[-1][match[continued]]
        new = trajectory == -1
        new[0] = False
        trajectory[new] = torch.arange(num_trajectories, num_trajectories + int(new.sum()))
        num_trajectories += int(new.sum())
        trajectories.append(trajectory)
    graph = torch.zeros(num_trajectories, masks.shape[0], dtype=torch.long)
    start = 0
    for chunk, trajectory in zip(chunks, trajectories):
        frame, seg = present_ids(chunk.labels, len(trajectory) - 1)[:, 1:].nonzero(as_tuple=True)
        graph[trajectory[seg + 1], start + frame] = seg + 1
        start += chunk.labels.shape[0]
    return masks.to(torch.uint8), graph
