"""Space-time patch tubelets: the input the patch-based peers share (their embedding, sizes and label maps)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from jsonargparse.typing import PositiveInt
from torch import nn

#: The tubelets of the patch-based peers at each scale: the paper's 2 x 16 x 16 at 224 px, scaled to 8 px patches
#: at 64 px so a CPU clip still has a 8 x 8 grid; token width that of the video transformer they feed.
TUBELETS = {
    "tiny": {"dim": 192, "patch_size": 8, "tubelet_frames": 2, "image_size": 64},
    "small": {"dim": 384, "patch_size": 16, "tubelet_frames": 2, "image_size": 112},
    "base": {"dim": 768, "patch_size": 16, "tubelet_frames": 2, "image_size": 224},
    "large": {"dim": 1024, "patch_size": 16, "tubelet_frames": 2, "image_size": 224},
}


def pad_frames(video: torch.Tensor, multiple: int) -> torch.Tensor:
    """``video (B, T, ...)`` with its last frame repeated up to a multiple of ``multiple`` frames: an image
    (T = 1) becomes a static two-frame clip, as ViT3D-style models read images."""
    missing = -video.shape[1] % multiple
    if not missing:
        return video
    return torch.cat([video, video[:, -1:].expand(-1, missing, *video.shape[2:])], dim=1)


def tubelet_ids(batch: int, grid: tuple[int, int, int], device: torch.device) -> torch.Tensor:
    """``(B, t, h, w)`` label map in which every tubelet is its own token (t-major ids)."""
    return torch.arange(math.prod(grid), device=device).view(1, *grid).expand(batch, -1, -1, -1)


class TubeletEmbedding(nn.Module):
    """Non-overlapping ``tubelet_frames x patch_size x patch_size`` tubelets, linearly embedded, plus a learned
    factorised (time + space) position embedding, as in ViViT / VideoMAE.

    The spatial table is sized for ``image_size`` and resized (bicubic) for other frame sizes; the temporal
    table holds ``max_frames / tubelet_frames`` steps, and longer clips are refused with the limit named.

    Args:
        dim: token width.
        patch_size, tubelet_frames: tubelet size in pixels and frames (2 x 16 x 16 in the paper's ViT3D).
        image_size: the frame size the spatial position table is laid out for.
        max_frames: the longest clip (in frames) the temporal position table covers.
    """

    def __init__(self, dim: PositiveInt = 768, patch_size: PositiveInt = 16, tubelet_frames: PositiveInt = 2, image_size: PositiveInt = 224,
                 max_frames: PositiveInt = 64):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size={image_size} is not a multiple of patch_size={patch_size}")
        self.dim, self.patch_size, self.tubelet_frames, self.max_frames = dim, patch_size, tubelet_frames, max_frames
        self.proj = nn.Conv3d(3, dim, kernel_size=(tubelet_frames, patch_size, patch_size),
                              stride=(tubelet_frames, patch_size, patch_size))
        side = image_size // patch_size
        self.pos_time = nn.Parameter(torch.empty(math.ceil(max_frames / tubelet_frames), dim))
        self.pos_space = nn.Parameter(torch.empty(side, side, dim))
        nn.init.trunc_normal_(self.pos_time, std=0.02)
        nn.init.trunc_normal_(self.pos_space, std=0.02)

    def grid(self, video: torch.Tensor) -> tuple[int, int, int]:
        """The tubelet grid ``(t, h, w)`` of ``video (B, T, 3, H, W)``; checks the shape."""
        if video.ndim != 5 or video.shape[2] != 3:
            raise ValueError(f"video must be (B, T, 3, H, W), got {tuple(video.shape)}")
        frames, height, width = video.shape[1], video.shape[3], video.shape[4]
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f"frame size {height}x{width} is not a multiple of patch_size={self.patch_size}")
        if frames > self.max_frames:
            raise ValueError(f"{frames} frames exceed max_frames={self.max_frames} of the position embedding")
        return math.ceil(frames / self.tubelet_frames), height // self.patch_size, width // self.patch_size

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """``video (B, T, 3, H, W) -> (B, t, h, w, D)`` embedded tubelets with position."""
        t, h, w = self.grid(video)
        x = self.proj(pad_frames(video, self.tubelet_frames).transpose(1, 2))
        x = rearrange(x, "b d t h w -> b t h w d")
        space = self.pos_space
        if space.shape[:2] != (h, w):
            space = F.interpolate(space.permute(2, 0, 1)[None], size=(h, w), mode="bicubic", align_corners=False)
            space = space[0].permute(1, 2, 0)
        return x + self.pos_time[:t, None, None].to(x.dtype) + space[None].to(x.dtype)


class TubeletTokenizer(nn.Module):
    """What the tubelet-based peers share: the embedding of ``video (B, T, 3, H, W)`` as tubelets, and its width
    as the tokenizer's ``out_dim``. Arguments as ``TubeletEmbedding``'s."""

    def __init__(self, dim: PositiveInt, patch_size: PositiveInt, tubelet_frames: PositiveInt, image_size: PositiveInt, max_frames: PositiveInt):
        super().__init__()
        self.embed = TubeletEmbedding(dim, patch_size, tubelet_frames, image_size, max_frames)

    @property
    def out_dim(self) -> int:
        return self.embed.dim
