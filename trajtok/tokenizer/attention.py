"""Perceiver cross-attention for the tokenizer, and the dense form of trajectory-masked attention.

Every attention here reads keys/values from ``[latents; patches]`` (Flamingo-style: latents also see each
other). Tensors use the layout ``(B, length, heads, head_dim)``.

The trajectory encoder's latents of trajectory k may only see the patches whose hard label is k, plus the
sub-tokens of k. Because each patch has exactly one label, that attention is a softmax over *segments* of the
patches: ``segment_attention`` (its own module) computes it as block-sparse attention over the ``SegmentLayout``
defined here (sampled dot products and segment sums) in O(N * n * D) instead of the O(K * n * N * D) of a dense
masked attention (``dense_masked_attention``, kept as the test oracle and as the faster path for small problems,
where one fused SDPA call beats the segment form's fixed overheads; see ``pick_attention_form``).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jsonargparse.typing import PositiveFloat
from torch import nn

Attend = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def full_attention(q, k_lat, v_lat, k_ctx, v_ctx) -> torch.Tensor:
    """Unmasked attention of latents ``q (B, L, H, d)`` over ``[latents; patches]``."""
    k = torch.cat([k_lat, k_ctx], dim=1).transpose(1, 2)
    v = torch.cat([v_lat, v_ctx], dim=1).transpose(1, 2)
    return F.scaled_dot_product_attention(q.transpose(1, 2), k, v).transpose(1, 2)


def trajectory_mask(labels: torch.Tensor, num_slots: int, num_subtokens: int, visible_tail: int = 0) -> torch.Tensor:
    """``(B, K*n, K*n + N)`` bool: latent of trajectory k sees its own sub-tokens and the patches labelled k;
    every latent also sees the last ``visible_tail`` patches of the clip (the released encoder's guard against a
    row with no key)."""
    owner = torch.arange(num_slots, device=labels.device).repeat_interleave(num_subtokens)
    to_latents = (owner[:, None] == owner[None, :]).expand(labels.shape[0], -1, -1)
    to_patches = owner[None, :, None] == labels[:, None, :]
    if visible_tail:
        to_patches[..., -visible_tail:] = True
    return torch.cat([to_latents, to_patches], dim=-1)


def dense_masked_attention(q, k_lat, v_lat, k_ctx, v_ctx, labels: torch.Tensor, num_subtokens: int,
                           visible_tail: int = 0):
    """Trajectory-masked attention as one dense SDPA call with a boolean mask (the oracle).

    ``q, k_lat, v_lat``: ``(B, K*n, H, d)``; ``k_ctx, v_ctx``: ``(B, N, H, d)``; ``labels``: ``(B, N)``.
    """
    num_slots = q.shape[1] // num_subtokens
    mask = trajectory_mask(labels, num_slots, num_subtokens, visible_tail)[:, None]
    k = torch.cat([k_lat, k_ctx], dim=1).transpose(1, 2)
    v = torch.cat([v_lat, v_ctx], dim=1).transpose(1, 2)
    return F.scaled_dot_product_attention(q.transpose(1, 2), k, v, attn_mask=mask).transpose(1, 2)


class SegmentLayout:
    """Which patch belongs to which segment, in the form the segment-attention kernels want.

    Built once per forward from the hard labels (``TrajectoryEncoder`` shares it by all layers and the
    backward). A segment is one trajectory of one clip (S = B*K of them); a *row* is one (segment, sub-token,
    head) query (R = S*n*H); the attention matrix from rows to patch keys (P*H columns: one per patch and
    head) is block-sparse with exactly ``n`` non-zeros per column, nnz = P*n*H in all. The kernels work on
    the flat ``(nnz,)`` vector of its values, in one of two orders:

    * ``sparse=True`` (the CPU default): compressed-sparse-row order, so that the per-patch dot products are
      one ``torch.sparse.sampled_addmm`` and the segment sums one CSR @ dense matmul (MKL on CPU), with no
      ``(P, H, d)`` temporary.
    * ``sparse=False`` (elsewhere: needs nothing but gathers, batched matmuls and ``index_add_``): patch order
      ``(n, P, H)``, dot products as ``(1 x d) @ (d x 1)`` batched matmuls of a gathered query, segment sums as
      ``index_add_``. The sparse path is not used on CUDA because we could not test it there.

    Three primitives cover forward and backward (x: ``(S, n, H, d)`` per row, y: ``(P, H, d)`` per patch):
    ``sample(x, y)[r, p] = x[r] . y[p]``, ``reduce(vals, y)[r] = sum_p vals[r, p] y[p]`` and
    ``spread(vals, x)[p] = sum_r vals[r, p] x[r]``.
    """

    def __init__(self, labels: torch.Tensor, num_slots: int, num_subtokens: int, heads: int, sparse: bool | None = None):
        batch, num_patches = labels.shape
        device = labels.device
        n, H = num_subtokens, heads
        self.sparse = device.type == "cpu" if sparse is None else sparse
        self.num_slots, self.num_subtokens, self.heads = num_slots, n, H
        self.num_segments, self.num_patches = batch * num_slots, batch * num_patches
        S, P = self.num_segments, self.num_patches
        #: R: one row per (segment, sub-token, head) query.
        self.num_rows = S * n * H
        #: ``(P,)`` global segment id of each patch: its trajectory, offset by its clip in the batch.
        self.segment = (labels + num_slots * torch.arange(batch, device=device)[:, None]).reshape(-1)
        sub_head = torch.arange(n * H, device=device)  # i * H + h
        if not self.sparse:
            # Value (i, p, h) belongs to row (segment[p], i, h).
            self.row_of_nnz = (self.segment[None, :, None] * (n * H) + sub_head.view(n, 1, H)).reshape(-1)
            self.nnz_of_patch = None
            return
        counts = torch.bincount(self.segment, minlength=S)
        starts = counts.cumsum(0) - counts
        members = self.segment.argsort(stable=True)  # patches grouped by segment, in patch order
        sorted_segment = self.segment[members]
        rank = torch.arange(P, device=device) - starts[sorted_segment]
        # Row (s, i, h) holds the counts[s] patches of s; its values start at n*H*starts[s] + (i*H + h)*counts[s].
        position = (n * H * starts[sorted_segment] + rank)[:, None] + sub_head * counts[sorted_segment][:, None]
        self.col = torch.empty(P * n * H, dtype=torch.long, device=device)
        self.col[position.reshape(-1)] = (members[:, None] * H + sub_head % H).reshape(-1)
        row_counts = counts.repeat_interleave(n * H)
        self.crow = torch.cat([row_counts.new_zeros(1), row_counts.cumsum(0)])
        self.row_of_nnz = torch.arange(S * n * H, device=device).repeat_interleave(row_counts, output_size=P * n * H)
        nnz_of_patch = torch.empty_like(position)
        nnz_of_patch[members] = position
        #: ``(n, P, H)`` index of the value of (patch, sub-token, head) in CSR order.
        self.nnz_of_patch = nnz_of_patch.view(P, n, H).permute(1, 0, 2)

    def matches(self, labels: torch.Tensor, num_subtokens: int, heads: int) -> bool:
        return (self.num_patches, self.num_subtokens, self.heads) == (labels.numel(), num_subtokens, heads)

    def _csr(self, values: torch.Tensor) -> torch.Tensor:
        size = (self.num_rows, self.num_patches * self.heads)
        return self.csr(self.crow, self.col, values, size)

    @staticmethod
    def csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """A CSR matrix of a layout's pattern (its indices were built valid, so they are not checked again)."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            return torch.sparse_csr_tensor(crow, col, values, size=size, check_invariants=False)

    def sample(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``(nnz,)`` dot products of each row's ``x`` with the ``y`` of each patch it sees."""
        head_dim = x.shape[-1]
        if self.sparse:
            pattern = self._csr(x.new_zeros(self.row_of_nnz.numel()))  # beta=0 still reads it: no garbage
            return torch.sparse.sampled_addmm(pattern, x.view(-1, head_dim), y.view(-1, head_dim).t(), beta=0.0).values()
        rows = self.num_patches * self.heads
        out = y.new_empty(self.num_subtokens, self.num_patches, self.heads)
        gathered = y.new_empty(y.shape)
        for i in range(self.num_subtokens):
            torch.index_select(x[:, i], 0, self.segment, out=gathered)
            torch.bmm(gathered.view(rows, 1, head_dim), y.view(rows, head_dim, 1), out=out[i].view(rows, 1, 1))
        return out.view(-1)

    def reduce(self, values: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``(S, n, H, d)``: each row's ``values``-weighted sum of the ``y`` of its patches."""
        head_dim = y.shape[-1]
        if self.sparse:
            out = self._csr(values) @ y.view(-1, head_dim)
            return out.view(self.num_segments, self.num_subtokens, self.heads, head_dim)
        values = values.view(self.num_subtokens, self.num_patches, self.heads, 1)
        out = y.new_zeros(self.num_subtokens, self.num_segments, self.heads, head_dim)
        weighted = torch.empty_like(y)
        for i in range(self.num_subtokens):
            out[i].index_add_(0, self.segment, torch.mul(values[i], y, out=weighted))
        return out.permute(1, 0, 2, 3)

    def spread(self, values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``(P, H, d)``: each patch's ``values``-weighted sum of the ``x`` of the rows that see it."""
        values = values[self.nnz_of_patch] if self.sparse else values.view(self.num_subtokens, self.num_patches, self.heads)
        out = torch.index_select(x[:, 0], 0, self.segment).mul_(values[0][..., None])
        gathered = torch.empty_like(out) if self.num_subtokens > 1 else None
        for i in range(1, self.num_subtokens):
            out.addcmul_(torch.index_select(x[:, i], 0, self.segment, out=gathered), values[i][..., None])
        return out


def autocast_off(device: torch.device):
    if torch.amp.is_autocast_available(device.type):  # not for meta tensors
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


class ContextAttention:
    """An attention that reads the standardised context itself with the layer's projections
    (``PerceiverLayer.context_projections``), instead of per-patch keys and values the layer computes first.

    ``__call__(q, k_lat, v_lat, context, projections, rotate) -> (B, L, H, d)``; see ``segment_attention``."""

    def __call__(self, q, k_lat, v_lat, context, projections, rotate=None) -> torch.Tensor:
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class PerceiverOptions:
    """How the tokenizer's Perceivers (segmenter queries, trajectory encoder) normalise, and what their MLP holds.

    The defaults are this project's layout; ``RELEASED_PERCEIVER`` is the released TrajTok's (``configs/official``).

    Attributes:
        norm_eps: epsilon of the latent-stream norm, the MLP's norm and ``context_norm``.
        context_norm: an affine LayerNorm over the context once per Perceiver, before each layer's own
            (the released Perceiver's ``norm_ctx``).
        attn_input_norm: the attention reads its own LayerNorm (eps 1e-5) of the latent stream, while the stream
            keeps its normalised value on the residual path (the released ``norm_latents`` beside ``norm_lat``).
        shared_stream_norm: one latent-stream norm shared by all layers (the released ``norm_lat``), instead of
            one per layer.
        ff_bias: the MLP's projections have biases.
        final_norm: a LayerNorm over the latents after the last layer (the released code has none).
    """

    norm_eps: PositiveFloat = 1e-5
    context_norm: bool = False
    attn_input_norm: bool = False
    shared_stream_norm: bool = False
    ff_bias: bool = False
    final_norm: bool = True


#: The released TrajTok's Perceivers.
RELEASED_PERCEIVER = PerceiverOptions(norm_eps=1e-6, context_norm=True, attn_input_norm=True, shared_stream_norm=True,
                                      ff_bias=True, final_norm=False)


class FeedForward(nn.Module):
    """Pre-norm gated-SiLU MLP."""

    def __init__(self, dim: int, mult: int = 4, bias: bool = False, eps: float = 1e-5):
        super().__init__()
        hidden = dim * mult
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.gate_value = nn.Linear(dim, 2 * hidden, bias=bias)
        self.out = nn.Linear(hidden, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.gate_value(self.norm(x)).chunk(2, dim=-1)
        return self.out(F.silu(gate) * value)


def standardize(context: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance over the channels: ``LayerNorm`` without its affine, done once per Perceiver;
    each layer applies its own affine inside its projections (``PerceiverLayer.context_keys_values``)."""
    return F.layer_norm(context, context.shape[-1:])


class PerceiverLayer(nn.Module):
    """Latents cross-attend to ``[latents; patches]`` (what they see is up to ``attend``), then an MLP.

    The layer starts by normalising the latent *stream* itself, not a copy for the attention input: learned
    latents start tiny (a Fourier code at scale 0.02), and a residual added to them unnormalised is one
    attention output of norm ~1 shared by all of them, which swamps their identity (the K segmenter queries
    came out of the first layer nearly parallel and the assignment uniform; ``tests/test_tokenizer.py``,
    ``test_queries_stay_distinct_through_every_layer_at_init``, checks they stay distinct). The official
    Perceiver resampler re-normalises its latents at the start of every layer for the same reason.
    """

    def __init__(self, dim: int, heads: int, head_dim: int, ff_mult: int = 4, options: PerceiverOptions = PerceiverOptions(),
                 stream_norm: nn.LayerNorm | None = None):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        inner = heads * head_dim
        self.norm_latents = stream_norm if stream_norm is not None else nn.LayerNorm(dim, eps=options.norm_eps)
        self.norm_attention = nn.LayerNorm(dim) if options.attn_input_norm else None
        self.norm_context = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        # Keys and values by separate projections: each comes out contiguous, where the halves of one fused
        # projection would be strided views that the segment attention copies (a patch-sized copy per layer).
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)
        self.ff = FeedForward(dim, ff_mult, bias=options.ff_bias, eps=options.norm_eps)
        self._register_load_state_dict_pre_hook(_split_fused_key_value)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.heads, self.head_dim))

    def context_keys_values(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values ``(B, N, H, d)`` of the ``standardize``-d context.

        ``norm_context``'s affine is folded into the projections (``W(g * x + b) = (W * g) x + W b``): the same
        function as normalising in every layer, but the layers of a Perceiver share one standardised copy of the
        context, and that copy is what the backward keeps for the weight gradients (one patch-sized tensor per
        Perceiver instead of one per layer).
        """
        key_weight, key_bias, value_weight, value_bias = self.context_projections()
        return self._split(F.linear(context, key_weight, key_bias)), self._split(F.linear(context, value_weight, value_bias))

    def context_projections(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The key weight ``(H*d, D)`` and bias, and the value weight and bias, ``norm_context``'s affine folded in."""
        gain, shift = self.norm_context.weight, self.norm_context.bias
        return self.to_k.weight * gain, self.to_k.weight @ shift, self.to_v.weight * gain, self.to_v.weight @ shift

    def forward(self, latents, context, attend: Attend | ContextAttention, rotate: Callable | None = None):
        """``latents (B, L, D)``, standardised ``context (B, N, D)`` (``standardize``) -> latents ``(B, L, D)``.

        ``rotate``: position as ``(q, k_latents, k_patches) -> the same, rotated`` (``position.Rotate``)."""
        latents = self.norm_latents(latents)
        attention_input = latents if self.norm_attention is None else self.norm_attention(latents)
        q = self._split(self.to_q(attention_input))
        k_lat, v_lat = self._split(self.to_k(attention_input)), self._split(self.to_v(attention_input))
        if isinstance(attend, ContextAttention):
            out = attend(q, k_lat, v_lat, context, self.context_projections(), rotate).flatten(-2)
        else:
            k_ctx, v_ctx = self.context_keys_values(context)
            if rotate is not None:
                q, k_lat, k_ctx = rotate(q, k_lat, k_ctx)
            out = attend(q, k_lat, v_lat, k_ctx, v_ctx).flatten(-2)
        latents = latents + self.to_out(out)
        return latents + self.ff(latents)


def perceiver_layers(depth: int, dim: int, heads: int, head_dim: int, options: PerceiverOptions) -> nn.ModuleList:
    """``depth`` Perceiver layers built with ``options`` (one stream norm shared by all when it says so)."""
    shared = nn.LayerNorm(dim, eps=options.norm_eps) if options.shared_stream_norm else None
    return nn.ModuleList(PerceiverLayer(dim, heads, head_dim, options=options, stream_norm=shared) for _ in range(depth))


def context_norm(dim: int, options: PerceiverOptions) -> nn.Module:
    """The Perceiver-wide affine norm of the context that ``options.context_norm`` asks for, else the identity."""
    return nn.LayerNorm(dim, eps=options.norm_eps) if options.context_norm else nn.Identity()


def _split_fused_key_value(state_dict: dict, prefix: str, *args) -> None:
    """Read checkpoints written before keys and values had their own projections (one ``to_kv``, keys first)."""
    fused = state_dict.pop(prefix + "to_kv.weight", None)
    if fused is not None:
        state_dict[prefix + "to_k.weight"], state_dict[prefix + "to_v.weight"] = fused.chunk(2, dim=0)
