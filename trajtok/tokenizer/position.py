"""Space-time position for the Perceivers: rotary embeddings (axial or 1D sequence) and random Fourier features."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import nn


def grid_coordinates(grid: tuple[int, int, int], device: torch.device | None = None) -> torch.Tensor:
    """``(T*h*w, 3)`` integer (t, y, x) coordinates of a feature grid, t-major then row-major."""
    t, h, w = grid
    axes = [torch.arange(n, device=device) for n in (t, h, w)]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)


RotaryForm = Literal["axial", "sequence", "none"]
Rotate = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def rotation_phases(angles: torch.Tensor, head_dim: int) -> torch.Tensor:
    """``(N, 1, head_dim / 2)`` complex unit phases of ``angles (N, r)``: channel pair i of position n turns by
    ``angles[n, i]``; the pairs past r by 0 (left alone). Computed once per forward, shared by every layer."""
    angles = torch.nn.functional.pad(angles.float(), (0, head_dim // 2 - angles.shape[-1]))
    return torch.polar(torch.ones_like(angles), angles)[:, None]


def rotate_pairs(x: torch.Tensor, phases: torch.Tensor) -> torch.Tensor:
    """Rotate ``x (..., N, heads, head_dim)`` by ``phases`` (``rotation_phases``): channel pairs (2i, 2i+1) as
    complex numbers times their phase, one kernel instead of the slicing, stacking and concatenation of the
    real form (the tokenizer's time: ``python -m benchmarks.tokenizer_speed --parts B``). Low-precision inputs are
    rotated in float32 (no complex bfloat16)."""
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    rotated = torch.view_as_complex(work.unflatten(-1, (-1, 2))) * phases
    return torch.view_as_real(rotated).flatten(-2).to(x.dtype)


class AxialRotary(nn.Module):
    """Rotary position over (t, y, x): each axis rotates its own slice of the head dimension.

    Only patch keys are rotated, queries (latents) are not: the score q . R(p) k then depends on the absolute
    space-time position of the patch, which lets each latent specialise to a region of the clip while the
    content term still decides most of the attention. (The released code's optional ``rope_3d`` Perceiver
    does the same.)
    """

    def __init__(self, head_dim: int, base: float = 100.0):
        super().__init__()
        self.head_dim = head_dim
        self.axis_dim = 2 * (head_dim // 6)  # even, three of them fit in head_dim
        if self.axis_dim == 0:
            raise ValueError(f"head_dim={head_dim} is too small for 3-axis rotary (needs >= 6)")
        inv_freq = base ** (-torch.arange(0, self.axis_dim, 2, dtype=torch.float32) / self.axis_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def angles(self, grid: tuple[int, int, int], device: torch.device) -> torch.Tensor:
        """``(N, 3 * axis_dim / 2)`` rotation angles of the grid's patches."""
        coords = grid_coordinates(grid, device).float()
        return (coords[:, :, None] * self.inv_freq).flatten(1)

    def for_grid(self, grid: tuple[int, int, int], num_latents: int, device: torch.device) -> Rotate:
        """The ``(q, k_latents, k_patches)`` rotation of one forward on ``grid``: patch keys only."""
        phases = rotation_phases(self.angles(grid, device), self.head_dim)
        return lambda q, k_lat, k_ctx: (q, k_lat, rotate_pairs(k_ctx, phases))


class SequenceRotary(nn.Module):
    """1D rotary over the flattened ``[latents; patches]`` sequence, on queries and keys.

    The released Perceiver resampler's position (lucidrains ``RotaryEmbedding`` over half the head dimension,
    base 10000): latent i sits at index i and patch p (t-major, row-major) at ``L + p``, so the score of latent
    i for patch p depends on ``L + p - i``: each query sees the clip through its own phase pattern.
    """

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        self.head_dim = head_dim
        rotary_dim = 2 * (head_dim // 4)  # half the head dimension, even
        if rotary_dim == 0:
            raise ValueError(f"head_dim={head_dim} is too small for rotary (needs >= 4)")
        inv_freq = base ** (-torch.arange(0, rotary_dim, 2, dtype=torch.float32) / rotary_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def for_grid(self, grid: tuple[int, int, int], num_latents: int, device: torch.device) -> Rotate:
        """The ``(q, k_latents, k_patches)`` rotation of one forward: each by its sequence index."""
        num_patches = grid[0] * grid[1] * grid[2]
        index = torch.arange(num_latents + num_patches, device=device, dtype=torch.float32)
        phases = rotation_phases(index[:, None] * self.inv_freq, self.head_dim)
        latent_phases, patch_phases = phases[:num_latents], phases[num_latents:]
        return lambda q, k_lat, k_ctx: (
            rotate_pairs(q, latent_phases), rotate_pairs(k_lat, latent_phases), rotate_pairs(k_ctx, patch_phases)
        )


def create_rotary(form: RotaryForm, head_dim: int) -> AxialRotary | SequenceRotary | None:
    """The Perceivers' rotary position: ``axial`` (3-axis, patch keys), ``sequence`` (1D, queries and keys) or
    ``none`` (no rotation: position only from what the patch features carry)."""
    if form == "axial":
        return AxialRotary(head_dim)
    if form == "sequence":
        return SequenceRotary(head_dim)
    if form == "none":
        return None
    raise ValueError(f"rotary={form!r} must be 'axial', 'sequence' or 'none'")


class FourierPosition(nn.Module):
    """Joint space-time position features: random Fourier features of normalised (t, y, x), then linear.

    Joint (not per-axis) frequencies matter: a soft average of per-axis codes over a trajectory keeps its mean
    position but forgets which position came at which time, i.e. the direction of motion.
    """

    def __init__(self, dim: int, num_features: int = 64, sigma: float = 2.0, seed: int = 2):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("frequencies", sigma * torch.randn(3, num_features, generator=generator))
        self.proj = nn.Linear(2 * num_features, dim)

    def forward(self, grid: tuple[int, int, int], device: torch.device) -> torch.Tensor:
        """``(N, dim)`` position embedding of each patch of ``grid``."""
        sizes = torch.tensor(grid, device=device, dtype=torch.float32)
        coords = (grid_coordinates(grid, device).float() + 0.5) / sizes  # in (0, 1)
        angles = 2 * math.pi * coords @ self.frequencies
        return self.proj(torch.cat([angles.sin(), angles.cos()], dim=-1))
