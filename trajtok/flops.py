"""Exact FLOP counts with ``torch.utils.flop_counter.FlopCounterMode``, corrected where torch 2.13 miscounts.

FLOPs here are 2 x multiply-adds of the matmul-like ops (linear, conv, bmm, SDPA, sparse mm); elementwise ops,
norms, softmax, gathers and scatters are not counted, as in every published FLOP table. Counting on ``meta``
tensors gives the same numbers without doing the work, so paper-scale models are counted on a laptop.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.flop_counter import (
    FlopCounterMode,
    conv_flop_count,
    sdpa_backward_flop_count,
    sdpa_flop_count,
)

aten = torch.ops.aten


def _raw(formula):
    formula._get_raw = True  # FlopCounterMode then passes the tensors themselves, not their shapes
    return formula


@_raw
def _mm_flops(a, b, *args, out_val=None, **kwargs) -> int:
    if a.layout == torch.sparse_csr:  # stock counts a sparse matrix as if it were dense
        return 2 * a._nnz() * b.shape[1]
    return 2 * a.shape[0] * a.shape[1] * b.shape[1]


@_raw
def _sampled_addmm_flops(pattern, mat1, mat2, *args, out_val=None, **kwargs) -> int:
    return 2 * pattern._nnz() * mat1.shape[1]


@_raw
def _cpu_sdpa_flops(q, k, v, *args, out_val=None, **kwargs) -> int:
    return sdpa_flop_count(q.shape, k.shape, v.shape)


@_raw
def _cpu_sdpa_backward_flops(grad, q, k, v, *args, out_val=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad.shape, q.shape, k.shape, v.shape)


@_raw
def _conv_backward_flops(grad_out, x, w, _bias, _stride, _padding, _dilation, transposed, _output_padding, _groups,
                         output_mask, *args, out_val=None, **kwargs) -> int:
    flops = 0
    if output_mask[0]:  # grad_input: a (transposed) convolution of grad_out with the weight, as stock counts it
        flops += conv_flop_count(grad_out.shape, w.shape, out_val[0].shape, not transposed)
    if output_mask[1]:  # grad_weight: as many multiply-adds as the forward convolution
        flops += conv_flop_count(x.shape, w.shape, grad_out.shape, transposed)
    return flops


#: What stock ``FlopCounterMode`` (torch 2.13) gets wrong: it has no formula for the CPU flash-attention kernels
#: (SDPA on CPU, the fused fast path every attention here takes, counts 0), none for ``sparse_sampled_addmm``
#: (0), it counts a CSR @ dense matmul as the dense matmul of the same shape, and its convolution backward
#: ignores ``groups`` in the weight gradient (a depthwise convolution counted C times over).
CORRECTED_FLOPS = {
    aten.convolution_backward: _conv_backward_flops,
    aten.mm: _mm_flops,
    aten.sparse_sampled_addmm: _sampled_addmm_flops,
    aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward_flops,
}


def count_flops(fn: Callable[[], object], corrected: bool = True) -> int:
    """FLOPs of everything ``fn()`` runs (forward, and backward if it calls it)."""
    with FlopCounterMode(display=False, custom_mapping=CORRECTED_FLOPS if corrected else None) as counter:
        fn()
    return counter.get_total_flops()


def count_flops_by_module(fn: Callable[[], object]) -> tuple[int, dict[str, int]]:
    """Total FLOPs of ``fn()`` and those of each direct child of the outermost module it calls (by name)."""
    with FlopCounterMode(display=False, custom_mapping=CORRECTED_FLOPS) as counter:
        fn()
    children = {}
    for name, ops in counter.get_flop_counts().items():
        if name.count(".") == 1:
            children[name.split(".", 1)[1]] = sum(ops.values())
    return counter.get_total_flops(), children
