"""The trajectory encoder: one token (or n sub-tokens) per trajectory from the patches it owns."""

from __future__ import annotations

from functools import partial
from typing import Literal

import torch
from torch import nn

from trajtok.tokenizer.attention import (
    PerceiverLayer,
    SegmentLayout,
    dense_masked_attention,
    segment_attention,
)
from trajtok.tokenizer.fourier import fourier_subtoken_latents
from trajtok.tokenizer.position import AxialRotary, FourierPosition

AttentionForm = Literal["auto", "segment", "dense"]


def soft_mean(logits: torch.Tensor, patches: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``(B, K, D)`` soft-assignment-weighted mean of the patch features per slot.

    This is the path that carries a downstream loss into the assignment logits: the hard labels that the
    masked attention uses have no gradient.
    """
    weights = logits.softmax(dim=-1)
    weights = weights / (weights.sum(dim=1, keepdim=True) + eps)
    return torch.einsum("bnk,bnd->bkd", weights, patches)


def pick_attention_form(form: AttentionForm, device: torch.device, num_latents: int, num_patches: int) -> str:
    """Choose the masked-attention implementation for this call.

    The segment form does ~K times fewer FLOPs; the dense form is one fused SDPA call. Measured with
    ``benchmarks/tokenizer_speed.py`` on CPU, the segment form wins at every size we ship; on CUDA a fused
    masked SDPA stays competitive while the dense score matrix is small.
    """
    if form != "auto":
        return form
    if device.type == "cuda" and num_latents * num_patches <= 2**20:
        return "dense"
    return "segment"


class TrajectoryEncoder(nn.Module):
    """Trajectory latents refined by a Perceiver that may only see their own trajectory's patches.

    Args:
        dim: token width.
        num_slots: K.
        max_subtokens: n at most (the learned latents have this many per slot).
        depth, heads, head_dim: the Perceiver.
        soft_mean_init: start each latent from the learned latent plus the soft-mean of its patches.
        position_features: add joint space-time Fourier position features to the patches it reads, so a
            token knows where its trajectory is and how it moves (the released code relies on rotary
            weighting alone; motion-dependent captions need more).
        attention: ``segment`` (gather/scatter, O(N)), ``dense`` (masked SDPA, O(K N)) or ``auto``.
    """

    def __init__(
        self,
        dim: int = 128,
        num_slots: int = 32,
        max_subtokens: int = 1,
        depth: int = 2,
        heads: int = 4,
        head_dim: int = 32,
        soft_mean_init: bool = True,
        position_features: bool = True,
        attention: AttentionForm = "auto",
    ):
        super().__init__()
        self.num_slots = num_slots
        self.soft_mean_init = soft_mean_init
        self.attention = attention
        self.latents = nn.Parameter(fourier_subtoken_latents(num_slots, max_subtokens, dim))
        self.rotary = AxialRotary(head_dim)
        self.position = FourierPosition(dim) if position_features else None
        self.layers = nn.ModuleList(PerceiverLayer(dim, heads, head_dim) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, patches, logits, labels, grid: tuple[int, int, int], num_subtokens: int) -> torch.Tensor:
        """``patches (B, N, D)``, ``logits (B, N, K)``, ``labels (B, N)`` -> tokens ``(B, K*n, D)``."""
        batch = patches.shape[0]
        if num_subtokens > self.latents.shape[1]:
            raise ValueError(f"num_subtokens={num_subtokens} > max_subtokens={self.latents.shape[1]}")
        if self.position is not None:
            patches = patches + self.position(grid, patches.device)
        latents = self.latents[:, :num_subtokens].expand(batch, -1, -1, -1)
        if self.soft_mean_init:
            latents = latents + soft_mean(logits, patches)[:, :, None]
        latents = latents.flatten(1, 2)

        form = pick_attention_form(self.attention, patches.device, latents.shape[1], patches.shape[1])
        if form == "segment":
            # The segment layout (grouping of patches by trajectory) is built once and shared by all layers.
            layout = SegmentLayout(labels, self.num_slots, num_subtokens, self.layers[0].heads)
            attend = partial(segment_attention, labels=labels, num_subtokens=num_subtokens, layout=layout)
        else:
            attend = partial(dense_masked_attention, labels=labels, num_subtokens=num_subtokens)
        angles = self.rotary.angles(grid, patches.device)
        for layer in self.layers:
            latents = layer(latents, patches, attend, lambda k: self.rotary(k, angles))
        return self.proj(self.norm(latents))
