"""Perceiver cross-attention for the tokenizer, and the two forms of trajectory-masked attention.

Every attention here reads keys/values from ``[latents; patches]`` (Flamingo-style: latents also see each
other). Tensors use the layout ``(B, length, heads, head_dim)``.

The trajectory encoder's latents of trajectory k may only see the patches whose hard label is k, plus the
sub-tokens of k. Because each patch has exactly one label, that attention is a softmax over *segments* of the
patches: ``segment_attention`` computes it with gathers and scatter-sums in O(N * n * D) instead of the
O(K * n * N * D) of a dense masked attention (``dense_masked_attention``, kept as the test oracle and as the
faster path where a fused SDPA kernel wins).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

Attend = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def full_attention(q, k_lat, v_lat, k_ctx, v_ctx) -> torch.Tensor:
    """Unmasked attention of latents ``q (B, L, H, d)`` over ``[latents; patches]``."""
    k = torch.cat([k_lat, k_ctx], dim=1).transpose(1, 2)
    v = torch.cat([v_lat, v_ctx], dim=1).transpose(1, 2)
    return F.scaled_dot_product_attention(q.transpose(1, 2), k, v).transpose(1, 2)


def trajectory_mask(labels: torch.Tensor, num_slots: int, num_subtokens: int) -> torch.Tensor:
    """``(B, K*n, K*n + N)`` bool: latent of trajectory k sees its own sub-tokens and the patches labelled k."""
    owner = torch.arange(num_slots, device=labels.device).repeat_interleave(num_subtokens)
    to_latents = (owner[:, None] == owner[None, :]).expand(labels.shape[0], -1, -1)
    to_patches = owner[None, :, None] == labels[:, None, :]
    return torch.cat([to_latents, to_patches], dim=-1)


def dense_masked_attention(q, k_lat, v_lat, k_ctx, v_ctx, labels: torch.Tensor, num_subtokens: int):
    """Trajectory-masked attention as one dense SDPA call with a boolean mask (the oracle).

    ``q, k_lat, v_lat``: ``(B, K*n, H, d)``; ``k_ctx, v_ctx``: ``(B, N, H, d)``; ``labels``: ``(B, N)``.
    """
    num_slots = q.shape[1] // num_subtokens
    mask = trajectory_mask(labels, num_slots, num_subtokens)[:, None]
    k = torch.cat([k_lat, k_ctx], dim=1).transpose(1, 2)
    v = torch.cat([v_lat, v_ctx], dim=1).transpose(1, 2)
    return F.scaled_dot_product_attention(q.transpose(1, 2), k, v, attn_mask=mask).transpose(1, 2)


def segment_attention(q, k_lat, v_lat, k_ctx, v_ctx, labels: torch.Tensor, num_subtokens: int):
    """The same result as ``dense_masked_attention``, computed per segment of patches.

    Each patch scores only against the n queries of its own trajectory (a gather), and the softmax
    normaliser and weighted value sums are scatter-adds into the K segments. The running max used for
    numerical stability is detached: it cancels exactly in the softmax, so gradients are unchanged.
    """
    batch, num_latents, heads, head_dim = q.shape
    n = num_subtokens
    num_slots = num_latents // n
    num_patches = labels.shape[1]
    scale = head_dim**-0.5

    q = q.reshape(batch * num_slots, n, heads, head_dim)
    k_lat = k_lat.reshape(batch * num_slots, n, heads, head_dim)
    v_lat = v_lat.reshape(batch * num_slots, n, heads, head_dim)
    # Global segment id of each patch: its trajectory, offset by its clip in the batch.
    segment = (labels + num_slots * torch.arange(batch, device=labels.device)[:, None]).reshape(-1)
    k_ctx = k_ctx.reshape(batch * num_patches, 1, heads, head_dim)
    v_ctx = v_ctx.reshape(batch * num_patches, 1, heads, head_dim)

    scores_patch = (q[segment] * k_ctx).sum(-1) * scale  # (B*N, n, H)
    scores_latent = torch.einsum("sihd,sjhd->sijh", q, k_lat) * scale  # (B*K, n, n, H)

    with torch.no_grad():
        peak = scores_latent.amax(dim=2)
        index = segment[:, None, None].expand_as(scores_patch)
        peak = peak.scatter_reduce(0, index, scores_patch, reduce="amax", include_self=True)

    weight_patch = (scores_patch - peak[segment]).exp()
    weight_latent = (scores_latent - peak[:, :, None]).exp()
    denominator = weight_latent.sum(2).index_add(0, segment, weight_patch)
    numerator = torch.einsum("sijh,sjhd->sihd", weight_latent, v_lat)
    numerator = numerator.index_add(0, segment, weight_patch[..., None] * v_ctx)
    out = numerator / denominator[..., None]
    return out.reshape(batch, num_latents, heads, head_dim)


class FeedForward(nn.Module):
    """Pre-norm gated-SiLU MLP."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        hidden = dim * mult
        self.norm = nn.LayerNorm(dim)
        self.gate_value = nn.Linear(dim, 2 * hidden, bias=False)
        self.out = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.gate_value(self.norm(x)).chunk(2, dim=-1)
        return self.out(F.silu(gate) * value)


class PerceiverLayer(nn.Module):
    """Latents cross-attend to ``[latents; patches]`` (what they see is up to ``attend``), then an MLP."""

    def __init__(self, dim: int, heads: int, head_dim: int, ff_mult: int = 4):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        inner = heads * head_dim
        self.norm_latents = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)
        self.ff = FeedForward(dim, ff_mult)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.heads, self.head_dim))

    def forward(self, latents, context, attend: Attend, rotate_keys: Callable | None = None):
        """``latents (B, L, D)``, ``context (B, N, D)`` -> updated latents ``(B, L, D)``."""
        x = self.norm_latents(latents)
        q = self._split(self.to_q(x))
        k_lat, v_lat = map(self._split, self.to_kv(x).chunk(2, dim=-1))
        k_ctx, v_ctx = map(self._split, self.to_kv(self.norm_context(context)).chunk(2, dim=-1))
        if rotate_keys is not None:
            k_ctx = rotate_keys(k_ctx)
        out = attend(q, k_lat, v_lat, k_ctx, v_ctx).flatten(-2)
        latents = latents + self.to_out(out)
        return latents + self.ff(latents)
