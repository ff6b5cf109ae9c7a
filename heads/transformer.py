"""A small pre-norm transformer over a set of tokens, with key padding and size-weighted (proportional)
attention, through SDPA."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jsonargparse.typing import (
    ClosedUnitInterval,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
)
from torch import nn


def key_bias(keep: torch.Tensor | None, sizes: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """The SDPA ``attn_mask`` for keys ``keep (B, L)`` (bool) of ``sizes (B, L)``: ``log(size)`` added to every
    query's logit of a key (ToMe's proportional attention: a token merged from s inputs draws the attention its
    s parts drew together), ``-inf`` for keys not kept. ``None`` when both are."""
    if sizes is None:
        return None if keep is None else keep[:, None, None, :]
    bias = sizes.log().to(dtype)
    if keep is not None:
        bias = bias.masked_fill(~keep, float("-inf"))
    return bias[:, None, None, :]


class Block(nn.Module):
    """Pre-norm self-attention and MLP, each residual."""

    def __init__(self, width: PositiveInt, heads: PositiveInt, mlp_ratio: PositiveFloat = 4.0, dropout: ClosedUnitInterval = 0.0,
                 norm_eps: PositiveFloat = 1e-5):
        super().__init__()
        if width % heads:
            raise ValueError(f"width={width} must be divisible by heads={heads}")
        self.heads, self.dropout = heads, dropout
        self.norm_attn = nn.LayerNorm(width, eps=norm_eps)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm_mlp = nn.LayerNorm(width, eps=norm_eps)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None, sizes: torch.Tensor | None = None) -> torch.Tensor:
        """``x (B, L, W)``; ``keep (B, L)`` bool marks the keys that may be attended to; ``sizes (B, L)`` how
        many inputs each token stands for (see ``key_bias``)."""
        q, k, v = self.qkv(self.norm_attn(x)).unflatten(-1, (3, self.heads, -1)).permute(2, 0, 3, 1, 4)
        mask = key_bias(keep, sizes, q.dtype)
        drop = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        x = x + F.dropout(self.proj(out.transpose(1, 2).flatten(2)), drop, self.training)
        return x + self.mlp(self.norm_mlp(x))


class Transformer(nn.Module):
    """A stack of ``Block`` with a final LayerNorm; ``norm_eps`` is the blocks' norms' epsilon (transformers' ViT
    uses 1e-12), the final norm's stays 1e-5."""

    def __init__(self, width: PositiveInt, depth: NonNegativeInt, heads: PositiveInt, mlp_ratio: PositiveFloat = 4.0,
                 dropout: ClosedUnitInterval = 0.0, norm_eps: PositiveFloat = 1e-5):
        super().__init__()
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio, dropout, norm_eps) for _ in range(depth))
        self.norm = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None, sizes: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, keep, sizes)
        return self.norm(x)
