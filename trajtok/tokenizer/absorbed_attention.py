"""Trajectory-masked attention with the layer's key and value projections absorbed: no per-patch keys or values.

When the patch keys carry no rotary position, a head's score for patch p is linear in the patch's standardised
feature x_p, and its output linear in the weighted sum of the x_p:

    q_h . (W_k^h x_p + b_k^h) = (W_k^h^T q_h) . x_p + q_h . b_k^h,    sum_p a_p (W_v^h x_p + b_v^h) = W_v^h (sum_p a_p x_p) + (sum_p a_p) b_v^h.

So the queries are moved into the D-wide feature space (K * n * H rows: next to nothing), the segment softmax
and weighted sums are taken against x itself, and the value projection is applied to the K * n * H sums. The
result is the same function as ``segment_attention`` over projected keys and values, without the two
``(N, D) x (D, H * d)`` projections of every layer (the trajectory encoder's largest per-patch cost) and without
keeping per-patch keys and values for the backward. The patch sums are D-wide instead of d-wide, which costs
``N * n * H * D`` multiply-adds, ``n * H / D`` of one projection's.
"""

from __future__ import annotations

import torch

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
        self.rows = layout.num_segments * layout.num_subtokens * layout.heads
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
            size = (layout.num_patches, self.rows)
            return layout.csr(self.transpose_crow, self.transpose_col, values[self.transpose_order], size)
        return layout.csr(layout.crow, self.col, values, (self.rows, layout.num_patches))

    def sample(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.layout.sparse:
            pattern = self._csr(y.new_zeros(self.col.numel()))
            return torch.sparse.sampled_addmm(pattern, y.view(self.rows, -1), x.t(), beta=0.0).values()
        layout = self.layout
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
            return self._csr(values, transpose=True) @ y.view(self.rows, -1)
        y = y.view(layout.num_segments, layout.num_subtokens, layout.heads, -1)
        values = values.view(layout.num_subtokens, layout.num_patches, layout.heads)
        return sum(torch.einsum("ph,phc->pc", values[i], y[:, i].index_select(0, layout.segment))
                   for i in range(layout.num_subtokens))


class _SegmentSoftmaxMean(torch.autograd.Function):
    """Per row r (segment, sub-token, head): the softmax over its segment's patches of ``y[r] . x[p]``, returned
    as the weighted mean of the x and the log-sum-exp of the scores (``-inf`` and 0 for an empty segment).

    Backward, with p the probabilities, dO and dL the gradients of the mean O and of the log-sum-exp:
    dS = p * (dO . x - dO . O + dL), dy = dS x, dx = dS^T y + p^T dO. Only the ``(nnz,)`` probabilities are
    patch-sized among the saved tensors.
    """

    @staticmethod
    def forward(ctx, y, x, columns: SharedColumns):
        with autocast_off(y.device):
            ctx.dtypes = (y.dtype, x.dtype)
            y, x = (t.to(torch.promote_types(t.dtype, torch.float32)).contiguous() for t in (y, x))
            rows = columns.layout.row_of_nnz
            scores = columns.sample(y, x)
            peak = scores.new_full((columns.rows,), -torch.inf).scatter_reduce_(0, rows, scores, reduce="amax")
            weights = scores.sub_(peak[rows]).exp_()
            total = weights.new_zeros(columns.rows).index_add_(0, rows, weights)
            # A non-empty row's total is at least 1 (its peak's weight); an empty row's mean is 0, not 0 / 0.
            mean = columns.reduce(weights, x).view(columns.rows, -1).div_(total.clamp(min=1).view(-1, 1))
            probabilities = weights.div_(total[rows])
            log_total = total.log_().add_(peak)
            ctx.save_for_backward(y, x, probabilities, mean)
            ctx.columns = columns
            return mean.view(y.shape), log_total.view(y.shape[:-1])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_mean, grad_log_total):
        with autocast_off(grad_mean.device):
            y, x, probabilities, mean = ctx.saved_tensors
            columns = ctx.columns
            rows = columns.layout.row_of_nnz
            grad_mean = grad_mean.to(mean.dtype).reshape(mean.shape)
            row_term = (grad_mean * mean).sum(-1)
            if grad_log_total is not None:
                row_term = row_term - grad_log_total.to(mean.dtype).reshape(-1)
            grad_scores = columns.sample(grad_mean, x).sub_(row_term[rows]).mul_(probabilities)
            grad_y = columns.reduce(grad_scores, x).view(y.shape)
            grad_x = columns.spread(grad_scores, y) + columns.spread(probabilities, grad_mean)
            return grad_y.to(ctx.dtypes[0]), grad_x.to(ctx.dtypes[1]), None


class AbsorbedSegmentAttention(ContextAttention):
    """``segment_attention`` without per-patch keys and values: the same result for a layer without rotary
    position on the patch keys (see the module's docstring), from the standardised context and the layer's
    (folded) projections. ``layout``: the ``SegmentLayout`` of the hard labels, shared by the layers."""

    def __init__(self, layout: SegmentLayout):
        self.layout = layout
        self.columns = SharedColumns(layout)

    def __call__(self, q, k_lat, v_lat, context, projections) -> torch.Tensor:
        """``q, k_lat, v_lat (B, K*n, H, d)``, ``context (B, N, D)``, ``projections``: the layer's key weight
        ``(H*d, D)``, key bias ``(H*d,)``, value weight and value bias -> ``(B, K*n, H, d)``."""
        batch, num_latents, heads, head_dim = q.shape
        layout = self.layout
        key_weight, key_bias, value_weight, value_bias = projections
        lat_shape = (layout.num_segments, layout.num_subtokens, heads, head_dim)
        q = q.reshape(lat_shape) * head_dim**-0.5
        k_lat, v_lat = k_lat.reshape(lat_shape), v_lat.reshape(lat_shape)
        by_head = (heads, head_dim, -1)
        q_features = torch.einsum("sihd,hdc->sihc", q, key_weight.view(by_head))
        mean, log_total = _SegmentSoftmaxMean.apply(q_features, context.reshape(-1, context.shape[-1]), self.columns)
        log_total_patches = log_total + torch.einsum("sihd,hd->sih", q, key_bias.view(heads, head_dim))
        scores_lat = torch.einsum("sihd,sjhd->sihj", q, k_lat)
        out_lat = torch.einsum("sihj,sjhd->sihd", scores_lat.softmax(-1), v_lat)
        out_patches = torch.einsum("sihc,hdc->sihd", mean, value_weight.view(by_head)) + value_bias.view(heads, head_dim)
        # The patches' share of each row's attention, from the two log-sum-exps (0 for a trajectory with no patch).
        share = torch.sigmoid(log_total_patches - scores_lat.logsumexp(-1))[..., None]
        out = torch.lerp(out_lat, out_patches.to(out_lat.dtype), share.to(out_lat.dtype))
        return out.reshape(batch, num_latents, heads, head_dim)
