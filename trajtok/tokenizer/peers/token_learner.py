"""A fixed-K learned pooling peer in the style of TokenLearner (Ryoo et al., NeurIPS 2021)."""

from __future__ import annotations

import torch
from jsonargparse.typing import PositiveInt
from torch import nn

from trajtok.tokenizer.peers.tubelets import TUBELETS, TubeletTokenizer
from trajtok.tokenizer.registry import register_tokenizer
from trajtok.tokens import TrajectoryTokens

#: As many tokens at each scale as TrajTok has slots (K) there: the fixed-K peer of a content-adaptive count.
NUM_TOKENS = {"tiny": 32, "small": 64, "base": 128, "large": 128}


@register_tokenizer("token_learner", sizes={s: {**TUBELETS[s], "num_tokens": NUM_TOKENS[s]} for s in TUBELETS})
class TokenLearner(TubeletTokenizer):
    """``num_tokens`` learned attention maps over all tubelets of the clip, each pooling one token.

    The fixed-K counterpart of TrajTok: as few tokens, but a learned soft pooling with no notion of objects,
    and K tokens whatever the content. An MLP scores every tubelet for each of the K maps; a softmax over the
    clip's tubelets makes each map a weighted mean. Every token is valid; ``labels`` give each tubelet the
    token whose map weights it most (a read-out for visualisation, not a partition the model uses).

    Args:
        dim, patch_size, tubelet_frames, image_size, max_frames: the tubelets (see ``TubeletEmbedding``).
        num_tokens: K.
        hidden: width of the scoring MLP (default ``dim``).
    """

    def __init__(self, dim: PositiveInt = 768, num_tokens: PositiveInt = 128, hidden: int | None = None, patch_size: PositiveInt = 16,
                 tubelet_frames: PositiveInt = 2, image_size: PositiveInt = 224, max_frames: PositiveInt = 64):
        super().__init__(dim, patch_size, tubelet_frames, image_size, max_frames)
        if num_tokens < 1:
            raise ValueError(f"num_tokens={num_tokens} must be positive")
        hidden = hidden or dim
        self.score = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, num_tokens))
        self.norm = nn.LayerNorm(dim)

    def forward(self, video: torch.Tensor) -> TrajectoryTokens:
        embedded = self.embed(video)
        batch, grid = embedded.shape[0], tuple(embedded.shape[1:4])
        x = embedded.flatten(1, 3)
        weights = self.score(x).softmax(dim=1)  # (B, N, K): each map sums to one over the tubelets
        tokens = self.norm(weights.transpose(1, 2) @ x)
        valid = torch.ones(tokens.shape[:2], dtype=torch.bool, device=x.device)
        return TrajectoryTokens(tokens, valid, None, weights.argmax(dim=-1).view(batch, *grid), grid)
