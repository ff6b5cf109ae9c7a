"""Per-patch trajectory targets from pseudo-labels (per-frame segment masks + a trajectory graph).

The targets live on the tokenizer's feature grid: patch ``p`` of a clip (t-major, then h, then w) gets the id
of the trajectory it belongs to, ``-1`` where it belongs to none (segment id 0, unlabelled) and is ignored.
Pseudo-labels are panoptic, as the paper's: background regions are trajectories like the objects (otherwise merging
the background into an object's slot would cost nothing), and ``stuff_targets`` says which targets they are.
Ids are ranks by first appearance in that raster order, so they do not depend on how the pipeline numbered
its trajectories; at most K (the tokenizer's slot count) are kept, later ones are ignored.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange

from trajtok.tokens import TrajectoryTokens

IGNORE = -1


def has_labels(batch: dict[str, Any]) -> bool:
    """Whether a batch carries segmentation pseudo-labels; one of ``mask`` / ``graph`` alone is an error
    (the datamodule always gives both, so half a pair means a broken batch, not an unlabelled one)."""
    if ("mask" in batch) != ("graph" in batch):
        raise ValueError(f"a batch needs both 'mask' and 'graph' or neither, got keys {sorted(batch)}")
    return "mask" in batch


def resize_segments(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(B, T, H, W)`` integer segment ids -> long ``(B, T, h, w)`` by nearest sampling.

    Ids are labels, so no interpolation between them. ``nearest-exact`` samples each cell's centre (a
    stride-4 feature describes its cell's middle), where plain ``nearest`` takes the top-left pixel.
    """
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask.long()
    batch, frames = mask.shape[:2]
    # float32 represents ids exactly up to 2**24; masks are uint8.
    resized = F.interpolate(mask.reshape(batch * frames, 1, *mask.shape[-2:]).float(), size=size,
                            mode="nearest-exact")
    return resized.reshape(batch, frames, *size).long()


def segment_to_trajectory(graph: torch.Tensor, num_ids: int) -> torch.Tensor:
    """``(B, T, num_ids)`` long: the trajectory that owns segment ``s`` of frame ``t``, ``-1`` for none.

    ``graph (B, M, T)``: trajectory ``m`` is segment ``graph[b, m, t]`` of frame ``t``, 0 = absent. Segment
    ids of ``num_ids`` or more cannot occur in the resized mask and are dropped. Should two trajectories claim
    one segment, the lower index wins (deterministic, unlike a scattered write).
    """
    batch, num_traj, frames = graph.shape
    owner = torch.full((batch, frames, num_ids), num_traj, dtype=torch.long, device=graph.device)
    claimed = (graph > 0) & (graph < num_ids)
    b, m, t = claimed.nonzero(as_tuple=True)
    flat = owner.view(-1)
    flat.scatter_reduce_(0, (b * frames + t) * num_ids + graph[b, m, t], m, reduce="amin")
    return owner.masked_fill(owner == num_traj, IGNORE)


def trajectory_targets(
    mask: torch.Tensor, graph: torch.Tensor, size: tuple[int, int], max_trajectories: int
) -> torch.Tensor:
    """Long ``(B, T * h * w)`` per-patch trajectory ids in ``[0, max_trajectories)``, ``-1`` = ignored.

    Args:
        mask: ``(B, T, H, W)`` per-frame segment ids at input resolution, 0 = no segment.
        graph: ``(B, M, T)`` trajectory graph (0 = absent in that frame; all-zero rows are padding).
        size: the feature grid ``(h, w)`` the masks are resized to (nearest).
        max_trajectories: K; trajectories are numbered by first appearance in t-major raster order on the
            grid and those beyond K are ignored. A trajectory with no patch left on the grid gets no id.
    """
    if mask.ndim != 4 or graph.ndim != 3 or mask.shape[:2] != (graph.shape[0], graph.shape[2]):
        raise ValueError(f"mask (B, T, H, W) and graph (B, M, T) disagree: {tuple(mask.shape)}, {tuple(graph.shape)}")
    segments = resize_segments(mask, size).flatten(2)  # (B, T, h*w)
    owner = segment_to_trajectory(graph.to(segments.device).long(), int(segments.max()) + 1)
    trajectory = owner.gather(2, segments).flatten(1)  # (B, N) raw trajectory index or -1
    batch, num_patches = trajectory.shape
    num_traj = graph.shape[1]

    # First patch of each trajectory; unlabelled patches go to an extra column that is cut off.
    column = trajectory.masked_fill(trajectory < 0, num_traj)
    position = torch.arange(num_patches, device=trajectory.device).expand(batch, -1)
    first = torch.full((batch, num_traj + 1), num_patches, dtype=torch.long, device=trajectory.device)
    first.scatter_reduce_(1, column, position, reduce="amin")
    first = first[:, :num_traj]

    # rank[b, m]: position of trajectory m in first-appearance order (distinct patches: no ties).
    order = first.argsort(dim=1)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(num_traj, device=order.device).expand(batch, -1))
    rank = rank.masked_fill((first == num_patches) | (rank >= max_trajectories), IGNORE)
    rank = F.pad(rank, (0, 1), value=IGNORE)  # the unlabelled column
    return rank.gather(1, column)


def stuff_targets(
    mask: torch.Tensor, graph: torch.Tensor, stuff: torch.Tensor, size: tuple[int, int], targets: torch.Tensor,
    max_trajectories: int,
) -> torch.Tensor:
    """``(B, K)`` bool: target id ``k`` of ``targets (B, N)`` (``trajectory_targets`` of the same ``mask``,
    ``graph`` and ``size``) is a background trajectory, one of the graph rows flagged by ``stuff (B, M)``."""
    only_stuff = graph * stuff.to(graph.device)[..., None]
    stuff_patch = trajectory_targets(mask, only_stuff, size, max(1, graph.shape[1])) >= 0  # (B, N)
    column = targets.masked_fill(targets < 0, max_trajectories)
    out = torch.zeros(targets.shape[0], max_trajectories + 1, dtype=torch.bool, device=targets.device)
    return out.scatter_reduce(1, column, stuff_patch, reduce="amax")[:, :max_trajectories]


def segmentation_inputs(
    tokens: TrajectoryTokens, mask: torch.Tensor, graph: torch.Tensor, stuff: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The assignment logits, their targets and which targets are background, one row per tokenised chunk:
    ``(B * C, n, K)``, ``(B * C, n)``, ``(B * C, K)`` (all False without ``stuff (B, M)``).

    Chunks of a long clip are tokenised independently (slot k of one chunk is unrelated to slot k of the next),
    so each chunk is matched and supervised on its own, with its frames' part of the mask and graph.
    """
    if tokens.logits is None:
        raise ValueError("this tokenizer has no assignment logits to supervise or evaluate as a segmentation")
    frames = tokens.grid[0]
    if mask.shape[1] != frames or graph.shape[-1] != frames:
        raise ValueError(f"labels have {mask.shape[1]} mask / {graph.shape[-1]} graph frames, tokens {frames}")
    chunks = tokens.chunks
    logits = rearrange(tokens.logits, "b (c n) k -> (b c) n k", c=chunks)
    mask = rearrange(mask, "b (c t) h w -> (b c) t h w", c=chunks)
    graph = rearrange(graph, "b m (c t) -> (b c) m t", c=chunks)
    num_slots = logits.shape[-1]
    targets = trajectory_targets(mask, graph, tokens.grid[1:], num_slots)
    if stuff is None:
        return logits, targets, torch.zeros(targets.shape[0], num_slots, dtype=torch.bool, device=targets.device)
    stuff = stuff.repeat_interleave(chunks, dim=0)
    return logits, targets, stuff_targets(mask, graph, stuff, tokens.grid[1:], targets, num_slots)
