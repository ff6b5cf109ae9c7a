"""Classification probes over a set of tokens: TrajAdapter's head and the linear / attentive probing baselines.

One head, three uses: over TrajAdapter's trajectory tokens (attention pooling, optionally after a few
transformer blocks), and over a frozen model's patch features as the linear probe (mean pooling, then a linear
layer) and the attentive probe (a learned query cross-attending over all patches, as in V-JEPA's evaluation).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from jsonargparse.typing import (
    ClosedUnitInterval,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
)
from torch import nn

from heads.metrics import ClassificationEvaluator
from heads.retrieval import classification_table
from heads.transformer import Transformer
from trajtok.head import Head, register_head
from trajtok.tokens import TrajectoryTokens


def masked_mean(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``(B, W)`` mean of ``x (B, L, W)`` over the positions where ``keep (B, L)`` is true."""
    weights = keep.to(x.dtype).unsqueeze(-1)
    return (x * weights).sum(1) / weights.sum(1).clamp_min(1)


class AttentionPool(nn.Module):
    """Learned queries cross-attend over the kept tokens, then a residual MLP; the queries' outputs are averaged.

    The attentive probe of V-JEPA / VideoMAE-v2 evaluation: it can pick out the few tokens that matter, which a
    mean cannot, at the cost of one attention layer.
    """

    def __init__(self, width: PositiveInt, heads: PositiveInt = 4, num_queries: PositiveInt = 1, mlp_ratio: PositiveFloat = 4.0):
        super().__init__()
        if width % heads:
            raise ValueError(f"width={width} must be divisible by heads={heads}")
        self.heads = heads
        self.queries = nn.Parameter(torch.randn(1, num_queries, width) * 0.02)
        self.norm = nn.LayerNorm(width)
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.proj = nn.Linear(width, width)
        self.norm_mlp = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """``x (B, L, W)``, ``keep (B, L)`` -> ``(B, W)``."""
        batch = x.shape[0]
        q = self.q(self.queries).expand(batch, -1, -1).unflatten(-1, (self.heads, -1)).transpose(1, 2)
        k, v = self.kv(self.norm(x)).unflatten(-1, (2, self.heads, -1)).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :])
        pooled = self.queries + self.proj(out.transpose(1, 2).flatten(2))
        pooled = pooled + self.mlp(self.norm_mlp(pooled))
        return pooled.mean(dim=1)


class MeanPool(nn.Module):
    """The mean of the kept tokens (the linear probe's pooling); no parameters."""

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        return masked_mean(x, keep)


Pooling = Literal["attention", "mean"]


@register_head("probe")
class ProbeHead(Head):
    """Tokens -> (optional transformer blocks) -> pooling -> LayerNorm -> linear classifier.

    Args:
        num_classes: the classifier's outputs; default the length of the data set's class list (given by the
            datamodule before fitting, or by ``class_names``); when both are known they must agree.
        pool: ``attention`` (learned-query cross-attention) or ``mean`` (with ``depth=0``: a linear probe).
        width: the width the tokens are projected to first; default the token width (no projection).
        depth, heads: transformer blocks over the tokens before pooling (0: none) and attention heads.
        num_queries: learned queries of the attention pooling.
        label_smoothing: of the cross-entropy.
        dropout: before the classifier.
        class_names: the names of the classes, in label order. Filled from the datamodule when unset; kept in
            the checkpoint (``get_extra_state``) so a trained probe names its predictions.
    """

    def __init__(
        self,
        num_classes: PositiveInt | None = None,
        pool: Pooling = "attention",
        width: PositiveInt | None = None,
        depth: NonNegativeInt = 0,
        heads: PositiveInt = 4,
        num_queries: PositiveInt = 1,
        label_smoothing: ClosedUnitInterval = 0.1,
        dropout: ClosedUnitInterval = 0.0,
        class_names: list[str] | None = None,
    ):
        super().__init__()
        if num_classes is not None and num_classes < 2:
            raise ValueError(f"num_classes={num_classes}: a classifier needs at least 2")
        if pool not in ("attention", "mean"):
            raise ValueError(f"pool={pool!r}: must be 'attention' or 'mean'")
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing={label_smoothing} must be in [0, 1)")
        self.num_classes = num_classes
        self.pool_kind = pool
        self.width = width
        self.depth = depth
        self.heads = heads
        self.num_queries = num_queries
        self.label_smoothing = label_smoothing
        self.dropout = nn.Dropout(dropout)
        self.class_names: list[str] | None = None
        self.classifier: nn.Linear | None = None
        self.pooled_dim: int | None = None
        self.accuracy = ClassificationEvaluator()
        if class_names is not None:
            self.set_class_names(class_names)

    def build(self, token_dim: int) -> None:
        width = self.width or token_dim
        self.token_proj = nn.Linear(token_dim, width) if width != token_dim else nn.Identity()
        self.blocks = Transformer(width, self.depth, self.heads) if self.depth else None
        self.pool = AttentionPool(width, self.heads, self.num_queries) if self.pool_kind == "attention" else MeanPool()
        self.norm = nn.LayerNorm(width)
        self.pooled_dim = width
        self._build_classifier()

    def _build_classifier(self) -> None:
        if self.classifier is None and self.num_classes is not None and self.pooled_dim is not None:
            self.classifier = nn.Linear(self.pooled_dim, self.num_classes)

    def set_class_names(self, names: list[str]) -> None:
        names = [str(n) for n in names]
        if self.num_classes is not None and len(names) != self.num_classes:
            raise ValueError(f"probe head has num_classes={self.num_classes}, the data {len(names)} classes: {names}")
        if self.class_names is not None and self.class_names != names:
            raise ValueError(f"class names differ: the head has {self.class_names}, the data {names}")
        self.class_names = names
        self.num_classes = len(names)
        self._build_classifier()

    def get_extra_state(self) -> dict[str, Any]:
        return {"class_names": self.class_names}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        if state.get("class_names") is not None:
            self.class_names = None  # the checkpoint's mapping is the one the weights were trained with
            self.set_class_names(state["class_names"])

    def classify(self, tokens: TrajectoryTokens) -> torch.Tensor:
        """``(B, num_classes)`` logits; invalid tokens are masked out of attention and pooling."""
        if self.classifier is None:
            raise ValueError(
                "the probe head does not know its number of classes: set model.head.init_args.num_classes or "
                "class_names, or use a datamodule with a class list"
            )
        x = self.token_proj(tokens.tokens)
        if self.blocks is not None:
            x = self.blocks(x, tokens.valid, tokens.sizes)
        return self.classifier(self.dropout(self.norm(self.pool(x, tokens.valid))))

    def encode_example(self, tokens: TrajectoryTokens) -> torch.Tensor | None:
        return self.classify(tokens) if self.classifier is not None else None

    def losses(self, tokens: TrajectoryTokens, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        logits = self.classify(tokens)
        return {"ce": F.cross_entropy(logits.float(), batch["label"], label_smoothing=self.label_smoothing)}

    def update_metrics(self, tokens: TrajectoryTokens, batch: dict[str, Any]) -> None:
        if "label" in batch:
            self.accuracy.update(self.classify(tokens), batch["label"], batch["index"])

    def compute_metrics(self) -> dict[str, torch.Tensor]:
        return self.accuracy.compute() if self.accuracy.update_count else {}

    def summary(self, metrics: dict[str, float], stage: str) -> str:
        return classification_table(metrics, stage)

    def reset_metrics(self) -> None:
        self.accuracy.reset()

    def predict(self, tokens: TrajectoryTokens, batch: dict[str, Any]) -> dict[str, Any]:
        probs = self.classify(tokens).float().softmax(dim=-1)
        top = probs.argmax(dim=-1)
        out = {"index": batch["index"], "probs": probs, "pred": top, "num_tokens": tokens.num_valid}
        if self.class_names is not None:
            out["pred_name"] = [self.class_names[i] for i in top.tolist()]
        return out
