"""Run-length tokenization (RLT, Choudhury et al., NeurIPS 2024): the closest content-adaptive peer.

A tubelet that repeats the one at the same place in the previous time step (compared on single frames, as
RLT's code does) is dropped before the model sees it; each kept tubelet carries the length of the run it starts, through a learned run-length embedding. The
count adapts to motion (not to objects): a static clip costs one step of tubelets, a changing one all of them.
"""

from __future__ import annotations

import torch
from einops import rearrange
from jsonargparse.typing import NonNegativeFloat, PositiveInt
from torch import nn

from trajtok.tokenizer.peers.tubelets import TUBELETS, TubeletTokenizer, pad_frames
from trajtok.tokenizer.registry import register_tokenizer
from trajtok.tokens import TrajectoryTokens


def changed_tubelets(frames: torch.Tensor, tubelet_frames: int, threshold: float) -> torch.Tensor:
    """``(B, t, h, w)`` bool: tubelet step t differs from step t-1 at the same place; step 0 always counts.

    ``frames (B, T, h, w, P)`` are each frame's patch pixels (normalised), T a multiple of ``tubelet_frames``.
    As RLT's code does, two single frames are compared, not the tubelets frame by frame: the last frame of step
    t against the first frame of step t-1, by their mean absolute difference. The two frames are
    ``2 * tubelet_frames - 1`` apart, so a slow drift that stays under the threshold between neighbouring
    frames still counts once it has built up over the window.
    """
    first, last = frames[:, ::tubelet_frames], frames[:, tubelet_frames - 1 :: tubelet_frames]
    difference = (last[:, 1:] - first[:, :-1]).abs().mean(dim=-1)
    step0 = torch.ones(difference.shape[0], 1, *difference.shape[2:], dtype=torch.bool, device=frames.device)
    return torch.cat([step0, difference > threshold], dim=1)


def run_starts(keep: torch.Tensor) -> torch.Tensor:
    """``(B, t, h, w)`` the time step of the kept tubelet whose run covers each tubelet (the last kept one at
    or before it, at the same place)."""
    steps = torch.arange(keep.shape[1], device=keep.device).view(1, -1, 1, 1)
    return torch.where(keep, steps, -1).cummax(dim=1).values


def run_lengths(starts: torch.Tensor) -> torch.Tensor:
    """``(B, t, h, w)`` for each kept tubelet, how many steps its run lasts (itself included); 0 elsewhere."""
    return torch.zeros_like(starts).scatter_add_(1, starts, torch.ones_like(starts))


def compact(tokens: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Move the kept ones of ``tokens (B, N, D)`` to the front in their order and cut to the longest clip's count.

    Returns ``(tokens (B, S, D), valid (B, S), index (B, N))``: ``index`` is each kept token's position in the
    output (-1 for dropped ones). The cut is what makes dropping tubelets cheaper, not just masked.
    """
    order = (~keep).to(torch.uint8).argsort(dim=1, stable=True)
    length = int(keep.sum(dim=1).max())
    order = order[:, :length]
    index = torch.where(keep, keep.long().cumsum(dim=1) - 1, -1)
    compacted = tokens.gather(1, order[..., None].expand(-1, -1, tokens.shape[-1]))
    return compacted, keep.gather(1, order), index


@register_tokenizer("rlt", sizes=TUBELETS)
class RLT(TubeletTokenizer):
    """The run-length peer: tubelet tokens (as ``ViT3D``) minus those that repeat the previous step.

    ``labels`` map every tubelet to the token of its run. The output is cut to the batch's longest kept count;
    shorter clips are padded with invalid tokens.

    Args:
        dim, patch_size, tubelet_frames, image_size, max_frames: the tubelets (see ``TubeletEmbedding``).
        threshold: mean absolute difference of the normalised pixels under which a tubelet counts as a repeat
            (RLT's tau = 0.1; ImageNet-normalised pixels have a spread of about 4 per unit of raw intensity).
    """

    def __init__(self, dim: PositiveInt = 768, threshold: NonNegativeFloat = 0.1, patch_size: PositiveInt = 16, tubelet_frames: PositiveInt = 2,
                 image_size: PositiveInt = 224, max_frames: PositiveInt = 64):
        super().__init__(dim, patch_size, tubelet_frames, image_size, max_frames)
        if threshold < 0:
            raise ValueError(f"threshold={threshold} must be non-negative")
        self.threshold = threshold
        self.run_length = nn.Embedding(self.embed.pos_time.shape[0] + 1, dim)
        nn.init.trunc_normal_(self.run_length.weight, std=0.02)

    def forward(self, video: torch.Tensor) -> TrajectoryTokens:
        embedded = self.embed(video)
        batch, grid = embedded.shape[0], tuple(embedded.shape[1:4])
        p, frames = self.embed.patch_size, self.embed.tubelet_frames
        pixels = rearrange(pad_frames(video, frames), "b t c (h ph) (w pw) -> b t h w (c ph pw)", ph=p, pw=p)
        keep = changed_tubelets(pixels, frames, self.threshold)
        starts = run_starts(keep)
        tokens, valid, index = compact((embedded + self.run_length(run_lengths(starts))).flatten(1, 3),
                                       keep.flatten(1))
        # Each tubelet's run-start as a flat grid index, then that tubelet's output position.
        t_stride = grid[1] * grid[2]
        place = torch.arange(t_stride, device=video.device).view(1, 1, grid[1], grid[2])
        labels = index.gather(1, (starts * t_stride + place).flatten(1)).view(batch, *grid)
        return TrajectoryTokens(tokens, valid, None, labels, grid)
