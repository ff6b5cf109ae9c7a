"""The probing baselines' tokenizer: every cell of a frozen model's feature grid is a token."""

from __future__ import annotations

import torch
from torch import nn

from trajtok.tokenizer.features import FrozenVideoFeatures
from trajtok.tokens import TrajectoryTokens


class FeaturePatches(nn.Module):
    """Every cell of a frozen model's feature grid as a token: the input of linear and attentive probing.

    Returns ``TrajectoryTokens`` with all tokens valid, no assignment ``logits``, and ``labels`` giving each
    cell its own id, so every head runs on it unchanged.
    """

    def __init__(self, features: FrozenVideoFeatures):
        super().__init__()
        self.features = features

    @property
    def out_dim(self) -> int:
        return self.features.out_dim

    def forward(self, video: torch.Tensor) -> TrajectoryTokens:
        features = self.features(video)
        batch, grid = features.shape[0], tuple(features.shape[1:4])
        tokens = features.flatten(1, 3)
        ids = torch.arange(tokens.shape[1], device=tokens.device).view(1, *grid).expand(batch, -1, -1, -1)
        valid = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return TrajectoryTokens(tokens=tokens, valid=valid, logits=None, labels=ids, grid=grid)
