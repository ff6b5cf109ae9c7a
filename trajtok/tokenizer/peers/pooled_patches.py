"""PatchVLM's tokenizer, the baseline of TrajVLM: a frozen model's feature grid pooled to a fixed grid per chunk."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from jsonargparse.typing import PositiveInt
from torch import nn

from trajtok.tokenizer.features import FrozenVideoFeatures
from trajtok.tokens import TrajectoryTokens


class PooledPatches(nn.Module):
    """A frozen model's feature grid average-pooled to a fixed ``pooled_grid`` per chunk of frames: the patch-
    pooling connector input of a PatchVLM (the baseline of TrajVLM), with a token count fixed by the grid.

    Args:
        features: the frozen feature source.
        pooled_grid: ``(t, h, w)`` tokens per chunk (adaptive average pooling of the chunk's feature grid).
        chunk_frames: frames per chunk; default the whole clip is one chunk.
    """

    def __init__(self, features: FrozenVideoFeatures, pooled_grid: tuple[int, int, int] = (1, 4, 4),
                 chunk_frames: PositiveInt | None = None):
        super().__init__()
        if len(pooled_grid) != 3 or min(pooled_grid) < 1:
            raise ValueError(f"pooled_grid={pooled_grid} must be three positive sizes (t, h, w)")
        self.features = features
        self.pooled_grid = tuple(pooled_grid)
        self.chunk_frames = chunk_frames

    @property
    def out_dim(self) -> int:
        return self.features.out_dim

    def forward(self, video: torch.Tensor) -> TrajectoryTokens:
        batch, frames = video.shape[:2]
        size = self.chunk_frames or frames
        if frames % size:
            raise ValueError(f"{frames} frames do not split into chunks of chunk_frames={size}")
        chunks = frames // size
        features = self.features(rearrange(video, "b (c t) ch h w -> (b c) t ch h w", c=chunks))
        pooled = F.adaptive_avg_pool3d(rearrange(features, "b t h w d -> b d t h w"), self.pooled_grid)
        tokens = rearrange(pooled, "(b c) d t h w -> b (c t h w) d", c=chunks)
        t, h, w = self.pooled_grid
        ids = torch.arange(tokens.shape[1], device=tokens.device).view(1, chunks * t, h, w).expand(batch, -1, -1, -1)
        valid = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return TrajectoryTokens(tokens=tokens, valid=valid, logits=None, labels=ids, grid=(chunks * t, h, w),
                                chunks=chunks)
