"""Oracle pipeline parts for the synthetic set, whose videos have their exact labels beside them: a segmenter that
returns the true segments of the key frames, and a propagator that follows each key segment's true trajectory
(through occlusions too). With them the pseudo-labelling pipeline must reproduce the truth; not collected."""

from __future__ import annotations

import torch
from torch import nn

from datamodules.pseudo_label_files import load_pseudo_labels, pseudo_label_paths


def truth(path: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The synthetic video's true masks long ``(T, H, W)`` and graph long ``(M, T)``."""
    masks, graph, _ = load_pseudo_labels(*pseudo_label_paths(path))
    return torch.from_numpy(masks).long(), torch.from_numpy(graph)


def trajectory_maps(masks: torch.Tensor, graph: torch.Tensor) -> torch.Tensor:
    """Long ``(T, H, W)``: each pixel's true trajectory + 1 (0: none)."""
    lookup = torch.zeros(masks.shape[0], 256, dtype=torch.long)
    traj, frame = (graph > 0).nonzero(as_tuple=True)
    lookup[frame, graph[traj, frame]] = traj + 1
    return lookup.gather(1, masks.flatten(1)).view_as(masks)


class OracleSegmenter(nn.Module):
    """The true segments of the key frames."""

    def forward(self, clip, frames: list[int]) -> torch.Tensor:
        return truth(clip.path)[0][frames].to(clip.frames.device)


class OraclePropagator(nn.Module):
    """Each key segment followed along the true trajectory it lies on (the one covering most of it)."""

    def forward(self, clip, start: int, stop: int, key: torch.Tensor) -> torch.Tensor:
        trajectories = trajectory_maps(*truth(clip.path))[start:stop]
        key = key.cpu()
        votes = torch.zeros(int(key.max()) + 1, int(trajectories.max()) + 1, dtype=torch.long)
        votes.index_put_((key.flatten(), trajectories[0].flatten()), torch.ones(key.numel(), dtype=torch.long),
                         accumulate=True)
        owner = votes[:, 1:].argmax(1) + 1  # key id -> trajectory + 1
        to_key = torch.zeros(votes.shape[1], dtype=torch.long)
        to_key[owner[1:]] = torch.arange(1, len(owner))
        return to_key[trajectories].to(clip.frames.device)


class HalvesSegmenter(nn.Module):
    """Key frames split into a left (id 1, the larger when the width is odd) and a right half (id 2): a segmenter
    for videos with no truth beside them (tar shard samples)."""

    def forward(self, clip, frames: list[int]) -> torch.Tensor:
        height, width = clip.frames.shape[1:3]
        halves = (torch.arange(width, device=clip.frames.device) >= (width + 1) // 2).long() + 1
        return halves.expand(len(frames), height, width).clone()


class StillPropagator(nn.Module):
    """The key segments held still through the chunk."""

    def forward(self, clip, start: int, stop: int, key: torch.Tensor) -> torch.Tensor:
        return key.expand(stop - start, *key.shape).clone()
