"""ToMe token merging (Bolya et al., ICLR 2023) over tubelet tokens: the token-merging peer.

Pure functions for bipartite soft matching and size-weighted merging, then a transformer block that merges r
tokens after its attention, and the tokenizer that runs the first blocks of the video transformer this way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from jsonargparse.typing import NonNegativeInt, PositiveFloat, PositiveInt
from torch import nn

from trajtok.tokenizer.peers.tubelets import TUBELETS, TubeletTokenizer
from trajtok.tokenizer.registry import register_tokenizer
from trajtok.tokens import TrajectoryTokens


@dataclass
class Matching:
    """Which tokens of the alternate set A (even positions) merge into which of B (odd positions).

    Attributes:
        unmerged: ``(B, Na - r)`` indices into A of the tokens that stay, in order of decreasing similarity.
        merged: ``(B, r)`` indices into A of the tokens merged away.
        destination: ``(B, r)`` index into B each merged token joins.
    """

    unmerged: torch.Tensor
    merged: torch.Tensor
    destination: torch.Tensor


def bipartite_soft_matching(metric: torch.Tensor, r: int) -> Matching:
    """Split tokens ``metric (B, N, C)`` alternately into A and B, connect each A token to its most similar B
    token (cosine), and keep the r strongest edges: those A tokens merge into their B partners.

    One matmul and a sort, no iteration: what makes ToMe cheap enough to run in every block. ``r`` is at most
    the size of A (N/2 rounded up).
    """
    if not 0 <= r <= (metric.shape[1] + 1) // 2:
        raise ValueError(f"r={r} must be between 0 and half of the {metric.shape[1]} tokens")
    metric = F.normalize(metric, dim=-1)
    scores = metric[:, ::2] @ metric[:, 1::2].transpose(1, 2)
    best, partner = scores.max(dim=-1)
    order = best.argsort(dim=-1, descending=True)
    return Matching(order[:, r:], order[:, :r], partner.gather(1, order[:, :r]))


def merge(x: torch.Tensor, matching: Matching) -> torch.Tensor:
    """Sum-merge ``x (B, N, C)`` by ``matching``: ``(B, N - r, C)``, the unmerged A tokens then all of B (each B
    token plus the A tokens merged into it)."""
    a, b = x[:, ::2], x[:, 1::2]
    channels = x.shape[-1]
    kept = a.gather(1, matching.unmerged[..., None].expand(-1, -1, channels))
    moved = a.gather(1, matching.merged[..., None].expand(-1, -1, channels))
    b = b.scatter_add(1, matching.destination[..., None].expand(-1, -1, channels), moved)
    return torch.cat([kept, b], dim=1)


def merge_weighted(x: torch.Tensor, size: torch.Tensor, matching: Matching) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge ``x (B, N, C)`` whose tokens stand for ``size (B, N, 1)`` patches each: a merged token is the
    size-weighted mean of its parts, its size their sum; so a token always equals the mean of its patches."""
    merged = merge(torch.cat([x * size, size], dim=-1), matching)
    size = merged[..., -1:]
    return merged[..., :-1] / size, size


def merged_positions(matching: Matching, num_tokens: int) -> torch.Tensor:
    """``(B, N)`` the index after ``merge`` of each of the N tokens before it: composes into the map from every
    input tubelet to the token that holds it (ToMe's source tracking, as ids rather than a dense matrix)."""
    kept, num_b = matching.unmerged.shape[1], num_tokens // 2
    batch, device = matching.merged.shape[0], matching.merged.device
    position_a = torch.empty(batch, (num_tokens + 1) // 2, dtype=torch.long, device=device)
    position_a.scatter_(1, matching.unmerged, torch.arange(kept, device=device).expand(batch, -1))
    position_a.scatter_(1, matching.merged, kept + matching.destination)
    position_b = (kept + torch.arange(num_b, device=device)).expand(batch, -1)
    positions = torch.empty(batch, num_tokens, dtype=torch.long, device=device)
    positions[:, ::2], positions[:, 1::2] = position_a, position_b
    return positions


class MergingBlock(nn.Module):
    """A pre-norm transformer block with ToMe: proportional attention (keys weighted by how many patches they
    stand for, through a ``log size`` bias), then r tokens merged by the similarity of their attention keys,
    then the MLP on the fewer tokens."""

    def __init__(self, dim: PositiveInt, heads: PositiveInt, mlp_ratio: PositiveFloat = 4.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} must be divisible by heads={heads}")
        self.heads = heads
        self.norm_attn = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm_mlp = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, size: torch.Tensor, r: int,
                proportional: bool = True) -> tuple[torch.Tensor, torch.Tensor, Matching]:
        """``proportional=False``: plain attention (the merging still averages by size)."""
        q, k, v = self.qkv(self.norm_attn(x)).unflatten(-1, (3, self.heads, -1)).permute(2, 0, 3, 1, 4)
        bias = size.log().transpose(1, 2)[:, None].to(q.dtype) if proportional else None  # (B, 1, 1, N)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        x = x + self.proj(attended.transpose(1, 2).flatten(2))
        matching = bipartite_soft_matching(k.mean(dim=1), r)
        x, size = merge_weighted(x, size, matching)
        return x + self.mlp(self.norm_mlp(x)), size, matching


#: ToMe's merging blocks at each scale: the first half of the video transformer (``large``: ViT-L's), merging the
#: tubelets to a quarter by their end, whatever the clip's length (r is capped at half the tokens per block, so
#: tiny at 8 frames ends at 80 of 256).
MERGING = {
    "tiny": {"depth": 2, "heads": 4, "keep": 0.25},
    "small": {"depth": 2, "heads": 6, "keep": 0.25},
    "base": {"depth": 6, "heads": 12, "keep": 0.25},
    "large": {"depth": 12, "heads": 16, "keep": 0.25},
}


@register_tokenizer("tome", sizes={scale: {**TUBELETS[scale], **MERGING[scale]} for scale in TUBELETS})
class ToMe(TubeletTokenizer):
    """The token-merging peer: tubelet tokens through the first ``depth`` blocks of the video transformer, each
    merging ``r`` tokens (bipartite soft matching, proportional attention); the head's transformer is the rest.

    So ToMe with a head of depth d_head is a ``depth + d_head`` block ViT3D that merges in its first ``depth``
    blocks. The count drops by exactly r per block (r is capped at half the tokens, as ToMe does, so images
    and short clips still run); every output token is valid, and ``labels`` map each tubelet to the token that
    absorbed it. Each token's size goes out as ``TrajectoryTokens.sizes``, so proportional attention continues
    through the head's blocks, as in a ToMe ViT whose later blocks no longer merge; with
    ``proportional_attention="merging"`` only the merging blocks weight attention by size (sizes not emitted: the
    head attends plainly), and with ``False`` no block does (ToMe's merging alone).

    Args:
        dim, heads, mlp_ratio: width of the merging blocks (the video transformer's, so no projection is needed).
        depth: merging blocks.
        r: tokens merged per block.
        keep: instead of a fixed ``r``, the fraction of the clip's tubelets left after the merging blocks: r is
            set per clip to ``ceil((1 - keep) * tubelets / depth)``, so every clip length merges alike.
        patch_size, tubelet_frames, image_size, max_frames: the tubelets (see ``TubeletEmbedding``).
        proportional_attention: where attention logits of a key get ``log(size)``: ``True``, in the merging blocks
            and the head's; ``"merging"``, in the merging blocks only; ``False``, nowhere.
    """

    def __init__(self, dim: PositiveInt = 768, depth: NonNegativeInt = 6, heads: PositiveInt = 12, r: NonNegativeInt = 96,
                 keep: float | None = None, mlp_ratio: PositiveFloat = 4.0, patch_size: PositiveInt = 16,
                 tubelet_frames: PositiveInt = 2, image_size: PositiveInt = 224, max_frames: PositiveInt = 64,
                 proportional_attention: bool | Literal["merging"] = True):
        super().__init__(dim, patch_size, tubelet_frames, image_size, max_frames)
        if depth < 1 or r < 0:
            raise ValueError(f"depth={depth} must be positive and r={r} non-negative")
        if keep is not None and not 0 < keep <= 1:
            raise ValueError(f"keep={keep} must lie in (0, 1]")
        if proportional_attention not in (True, False, "merging"):
            raise ValueError(f"proportional_attention must be true, false or 'merging', got {proportional_attention!r}")
        self.r, self.keep, self.proportional_attention = r, keep, proportional_attention
        self.blocks = nn.ModuleList(MergingBlock(dim, heads, mlp_ratio) for _ in range(depth))

    @property
    def video_transformer_depth(self) -> int:
        """The video transformer's blocks this tokenizer runs itself: the head's transformer is the rest."""
        return len(self.blocks)

    def merges_per_block(self, tubelets: int) -> int:
        """r that brings ``tubelets`` to ``keep`` of them over the merging blocks."""
        return math.ceil((1 - self.keep) * tubelets / len(self.blocks))

    def forward(self, video: torch.Tensor) -> TrajectoryTokens:
        embedded = self.embed(video)
        batch, grid = embedded.shape[0], tuple(embedded.shape[1:4])
        x = embedded.flatten(1, 3)
        size = x.new_ones(*x.shape[:2], 1)
        owner = torch.arange(x.shape[1], device=x.device).expand(batch, -1)
        r = self.r if self.keep is None else self.merges_per_block(x.shape[1])
        for block in self.blocks:
            num_tokens = x.shape[1]
            x, size, matching = block(x, size, min(r, num_tokens // 2), self.proportional_attention is not False)
            owner = merged_positions(matching, num_tokens).gather(1, owner)
        valid = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        sizes = size.squeeze(-1) if self.proportional_attention is True else None
        return TrajectoryTokens(x, valid, None, owner.view(batch, *grid), grid, sizes=sizes)
