"""Activation recomputation for the per-patch parts of the tokenizer that are cheap to run and costly to keep."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from jsonargparse.typing import NonNegativeInt
from torch.utils.checkpoint import checkpoint

#: When to recompute: ``True`` always, ``False`` never, a number when a batch holds at least that many patches
#: (positions of the 1/4-resolution grid, over all its clips and frames).
RecomputePolicy = bool | NonNegativeInt


def recomputes(policy: RecomputePolicy, patches: int) -> bool:
    """Whether a batch of ``patches`` patches is recomputed under ``policy``. A patch budget keeps the
    activations of small batches, whose memory is small, and so their speed: recomputation re-runs the pixel
    encoder and the per-patch MLPs in the backward, a cost paid for nothing where memory does not bind (a
    training step's time and peak memory: ``python -m benchmarks.speed --steps train``)."""
    if isinstance(policy, bool):
        return policy
    return patches >= policy


def recompute_in_backward(fn: Callable[..., torch.Tensor], *args: Any, enabled: bool) -> torch.Tensor:
    """``fn(*args)``; when ``enabled`` and autograd records, its intermediate activations are not kept but
    recomputed in the backward (torch's non-reentrant activation checkpointing).

    TrajTok works on a grid 16x finer than a 16 px patch model's, so the activations of its pixel encoder
    and assignment head take most of a training step's memory at long clips, for a small share of its compute.
    """
    if enabled and torch.is_grad_enabled():
        return checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)
