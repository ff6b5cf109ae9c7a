"""The CLIP objective: symmetric InfoNCE over the global batch, and its learnable temperature.

Follows open_clip's ``ClipLoss`` with ``local_loss=True, gather_with_grad=True``: each rank scores its own
rows against the features of every rank. See :func:`clip_loss` for why this and not the full gathered matrix.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as funcol
import torch.nn.functional as F
from jsonargparse.typing import PositiveFloat
from torch import Tensor, nn


def _world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group; ``(0, 1)`` when not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` from every rank along dim 0, in rank order, keeping the autograd graph.

    A differentiable all-gather (not ``dist.all_gather``, which cuts the graph), so that the backward pass
    sums, onto each rank's own ``x``, the gradients that every rank computed for it: other ranks' losses
    use this rank's features as negatives. Identity when not distributed (or a world of one).

    ``funcol.all_gather_single`` is what torch 2.13 names as the replacement for the deprecated
    ``torch.distributed.nn.functional.all_gather`` (which also refuses ``torch.compile``); its backward
    is a reduce-scatter (sum), and it works on gloo as well as NCCL.

    Every rank must pass the same shape (a ``DistributedSampler`` pads to equal shards; drop or pad a
    ragged last batch) and every rank must call backward, as under DDP.
    """
    _, world_size = _world()
    if world_size == 1:
        return x
    return funcol.all_gather_single(x, 0, dist.group.WORLD)


def clip_loss(video_emb: Tensor, text_emb: Tensor, logit_scale: Tensor, gather: bool = True) -> Tensor:
    """Symmetric InfoNCE between paired ``(B, D)`` video and text embeddings; row ``i`` pairs with row ``i``.

    The embeddings must already be L2-normalised (the head needs them normalised for retrieval anyway);
    ``logit_scale`` is the multiplier (``1 / temperature``, e.g. :class:`LogitScale` output), not its log.

    With ``gather`` under torch.distributed, the negatives are the whole global batch: this rank's
    ``B`` rows are scored against all ``W * B`` gathered columns, with labels offset by ``rank * B``,
    and the result is the mean of the video->text and text->video cross-entropies over the local rows.

    Why local rows against gathered columns (open_clip's ``local_loss``) rather than every rank building
    the full ``(W B, W B)`` matrix: both give exactly the single-process gradient after DDP's gradient
    averaging, but this one costs ``B x WB`` instead of ``WB x WB`` per rank. The argument: the single-
    process loss is ``L = mean_r L_r``, ``L_r`` this rank's local loss. Rank ``r`` gets
    ``dL_r/dx_r`` directly plus, through the all-gather backward, ``sum_s dL_s/dx_r``; in total
    ``sum_s dL_s/dx_r = W dL/dx_r``. DDP averages parameter gradients over ranks, dividing by ``W``,
    which leaves ``dL/dtheta`` exactly. (``logit_scale`` gets ``dL_r/ds`` per rank; the average is
    ``dL/ds``.)

    The returned value is this rank's ``L_r``; its mean over ranks (Lightning ``sync_dist=True``) is
    the global-batch loss. Every rank must use the same local batch size.
    """
    if video_emb.shape != text_emb.shape or video_emb.ndim != 2:
        raise ValueError(f"expected two (B, D) tensors of one shape, got {video_emb.shape}, {text_emb.shape}")
    rank, world_size = _world()
    if gather and world_size > 1:
        all_video, all_text = gather_with_grad(video_emb), gather_with_grad(text_emb)
        offset = rank * video_emb.shape[0]
    else:
        all_video, all_text, offset = video_emb, text_emb, 0
    labels = torch.arange(video_emb.shape[0], device=video_emb.device) + offset
    logits_v2t = logit_scale * video_emb @ all_text.T
    logits_t2v = logit_scale * text_emb @ all_video.T
    return (F.cross_entropy(logits_v2t, labels) + F.cross_entropy(logits_t2v, labels)) / 2


class LogitScale(nn.Module):
    """The learnable inverse temperature of the contrastive logits.

    Stored as ``log(1 / temperature)`` so that the optimiser steps are multiplicative and the scale stays
    positive; initialised at temperature 0.07 (scale ~14.3), as CLIP. Clamped so that the temperature stays
    in ``[min_temperature, max_temperature]`` (defaults ``[0.001, 0.5]``, i.e. scale in ``[2, 1000]``, the
    TrajViT2 / ALBEF range): too low a temperature makes the softmax one-hot and training unstable.

    The clamp is applied in place to the parameter (under ``no_grad``, at each forward), as ALBEF does,
    not only to the output: a clamp on the output alone would give the parameter zero gradient once it
    crossed a bound, and Adam's momentum could carry it further out with nothing to bring it back.
    Exclude ``log_scale`` from weight decay.

    Args:
        init_temperature: starting temperature.
        min_temperature: lower bound on the temperature (upper bound on the scale).
        max_temperature: upper bound on the temperature (lower bound on the scale).
        learnable: if false, the scale stays at ``1 / init_temperature``.
    """

    def __init__(
        self,
        init_temperature: PositiveFloat = 0.07,
        min_temperature: PositiveFloat = 0.001,
        max_temperature: PositiveFloat = 0.5,
        learnable: bool = True,
    ) -> None:
        super().__init__()
        if not 0 < min_temperature <= init_temperature <= max_temperature:
            raise ValueError("need 0 < min_temperature <= init_temperature <= max_temperature")
        self.min_log_scale = math.log(1 / max_temperature)
        self.max_log_scale = math.log(1 / min_temperature)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / init_temperature)), requires_grad=learnable)

    def forward(self) -> Tensor:
        """The scale ``1 / temperature``, a 0-d tensor."""
        with torch.no_grad():
            self.log_scale.clamp_(self.min_log_scale, self.max_log_scale)
        return self.log_scale.exp()

    @property
    def temperature(self) -> float:
        """The current temperature, for logging."""
        return math.exp(-min(max(self.log_scale.item(), self.min_log_scale), self.max_log_scale))

    def extra_repr(self) -> str:
        low, high = math.exp(-self.max_log_scale), math.exp(-self.min_log_scale)
        return f"temperature={self.temperature:.4g}, range=[{low:g}, {high:g}]"
