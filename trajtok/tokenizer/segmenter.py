"""The segmenter: implicit space-time clustering of all patches of a clip into K trajectory slots."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from jsonargparse.typing import NonNegativeInt, PositiveFloat, PositiveInt
from torch import nn

from trajtok.tokenizer.attention import (
    PerceiverOptions,
    context_norm,
    full_attention,
    perceiver_layers,
    standardize,
)
from trajtok.tokenizer.fourier import fourier_slot_latents
from trajtok.tokenizer.position import RotaryForm, create_rotary
from trajtok.tokenizer.recompute import (
    RecomputePolicy,
    recompute_in_backward,
    recomputes,
)


def projection_mlp(dim: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, out))


def pool_patches(patches: torch.Tensor, grid: tuple[int, int, int], factor: int, frames: int = 1):
    """Average ``patches (B, T*h*w, D)`` (t-major over ``grid``) over ``frames x factor x factor`` windows.

    Returns the pooled patches ``(B, ceil(T/frames)*ceil(h/f)*ceil(w/f), D)`` and their grid; border windows
    average the patches they hold. What the segmenter's queries read: a query finds its object as well on a
    coarser map, and every per-patch projection of their Perceiver costs ``frames * factor**2`` times less.
    """
    batch, _, dim = patches.shape
    t, h, w = grid
    if frames > 1 and t % frames == 0:
        # Whole windows in time: a strided mean over a view, which copies nothing, where avg_pool3d would first copy
        # the channels-last patches channels-first (measured in the TrajViT2 (lite) rows of python -m benchmarks.speed
        # at T > 8, where tiny_lite pools in time).
        patches = patches.reshape(batch, t // frames, frames, h * w, dim).mean(dim=2).flatten(1, 2)
        t, frames = t // frames, 1
    if factor == 1 and frames == 1:
        return patches, (t, h, w)
    clips = patches.view(batch, t, h, w, dim).permute(0, 4, 1, 2, 3)  # channels-last memory: no copy
    pooled = F.avg_pool3d(clips, (frames, factor, factor), ceil_mode=True, count_include_pad=False)
    return pooled.permute(0, 2, 3, 4, 1).reshape(batch, -1, dim), tuple(pooled.shape[-3:])


class Segmenter(nn.Module):
    """K learned queries read the clip's patches, then every patch picks a query.

    ``logits[b, p, k] = scale * cos(MLP_q(query_k), MLP_p(patch_p))``; the soft assignment is a softmax over
    the K queries of each patch, the hard label map its argmax.

    Args:
        dim: patch-feature and query width.
        num_slots: K, the maximum number of trajectories per clip.
        depth, heads, head_dim: the query Perceiver.
        assign_dim: width of the cosine-similarity space.
        detach_features: the Perceiver reads ``patches.detach()``. Without it, queries and features
            co-adapt and the clustering degrades (the paper's largest ablation drop); off only for ablation.
        init_scale: the logit scale at initialisation. Near 10 the softmax over K is sharp enough for a slot
            to own its patches from the first steps, yet leaves every slot gradient (the released code's 3.8
            keeps a CPU-length run's assignment soft).
        scale_gain: the scale is ``softplus(scale_gain * log_scale) + 1``: an AdamW step moves ``log_scale`` by
            about the learning rate, so the gain is the scale's learning-rate multiplier (1: the released
            code's parametrisation, under which a CPU-length run barely moves the scale).
        max_scale: upper clamp of the learnable logit scale (softmax sharpness).
        rotary: the Perceiver's position, ``axial`` (3-axis rotary on patch keys), ``sequence`` (the
            released code's 1D rotary on queries and keys over the flattened sequence) or ``none``; see ``position``.
        context_pool: the queries read the patches average-pooled over ``context_pool x context_pool`` windows
            (``pool_patches``), while every patch is still assigned at full resolution. 1 (the paper's): the
            full grid. 2 cuts the Perceiver's per-patch work 4x, the largest per-patch cost after the
            pixel encoder.
        context_pool_frames: the pooling windows also span this many consecutive frames (1: none). Objects move
            little from one frame to the next, so pooling in time keeps the spatial detail small objects need.
        context_frames: the queries read at most this many frames: a longer clip's (or chunk's) patches are
            averaged over windows of ``ceil(T / context_frames)`` consecutive frames (or ``context_pool_frames``,
            if more). The queries' cost then stops growing with T, as the token count does, while clips up to
            ``context_frames`` long are read whole (None: no cap).
        recompute: the assignment head's per-patch activations are recomputed in the backward, not kept
            (``True``, or from a number of patches per batch: ``recomputes``).
        perceiver: the query Perceiver's norms and MLP (``PerceiverOptions``); without ``final_norm`` the queries
            go to the assignment head as the last layer leaves them.
    """

    def __init__(
        self,
        dim: PositiveInt = 128,
        num_slots: PositiveInt = 32,
        depth: NonNegativeInt = 2,
        heads: PositiveInt = 4,
        head_dim: PositiveInt = 32,
        assign_dim: PositiveInt = 64,
        detach_features: bool = True,
        init_scale: PositiveFloat = 10.0,
        scale_gain: PositiveFloat = 10.0,
        max_scale: PositiveFloat = 20.0,
        rotary: RotaryForm = "axial",
        context_pool: PositiveInt = 1,
        context_pool_frames: PositiveInt = 1,
        context_frames: PositiveInt | None = None,
        recompute: RecomputePolicy = False,
        perceiver: PerceiverOptions = PerceiverOptions(),
    ):
        super().__init__()
        if not 1 < init_scale <= max_scale:
            raise ValueError(f"init_scale={init_scale} must lie in (1, max_scale={max_scale}]")
        if scale_gain <= 0:
            raise ValueError(f"scale_gain={scale_gain} must be positive")
        self.num_slots = num_slots
        self.detach_features = detach_features
        self.scale_gain = scale_gain
        self.max_scale = max_scale
        if context_frames is not None and context_frames < 1:
            raise ValueError(f"context_frames={context_frames} must be positive")
        self.context_pool, self.context_pool_frames, self.context_frames = context_pool, context_pool_frames, context_frames
        self.recompute = recompute
        self.queries = nn.Parameter(fourier_slot_latents(num_slots, dim))
        self.rotary = create_rotary(rotary, head_dim)
        self.context_norm = context_norm(dim, perceiver)
        self.layers = perceiver_layers(depth, dim, heads, head_dim, perceiver)
        self.norm = nn.LayerNorm(dim) if perceiver.final_norm else nn.Identity()
        self.query_head = projection_mlp(dim, 2 * assign_dim, assign_dim)
        self.patch_head = projection_mlp(dim, 2 * assign_dim, assign_dim)
        inverse_softplus = math.log(math.expm1(init_scale - 1))
        self.log_scale = nn.Parameter(torch.tensor(inverse_softplus / scale_gain))

    @property
    def scale(self) -> torch.Tensor:
        return (F.softplus(self.scale_gain * self.log_scale) + 1).clamp(max=self.max_scale)

    def patch_directions(self, patches: torch.Tensor) -> torch.Tensor:
        """``(B, N, assign_dim)`` unit vectors of the patches in the cosine space of the assignment."""
        return F.normalize(self.patch_head(patches), dim=-1)

    def window_frames(self, frames: int) -> int:
        """How many consecutive frames each context window of a ``frames``-long clip averages."""
        if self.context_frames is None:
            return self.context_pool_frames
        return max(self.context_pool_frames, math.ceil(frames / self.context_frames))

    def pool_context(self, patches: torch.Tensor, grid: tuple[int, int, int]):
        """What the queries read: ``patches (B, N, D)`` pooled (``pool_patches``), and the pooled grid."""
        return pool_patches(patches, grid, self.context_pool, self.window_frames(grid[0]))

    def forward(self, patches: torch.Tensor, grid: tuple[int, int, int]):
        """``patches (B, N, D)`` on ``grid`` -> ``(logits (B, N, K), queries (B, K, D))``."""
        context = patches.detach() if self.detach_features else patches
        context, context_grid = self.pool_context(context, grid)
        context = standardize(self.context_norm(context))
        rotate = self.rotary.for_grid(context_grid, self.num_slots, patches.device) if self.rotary is not None else None
        # A copy, not an expand: a view of a parameter made under no_grad breaks torch's module tracker (and with
        # it FlopCounterMode and Lightning's model summary); K x D per clip is nothing.
        queries = self.queries.repeat(patches.shape[0], 1, 1)
        for layer in self.layers:
            queries = layer(queries, context, full_attention, rotate)
        queries = self.norm(queries)
        q = F.normalize(self.query_head(queries), dim=-1)
        p = recompute_in_backward(self.patch_directions, patches, enabled=recomputes(self.recompute, patches.shape[0] * patches.shape[1]))
        logits = self.scale * torch.einsum("bnc,bkc->bnk", p, q)
        return logits, queries
