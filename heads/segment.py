"""Segmenter pre-training: a head with no objective of its own."""

from __future__ import annotations

from typing import Any

import torch

from trajtok.head import Head, register_head
from trajtok.tokens import TrajectoryTokens


@register_head("segment")
class SegmentHead(Head):
    """Pre-trains the tokenizer's segmenter alone (``configs/segmenter.yaml``).

    The training signal is the module's segmentation loss on pseudo-label trajectories (``model.segmentation``
    with ``load_pseudo_labels: true``); this head adds no loss and no metric (the module logs segmentation
    quality), and reads no token features, so the trajectory encoder is skipped. ``predict`` returns each clip's
    hard trajectory map.
    """

    needs_tokens = False

    def losses(self, tokens: TrajectoryTokens, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {}

    def predict(self, tokens: TrajectoryTokens, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {"index": batch["index"], "labels": tokens.labels, "num_tokens": tokens.num_valid}
