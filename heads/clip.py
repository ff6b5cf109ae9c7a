"""TrajViT2's head: a video transformer over trajectory tokens, a text encoder, and the CLIP objective."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from jsonargparse.typing import NonNegativeInt, PositiveFloat, PositiveInt
from torch import nn

from heads.contrastive import LogitScale, clip_loss
from heads.metrics import ClassificationEvaluator, RetrievalEvaluator
from heads.retrieval import (
    VIDEO_TEMPLATES,
    classification_table,
    retrieval_table,
    zero_shot_weights,
)
from heads.text_encoders import ByteTextEncoder, TextEncoder
from heads.transformer import Transformer
from trajtok.head import Head, register_head
from trajtok.tokens import TrajectoryTokens


@register_head("clip")
class ClipHead(Head):
    """TrajViT2: [CLS] + trajectory tokens through a transformer, contrasted with a text encoder.

    Args:
        width, depth, heads: the video transformer (no positional embedding: tokens are a set; position
            and motion live inside each trajectory token).
        embed_dim: the shared video-text embedding width.
        text_encoder: any module mapping ``list[str]`` to ``(B, out_dim)``; default a byte-level transformer.
        init_temperature: starting softmax temperature of the contrastive logits (learnable, clamped).
        classnames: class names for zero-shot classification when evaluation batches carry ``label``.
        templates: prompt templates for the zero-shot ensemble (``{}`` is the class name).
        mask_invalid: the transformer's attention skips empty trajectory slots. Off, the [CLS] and every token
            attend to all K slots, empty ones included: what the released TrajViT-v2 computes (its attention path
            drops the key-padding mask), so its weights need it off.
        proj_bias: the video and text projections into the shared space have biases (the released model's).
        block_norm_eps: epsilon of the transformer blocks' LayerNorms (the released model's transformers ViT: 1e-12).
    """

    def __init__(
        self,
        width: PositiveInt = 192,
        depth: NonNegativeInt = 4,
        heads: PositiveInt = 4,
        embed_dim: PositiveInt = 128,
        text_encoder: TextEncoder | None = None,
        init_temperature: PositiveFloat = 0.07,
        classnames: list[str] | None = None,
        templates: list[str] | None = None,
        mask_invalid: bool = True,
        proj_bias: bool = False,
        block_norm_eps: PositiveFloat = 1e-5,
    ):
        super().__init__()
        self.width = width
        self.mask_invalid = mask_invalid
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        self.transformer = Transformer(width, depth, heads, norm_eps=block_norm_eps)
        self.video_proj = nn.Linear(width, embed_dim, bias=proj_bias)
        self.text_encoder = text_encoder if text_encoder is not None else ByteTextEncoder()
        self.text_proj = nn.Linear(self.text_encoder.out_dim, embed_dim, bias=proj_bias)
        self.logit_scale = LogitScale(init_temperature)
        self.classnames = classnames
        self.templates = templates or list(VIDEO_TEMPLATES)
        self.token_proj: nn.Module = nn.Identity()
        self.retrieval = RetrievalEvaluator()
        self.zero_shot = ClassificationEvaluator(prefix="zeroshot_")
        self._class_weights: torch.Tensor | None = None  # text embeddings of the classes, once per epoch

    def build(self, token_dim: int) -> None:
        if token_dim != self.width:
            self.token_proj = nn.Linear(token_dim, self.width)

    def encode_video(self, tokens: TrajectoryTokens) -> torch.Tensor:
        """``(B, embed_dim)`` L2-normalised video embeddings; invalid trajectory slots are key-padded, merged
        tokens (``tokens.sizes``) weighted by their size."""
        x = self.token_proj(tokens.tokens)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
        keep = F.pad(tokens.valid, (1, 0), value=True) if self.mask_invalid else None
        sizes = None if tokens.sizes is None else F.pad(tokens.sizes, (1, 0), value=1.0)  # [CLS] stands for itself
        return F.normalize(self.video_proj(self.transformer(x, keep, sizes)[:, 0]), dim=-1)

    def encode_example(self, tokens: TrajectoryTokens) -> torch.Tensor:
        return self.encode_video(tokens)  # the text tower's cost does not depend on the video

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """``(len(texts), embed_dim)`` L2-normalised text embeddings."""
        return F.normalize(self.text_proj(self.text_encoder(texts)), dim=-1)

    def losses(self, tokens: TrajectoryTokens, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        if "text" not in batch:
            if self.training:
                raise ValueError("the CLIP head trains on captioned clips, but the batch has no 'text'")
            return {}  # zero-shot evaluation of labelled clips: no captions to contrast with
        video = self.encode_video(tokens)
        text = self.encode_text(batch["text"])
        return {"contrastive": clip_loss(video, text, self.logit_scale())}

    def update_metrics(self, tokens: TrajectoryTokens, batch: dict[str, Any]) -> None:
        video = self.encode_video(tokens)
        if "captions" in batch:
            captions = batch["captions"]
            counts = torch.tensor([len(c) for c in captions], device=video.device)
            texts = [caption for clip in captions for caption in clip]
            text_video_index = batch["index"].repeat_interleave(counts)
            # Each caption's position among its clip's captions: its flat index minus its clip's first one.
            first = (counts.cumsum(0) - counts).repeat_interleave(counts)
            position = torch.arange(len(texts), device=video.device) - first
            self.retrieval.update(video, batch["index"], self.encode_text(texts), text_video_index, position)
        if "label" in batch and self.classnames:
            if self._class_weights is None:
                self._class_weights = zero_shot_weights(self.encode_text, self.classnames, self.templates)
            self.zero_shot.update(video @ self._class_weights.T, batch["label"], batch["index"])

    def set_class_names(self, names: list[str]) -> None:
        """Classification data names its classes: use them for zero-shot unless the config gave others."""
        if self.classnames is None:
            self.classnames = list(names)

    def compute_metrics(self) -> dict[str, torch.Tensor]:
        metrics = {}
        if self.retrieval.update_count:
            metrics.update(self.retrieval.compute())
        if self.zero_shot.update_count:
            metrics.update(self.zero_shot.compute())
        return metrics

    def summary(self, metrics: dict[str, float], stage: str) -> str:
        """The retrieval table and, for classification data, the zero-shot accuracy line."""
        return "\n".join(filter(None, [retrieval_table(metrics, stage), classification_table(metrics, stage)]))

    def reset_metrics(self) -> None:
        self.retrieval.reset()
        self.zero_shot.reset()
        self._class_weights = None

    def predict(self, tokens: TrajectoryTokens, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {"index": batch["index"], "video_embedding": self.encode_video(tokens), "num_tokens": tokens.num_valid}
