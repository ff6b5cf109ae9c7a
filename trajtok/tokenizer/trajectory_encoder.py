"""The trajectory encoder: one token (or n sub-tokens) per trajectory from the patches it owns."""

from __future__ import annotations

from functools import partial
from typing import Literal

import torch
from jsonargparse.typing import NonNegativeInt, PositiveInt
from torch import nn

from trajtok.tokenizer.attention import (
    PerceiverOptions,
    SegmentLayout,
    context_norm,
    dense_masked_attention,
    perceiver_layers,
    standardize,
)
from trajtok.tokenizer.fourier import fourier_subtoken_latents
from trajtok.tokenizer.position import FourierPosition, RotaryForm, create_rotary
from trajtok.tokenizer.recompute import (
    RecomputePolicy,
    recompute_in_backward,
    recomputes,
)
from trajtok.tokenizer.segment_attention import AbsorbedSegmentAttention

AttentionForm = Literal["auto", "segment", "dense"]


def soft_mean(logits: torch.Tensor, patches: torch.Tensor, position: torch.Tensor | None = None,
              eps: float = 1e-6) -> torch.Tensor:
    """``(B, K, D)`` soft-assignment-weighted mean of the patch features per slot.

    This is the path that carries a downstream loss into the assignment logits: the hard labels that the
    masked attention uses have no gradient. ``position (N, D)``, shared by the clips, is added to every
    clip's patches (the mean is linear, so the sum ``patches + position`` is never kept for the backward).
    """
    weights = logits.softmax(dim=-1)
    weights = weights / (weights.sum(dim=1, keepdim=True) + eps)
    mean = torch.einsum("bnk,bnd->bkd", weights, patches)
    return mean if position is None else mean + torch.einsum("bnk,nd->bkd", weights, position)


#: ``auto`` picks the dense form while ``num_latents * num_patches * inner_dim`` is at most this (see
#: ``pick_attention_form``). CPU: set from ``python -m benchmarks.tokenizer_speed --parts C``; CUDA: an estimate
#: that the same benchmark has not yet measured.
DENSE_MAX_WORK = {"cpu": 2**22, "cuda": 2**29}
#: The same for an encoder without rotary, whose segment form absorbs the key projection too.
ABSORBED_DENSE_MAX_WORK = {"cpu": 2**21, "cuda": 2**29}


def pick_attention_form(
    form: AttentionForm, device: torch.device, num_latents: int, num_patches: int, inner_dim: int,
    absorbed: bool = False,
) -> str:
    """Choose the masked-attention implementation for this call.

    The dense form does K times the attention FLOPs of the segment form (exactly: L * (L + N) vs
    n * (N + L) dot products per head for L = K * n latents and N patches) but is one fused SDPA call; the
    segment form (``segment_attention.AbsorbedSegmentAttention``: the value projection absorbed, and without
    rotary the key projection too) has a fixed cost per layer (building the ``SegmentLayout``: many small ops).
    Both grow linearly in N at fixed L, so the choice is by the dense work ``W = L * N * inner_dim``
    (inner_dim = heads * head_dim): dense while ``W <= DENSE_MAX_WORK[device]`` (``ABSORBED_DENSE_MAX_WORK``
    without rotary), segment above. Below the threshold the fused call's speed outweighs its K-fold work; above
    it the segment form's linear work wins, and its time and memory stay linear in N, where the dense form's
    (B, L, L + N) mask and K-times work do not.

    CPU: each threshold is the work W at which the two forms' times cross (forward + backward of a depth-2
    encoder, layout build included, over a grid of K, N and widths), as measured by
    ``python -m benchmarks.tokenizer_speed --parts C`` (each form's time at each K, N and width).

    CUDA: an estimate, not a measurement: the dense form's fused kernel runs its L * (L + N) * inner_dim
    multiply-adds on tensor cores, while the segment form's gather kernels make several float32 passes over the
    N * inner_dim patch keys/values plus a fixed number of kernel launches, so dense wins over a wider range than
    on CPU. The threshold 2^29 keeps the earlier rule ``L * N <= 2**20`` at the base width (512). To be replaced
    by the crossover that ``python -m benchmarks.tokenizer_speed --parts C`` measures on a GPU.
    """
    if form != "auto":
        return form
    limits = ABSORBED_DENSE_MAX_WORK if absorbed else DENSE_MAX_WORK
    limit = limits.get(device.type, limits["cuda"])
    return "dense" if num_latents * num_patches * inner_dim <= limit else "segment"


def positioned_context(patches: torch.Tensor, position: torch.Tensor | None, norm: nn.Module | None = None) -> torch.Tensor:
    """The standardised ``patches + position`` that every layer of the trajectory encoder reads (after the
    Perceiver-wide ``norm``, if any)."""
    context = patches if position is None else patches + position
    return standardize(context if norm is None else norm(context))


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
        rotary: the Perceiver's position, ``axial``, ``sequence`` or ``none`` (see ``Segmenter``). The segment
            form always absorbs each layer's value projection (``segment_attention``); without rotary it absorbs
            the key projection too (no per-patch keys either), which makes the encoder faster (measured by
            ``python -m benchmarks.tokenizer_speed --parts C``, its ``absorbed`` column), and position enters through
            ``position_features`` alone.
        out_dim: token width (default ``dim``), set by the output projection.
        recompute: the positioned, standardised patches and each layer's per-patch keys (and the dense form's
            values) are recomputed in the backward, not kept (``True``, or from a number of patches per batch:
            ``recomputes``).
        perceiver: the Perceiver's norms and MLP (``PerceiverOptions``); without ``final_norm`` the output
            projection reads the last layer's latents as they are.
        code_norm: normalise the learned latents before use; off, every clip starts from the raw learned latents
            (the released encoder, with ``soft_mean_init`` and ``position_features`` off too).
        visible_tail: every latent also sees the clip's last ``visible_tail`` patches, whatever their label (the
            released encoder's guard: 2). Only the dense form computes it, so ``auto`` then picks dense.
    """

    def __init__(
        self,
        dim: PositiveInt = 128,
        num_slots: PositiveInt = 32,
        max_subtokens: PositiveInt = 1,
        depth: NonNegativeInt = 2,
        heads: PositiveInt = 4,
        head_dim: PositiveInt = 32,
        soft_mean_init: bool = True,
        position_features: bool = True,
        attention: AttentionForm = "auto",
        rotary: RotaryForm = "axial",
        out_dim: PositiveInt | None = None,
        recompute: RecomputePolicy = False,
        perceiver: PerceiverOptions = PerceiverOptions(),
        code_norm: bool = True,
        visible_tail: NonNegativeInt = 0,
    ):
        super().__init__()
        if visible_tail and attention == "segment":
            raise ValueError(f"visible_tail={visible_tail} needs attention 'dense' or 'auto', not 'segment'")
        self.recompute = recompute
        self.num_slots = num_slots
        self.soft_mean_init = soft_mean_init
        self.attention = "dense" if visible_tail else attention
        self.visible_tail = visible_tail
        self.latents = nn.Parameter(fourier_subtoken_latents(num_slots, max_subtokens, dim))
        self.rotary = create_rotary(rotary, head_dim)
        self.position = FourierPosition(dim) if position_features else None
        # The sub-token code (Fourier, scale 0.02) and the soft mean (patch scale) are normalised apart before
        # they are summed: added raw, the soft mean swamps the code and a trajectory's sub-tokens start equal.
        self.norm_code = nn.LayerNorm(dim) if code_norm else nn.Identity()
        # Only where the soft mean is used: a norm that never runs gets no gradient, which DDP refuses.
        self.norm_soft_mean = nn.LayerNorm(dim) if soft_mean_init else None
        if not soft_mean_init:
            self._register_load_state_dict_pre_hook(_drop_unused_soft_mean_norm)
        self.context_norm = context_norm(dim, perceiver)
        self.layers = perceiver_layers(depth, dim, heads, head_dim, perceiver)
        self.norm = nn.LayerNorm(dim) if perceiver.final_norm else nn.Identity()
        self.proj = nn.Linear(dim, out_dim or dim)

    def forward(self, patches, logits, labels, grid: tuple[int, int, int], num_subtokens: int) -> torch.Tensor:
        """``patches (B, N, D)``, ``logits (B, N, K)``, ``labels (B, N)`` -> tokens ``(B, K*n, D)``."""
        batch = patches.shape[0]
        if num_subtokens > self.latents.shape[1]:
            raise ValueError(f"num_subtokens={num_subtokens} > max_subtokens={self.latents.shape[1]}")
        position = self.position(grid, patches.device) if self.position is not None else None
        # index_select copies: a sliced view of the parameter would break torch's module tracker (see Segmenter).
        codes = self.latents.index_select(1, torch.arange(num_subtokens, device=patches.device))
        latents = self.norm_code(codes).expand(batch, -1, -1, -1)
        if self.soft_mean_init:
            latents = latents + self.norm_soft_mean(soft_mean(logits, patches, position))[:, :, None]
        latents = latents.flatten(1, 2)

        inner_dim = self.layers[0].heads * self.layers[0].head_dim
        form = pick_attention_form(self.attention, patches.device, latents.shape[1], patches.shape[1], inner_dim,
                                   absorbed=self.rotary is None)
        recompute = recomputes(self.recompute, patches.shape[0] * patches.shape[1])
        layers_recompute = recompute
        if form == "segment":
            # The segment layout (grouping of patches by trajectory) is built once and shared by all layers.
            layout = SegmentLayout(labels, self.num_slots, num_subtokens, self.layers[0].heads)
            attend = AbsorbedSegmentAttention(layout)
            # Without rotary the layers keep (nnz,) probabilities, no per-patch keys or values: nothing to recompute.
            layers_recompute = recompute and self.rotary is not None
        else:
            attend = partial(dense_masked_attention, labels=labels, num_subtokens=num_subtokens,
                             visible_tail=self.visible_tail)
        rotate = self.rotary.for_grid(grid, latents.shape[1], patches.device) if self.rotary is not None else None
        norm = None if isinstance(self.context_norm, nn.Identity) else self.context_norm
        context = recompute_in_backward(positioned_context, patches, position, norm, enabled=recompute)
        for layer in self.layers:
            latents = recompute_in_backward(layer, latents, context, attend, rotate, enabled=layers_recompute)
        return self.proj(self.norm(latents))


def _drop_unused_soft_mean_norm(state_dict: dict, prefix: str, *args) -> None:
    """Read checkpoints of ``soft_mean_init=False`` encoders written when they still held the unused norm."""
    for key in [k for k in state_dict if k.startswith(prefix + "norm_soft_mean.")]:
        del state_dict[key]
