"""Activation recomputation for the per-patch parts of the tokenizer that are cheap to run and costly to keep."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.checkpoint import checkpoint


def recompute_in_backward(fn: Callable[..., torch.Tensor], *args: torch.Tensor, enabled: bool) -> torch.Tensor:
    """``fn(*args)``; when ``enabled`` and autograd records, its intermediate activations are not kept but
    recomputed in the backward (torch's non-reentrant activation checkpointing).

    TrajTok works on a grid 16x finer than a 16 px patch model's, so the activations of its pixel encoder
    and assignment head take most of a training step's memory at long clips, for a small share of its compute.
    """
    if enabled and torch.is_grad_enabled():
        return checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)
