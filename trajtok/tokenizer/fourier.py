"""Deterministic Fourier initialisations for learned latents.

Random Gaussian latents start nearly identical in direction, so slots compete weakly and sub-tokens of one
trajectory stay redundant (the paper's ablation: with random init extra sub-tokens bring no gain). A Fourier
code over a grid (slots) or a ring (sub-tokens) spreads them apart from step one.
"""

from __future__ import annotations

import math

import torch


def _orthonormal(rows: int, cols: int, generator: torch.Generator) -> torch.Tensor:
    """A ``(rows, cols)`` matrix with orthonormal rows (or columns, whichever is fewer)."""
    tall = torch.randn(max(rows, cols), min(rows, cols), generator=generator, dtype=torch.float64)
    q, _ = torch.linalg.qr(tall)
    return q if rows >= cols else q.T


def grid_codes(num_points: int) -> torch.Tensor:
    """``(num_points, 4F)`` sin/cos features of points on a 2D grid in [0, 1)^2, F = floor(sqrt(n) / 2)."""
    side = math.ceil(math.sqrt(num_points))
    freqs = torch.arange(1, max(1, int(math.sqrt(num_points) // 2)) + 1, dtype=torch.float64)
    idx = torch.arange(num_points, dtype=torch.float64)
    xy = torch.stack([idx % side, torch.div(idx, side, rounding_mode="floor")], dim=-1) / side
    angles = 2 * math.pi * xy[:, :, None] * freqs  # (n, 2, F)
    return torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(1)


def ring_codes(num_points: int, num_freqs: int = 2) -> torch.Tensor:
    """``(num_points, 2F)`` sin/cos features of points evenly spaced on a circle."""
    theta = 2 * math.pi * torch.arange(num_points, dtype=torch.float64) / num_points
    freqs = torch.arange(1, num_freqs + 1, dtype=torch.float64)
    angles = theta[:, None] * freqs
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def embed_codes(codes: torch.Tensor, dim: int, seed: int, scale: float = 0.02) -> torch.Tensor:
    """Map codes to ``dim`` by a fixed random orthonormal map, with tiny jitter so no two are equal."""
    generator = torch.Generator().manual_seed(seed)
    codes = torch.nn.functional.normalize(codes, dim=-1)
    out = codes @ _orthonormal(codes.shape[-1], dim, generator)
    out = out + 1e-3 * torch.randn(out.shape, generator=generator, dtype=torch.float64)
    return (scale * out).float()


def fourier_slot_latents(num_slots: int, dim: int, seed: int = 0) -> torch.Tensor:
    """``(num_slots, dim)`` initial query latents: a Fourier grid code per slot."""
    return embed_codes(grid_codes(num_slots), dim, seed)


def fourier_subtoken_latents(num_slots: int, num_subtokens: int, dim: int, seed: int = 1) -> torch.Tensor:
    """``(num_slots, num_subtokens, dim)``: a slot's grid code joined with its sub-token's ring code."""
    slot = grid_codes(num_slots)[:, None, :].expand(-1, num_subtokens, -1)
    ring = ring_codes(num_subtokens)[None].expand(num_slots, -1, -1)
    return embed_codes(torch.cat([slot, ring], dim=-1), dim, seed)
