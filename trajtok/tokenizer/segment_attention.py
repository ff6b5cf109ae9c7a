"""Trajectory-masked attention per segment: each latent attends to its own sub-tokens and the patches labelled with
its trajectory, as block-sparse attention over ``SegmentLayout`` (O(N * n * D) instead of the dense form's
O(K * n * N * D)); the backward is written by hand from the saved probabilities, and is exact.

Two entry points share one kernel (``_SegmentSoftmaxMean``):

* ``segment_attention`` over given per-head keys and values, the form ``dense_masked_attention`` is the oracle of;
* ``AbsorbedSegmentAttention``, what the trajectory encoder uses: from the standardised context and the layer's
  projections, with the value projection absorbed, and without rotary the key projection too. A head's output is
  linear in the attention-weighted sum of the patches' features x_p:
  ``sum_p a_p (W_v^h x_p + b_v^h) = W_v^h (sum_p a_p x_p) + (sum_p a_p) b_v^h``, so the sums are taken over x and
  the value projection is applied to the K * n * H sums (next to nothing) instead of to every patch. When the patch
  keys carry no rotary position the score is linear in x_p too,
  ``q_h . (W_k^h x_p + b_k^h) = (W_k^h^T q_h) . x_p + q_h . b_k^h``, and the queries move into the D-wide feature
  space instead of the keys being computed per patch. The same function, without one (or both) of each layer's
  ``(N, D) x (D, H * d)`` projections (the trajectory encoder's largest per-patch costs) and without keeping
  per-patch values (and keys) for the backward; the patch sums are D-wide instead of d-wide
  (``N * n * H * D`` multiply-adds, ``n / d`` of one projection's).

The patch part's softmax is normalised within the patches and returned with its log-sum-exp; the sub-token part is
a few small einsums; the two are combined by their log-sum-exps (``_with_subtokens``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trajtok.tokenizer.attention import ContextAttention, SegmentLayout, autocast_off


class SharedColumns:
    """A ``SegmentLayout``'s block-sparse pattern with one column per patch (the heads share the patch's feature),
    and its transpose, and the three primitives of ``SegmentLayout`` on D-wide features.

    With x ``(P, D)`` per patch and y ``(R, D)`` per row (R = S * n * H rows, ``(segment, sub-token, head)``):
    ``sample(y, x)[r, p] = y[r] . x[p]``, ``reduce(vals, x)[r] = sum_p vals[r, p] x[p]`` and
    ``spread(vals, y)[p] = sum_r vals[r, p] y[r]``; values are ``(nnz,)`` in the layout's order.
    """

    def __init__(self, layout: SegmentLayout):
        self.layout = layout
        if layout.sparse:
            per_patch = layout.num_subtokens * layout.heads
            self.col = layout.col.div(layout.heads, rounding_mode="floor")
            #: CSR index of the value of (patch, sub-token, head), patch-major: the transpose's value order.
            self.transpose_order = layout.nnz_of_patch.permute(1, 0, 2).reshape(-1)
            self.transpose_col = layout.row_of_nnz[self.transpose_order]
            self.transpose_crow = torch.arange(layout.num_patches + 1, device=layout.col.device) * per_patch

    def _csr(self, values: torch.Tensor, transpose: bool = False) -> torch.Tensor:
        layout = self.layout
        if transpose:
            size = (layout.num_patches, layout.num_rows)
            return layout.csr(self.transpose_crow, self.transpose_col, values[self.transpose_order], size)
        return layout.csr(layout.crow, self.col, values, (layout.num_rows, layout.num_patches))

    def sample(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        layout = self.layout
        if layout.sparse:
            pattern = self._csr(y.new_zeros(self.col.numel()))
            return torch.sparse.sampled_addmm(pattern, y.view(layout.num_rows, -1), x.t(), beta=0.0).values()
        y = y.view(layout.num_segments, layout.num_subtokens, layout.heads, -1)
        return torch.stack([torch.einsum("phc,pc->ph", y[:, i].index_select(0, layout.segment), x)
                            for i in range(layout.num_subtokens)]).view(-1)

    def reduce(self, values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        layout = self.layout
        shape = (layout.num_segments, layout.num_subtokens, layout.heads, x.shape[-1])
        if layout.sparse:
            return (self._csr(values) @ x).view(shape)
        values = values.view(layout.num_subtokens, layout.num_patches, layout.heads, 1)
        out = x.new_zeros(shape)
        for i in range(layout.num_subtokens):
            out[:, i].index_add_(0, layout.segment, values[i] * x[:, None])
        return out

    def spread(self, values: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        layout = self.layout
        if layout.sparse:
            return self._csr(values, transpose=True) @ y.view(layout.num_rows, -1)
        y = y.view(layout.num_segments, layout.num_subtokens, layout.heads, -1)
        values = values.view(layout.num_subtokens, layout.num_patches, layout.heads)
        return sum(torch.einsum("ph,phc->pc", values[i], y[:, i].index_select(0, layout.segment))
                   for i in range(layout.num_subtokens))


class _SegmentSoftmaxMean(torch.autograd.Function):
    """Per row r of ``layout`` (segment, sub-token, head): the softmax over its segment's patches of the scores
    ``q[r] . keys[p]``, returned as the weighted mean of ``values`` and the log-sum-exp of the scores (``-inf``
    and 0 for an empty segment).

    ``key_columns`` and ``value_columns`` give the three primitives (``sample``, ``reduce``, ``spread``): the
    ``layout`` itself for per-head tensors ``(P, H, d)``, or its ``SharedColumns`` for features ``(P, D)`` shared
    by the heads. Backward, with p the probabilities, dO and dL the gradients of the mean O and of the
    log-sum-exp: dS = p * (dO . v - dO . O + dL), dq = dS keys, dkeys = dS^T q, dvalues = p^T dO. Of the saved
    tensors only the ``(nnz,)`` probabilities are patch-sized and not an input.
    """

    @staticmethod
    def forward(ctx, q, keys, values, layout: SegmentLayout, key_columns, value_columns):
        with autocast_off(q.device):
            ctx.dtypes = (q.dtype, keys.dtype, values.dtype)
            q, keys, values = (t.to(torch.promote_types(t.dtype, torch.float32)).contiguous() for t in (q, keys, values))
            rows = layout.row_of_nnz
            num_rows = layout.num_rows
            scores = key_columns.sample(q, keys)
            peak = scores.new_full((num_rows,), -torch.inf).scatter_reduce_(0, rows, scores, reduce="amax")
            weights = scores.sub_(peak[rows]).exp_()
            total = weights.new_zeros(num_rows).index_add_(0, rows, weights)
            # A non-empty row's total is at least 1 (its peak's weight); an empty row's mean is 0, not 0 / 0.
            mean = value_columns.reduce(weights, values).reshape(num_rows, -1).div_(total.clamp(min=1).view(-1, 1))
            probabilities = weights.div_(total[rows])
            log_total = total.log_().add_(peak)
            ctx.save_for_backward(q, keys, values, probabilities, mean)
            ctx.layout, ctx.key_columns, ctx.value_columns = layout, key_columns, value_columns
            return mean.view(*q.shape[:-1], -1), log_total.view(q.shape[:-1])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_mean, grad_log_total):
        with autocast_off(grad_mean.device):
            q, keys, values, probabilities, mean = ctx.saved_tensors
            key_columns, value_columns = ctx.key_columns, ctx.value_columns
            rows = ctx.layout.row_of_nnz
            grad_mean = grad_mean.to(mean.dtype).reshape(mean.shape)
            row_term = (grad_mean * mean).sum(-1)
            if grad_log_total is not None:
                row_term = row_term - grad_log_total.to(mean.dtype).reshape(-1)
            grad_scores = value_columns.sample(grad_mean.view(*q.shape[:-1], -1), values)
            grad_scores = grad_scores.sub_(row_term[rows]).mul_(probabilities)
            grad_q = key_columns.reduce(grad_scores, keys).reshape(q.shape)
            grad_keys = key_columns.spread(grad_scores, q).view(keys.shape)
            grad_values = value_columns.spread(probabilities, grad_mean.view(*q.shape[:-1], -1)).view(values.shape)
            grads = (grad_q, grad_keys, grad_values)
            return (*(g.to(dtype) for g, dtype in zip(grads, ctx.dtypes)), None, None, None)


def _with_subtokens(q, k_lat, v_lat, patch_out, patch_log_total) -> torch.Tensor:
    """Each row's attention over its own sub-tokens combined with its patch part: ``q (S, n, H, d)`` (scaled),
    ``k_lat, v_lat`` alike; ``patch_out (S, n, H, d)`` the patches' softmax-weighted output, ``patch_log_total``
    the log-sum-exp of their scores (``-inf`` for a trajectory with no patch)."""
    scores = torch.einsum("sihd,sjhd->sihj", q, k_lat)
    out_lat = torch.einsum("sihj,sjhd->sihd", scores.softmax(-1), v_lat)
    share = torch.sigmoid(patch_log_total - scores.logsumexp(-1))[..., None]  # the patches' share of the attention
    return torch.lerp(out_lat, patch_out.to(out_lat.dtype), share.to(out_lat.dtype))


def _check_layout(layout: SegmentLayout | None, labels: torch.Tensor, num_slots: int, num_subtokens: int,
                  heads: int) -> SegmentLayout:
    if layout is None:
        return SegmentLayout(labels, num_slots, num_subtokens, heads)
    if not layout.matches(labels, num_subtokens, heads):
        raise ValueError("layout was built for another number of patches, sub-tokens or heads")
    return layout


def segment_attention(
    q, k_lat, v_lat, k_ctx, v_ctx, labels: torch.Tensor, num_subtokens: int, layout: SegmentLayout | None = None
):
    """The same result as ``dense_masked_attention``, computed per segment of patches.

    ``q, k_lat, v_lat``: ``(B, K*n, H, d)``; ``k_ctx, v_ctx``: ``(B, N, H, d)``; ``labels``: ``(B, N)``.
    ``layout``: a ``SegmentLayout`` of these labels, if the caller already has one; built here otherwise.
    """
    batch, num_latents, heads, head_dim = q.shape
    num_slots = num_latents // num_subtokens
    layout = _check_layout(layout, labels, num_slots, num_subtokens, heads)
    lat_shape = (batch * num_slots, num_subtokens, heads, head_dim)
    ctx_shape = (layout.num_patches, heads, head_dim)
    q = q.reshape(lat_shape) * head_dim**-0.5
    mean, log_total = _SegmentSoftmaxMean.apply(q, k_ctx.reshape(ctx_shape), v_ctx.reshape(ctx_shape), layout,
                                                layout, layout)
    out = _with_subtokens(q, k_lat.reshape(lat_shape), v_lat.reshape(lat_shape), mean, log_total)
    return out.reshape(batch, num_latents, heads, head_dim).to(q.dtype)


class AbsorbedSegmentAttention(ContextAttention):
    """``segment_attention`` from the standardised context and the layer's (folded) projections, with the value
    projection absorbed, and the key projection too when ``rotate`` is None (see the module's docstring): the same
    result. ``layout``: the ``SegmentLayout`` of the hard labels, shared by the layers."""

    def __init__(self, layout: SegmentLayout):
        self.layout = layout
        self.columns = SharedColumns(layout)

    def __call__(self, q, k_lat, v_lat, context, projections, rotate=None) -> torch.Tensor:
        """``q, k_lat, v_lat (B, K*n, H, d)``, ``context (B, N, D)``, ``projections``: the layer's key weight
        ``(H*d, D)``, key bias ``(H*d,)``, value weight and value bias; ``rotate`` as ``PerceiverLayer`` takes it
        -> ``(B, K*n, H, d)``."""
        batch, num_latents, heads, head_dim = q.shape
        layout = self.layout
        if layout.num_patches != context.shape[0] * context.shape[1] or layout.heads != heads:
            raise ValueError("layout was built for another number of patches or heads")
        key_weight, key_bias, value_weight, value_bias = projections
        features = context.reshape(-1, context.shape[-1])
        by_head = (heads, head_dim, -1)
        if rotate is not None:  # rotated keys are not linear in the features: they are computed per patch
            k_ctx = F.linear(context, key_weight, key_bias).unflatten(-1, (heads, head_dim))
            q, k_lat, k_ctx = rotate(q, k_lat, k_ctx)
        lat_shape = (layout.num_segments, layout.num_subtokens, heads, head_dim)
        q = q.reshape(lat_shape) * head_dim**-0.5
        if rotate is not None:
            keys = k_ctx.reshape(layout.num_patches, heads, head_dim)
            mean, log_total = _SegmentSoftmaxMean.apply(q, keys, features, layout, layout, self.columns)
        else:
            q_features = torch.einsum("sihd,hdc->sihc", q, key_weight.view(by_head))
            mean, log_total = _SegmentSoftmaxMean.apply(q_features, features, features, layout, self.columns,
                                                        self.columns)
            log_total = log_total + torch.einsum("sihd,hd->sih", q, key_bias.view(heads, head_dim))
        out_patches = torch.einsum("sihc,hdc->sihd", mean, value_weight.view(by_head)) + value_bias.view(heads, head_dim)
        out = _with_subtokens(q, k_lat.reshape(lat_shape), v_lat.reshape(lat_shape), out_patches, log_total)
        return out.reshape(batch, num_latents, heads, head_dim)
