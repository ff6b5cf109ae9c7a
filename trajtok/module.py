"""The one LightningModule: a tokenizer and a head; the head owns its losses and metrics, the module adds the
tokenizer-side segmentation loss and metrics when the batch carries pseudo-labels."""

from __future__ import annotations

import inspect
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from heads.base import Head
from trajtok.callbacks import BadSampleReport
from trajtok.checkpoint import load_tokenizer_weights
from trajtok.optim import decay_groups, warmup_cosine
from trajtok.segmentation import (
    SegmentationLoss,
    SegmentationQuality,
    has_labels,
    segmentation_inputs,
)
from trajtok.tokens import TrajectoryTokens


class TrajTokModule(L.LightningModule):
    """Tokenizer + head, trained together.

    Args:
        tokenizer: any module mapping ``video (B, T, 3, H, W)`` to ``TrajectoryTokens`` (TrajTok or a
            baseline tokenizer).
        head: the task (``heads.ClipHead``, ...).
        lr, weight_decay, betas: AdamW.
        warmup_steps: linear warm-up; a value below 1 is a fraction of all training steps.
        min_lr_ratio: the cosine schedule ends at ``lr * min_lr_ratio``.
        segmentation: the Hungarian-matched Dice + focal loss on the tokenizer's assignment, added to the head's
            losses in training and evaluation for batches that carry ``mask`` / ``graph`` (skipped for others).
            Segmentation quality (``seg_miou``, ``seg_found``, ...) is logged in validation / test whenever the
            batches carry labels, with or without this loss.
        tokenizer_checkpoint: a Lightning checkpoint (e.g. of ``configs/segmenter.yaml``) whose ``tokenizer.*``
            weights initialise the tokenizer; shapes must match exactly.
    """

    def __init__(
        self,
        tokenizer: nn.Module,
        head: Head,
        lr: float = 1e-3,
        weight_decay: float = 0.02,
        betas: tuple[float, float] = (0.9, 0.98),
        warmup_steps: float = 0.05,
        min_lr_ratio: float = 0.01,
        segmentation: SegmentationLoss | None = None,
        tokenizer_checkpoint: str | None = None,
    ):
        super().__init__()
        if not isinstance(head, Head):
            raise TypeError(f"head must be a heads.Head, got {type(head).__name__}")
        if lr <= 0 or not 0 <= min_lr_ratio <= 1 or warmup_steps < 0:
            raise ValueError(f"bad schedule: lr={lr}, min_lr_ratio={min_lr_ratio}, warmup_steps={warmup_steps}")
        self.save_hyperparameters(ignore=["tokenizer", "head", "segmentation"])
        self.tokenizer = tokenizer
        self.head = head
        self.head.build(tokenizer.out_dim)
        self.segmentation = segmentation
        self.segmentation_quality = SegmentationQuality()
        if tokenizer_checkpoint is not None:
            load_tokenizer_weights(self.tokenizer, tokenizer_checkpoint)
        # A head that never reads token features lets a tokenizer that can skip its trajectory encoder do so.
        skip = not head.needs_tokens and "encode" in inspect.signature(tokenizer.forward).parameters
        self._tokenize_kwargs = {"encode": False} if skip else {}

    def setup(self, stage: str) -> None:
        """Hand the datamodule's class list (classification data) to the head, which checks or adopts it."""
        class_names = getattr(self.trainer.datamodule, "class_names", None) if self._trainer else None
        if class_names:
            self.head.set_class_names(list(class_names))

    def configure_callbacks(self) -> list[L.Callback]:
        """A ``BadSampleReport`` (the samples data sets skipped, logged and warned about per epoch), unless the
        trainer was given one (with its own settings)."""
        if self._trainer is not None and any(isinstance(c, BadSampleReport) for c in self.trainer.callbacks):
            return []
        return [BadSampleReport()]

    def forward(self, video: torch.Tensor) -> TrajectoryTokens:
        return self.tokenizer(video, **self._tokenize_kwargs)

    def segmentation_losses(self, tokens: TrajectoryTokens, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The weighted segmentation terms, or ``{}`` without a segmentation loss or without labels."""
        if self.segmentation is None or not has_labels(batch):
            return {}
        return self.segmentation(*segmentation_inputs(tokens, batch["mask"], batch["graph"]))

    def losses(self, tokens: TrajectoryTokens, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The head's named losses and the segmentation terms; the training loss is their sum."""
        losses = dict(self.head.losses(tokens, batch))
        segmentation = self.segmentation_losses(tokens, batch)
        if segmentation.keys() & losses.keys():
            raise ValueError(f"head {self.head.name!r} returns losses named like the segmentation terms: "
                             f"{sorted(segmentation.keys() & losses.keys())}")
        losses.update(segmentation)
        return losses

    def _log_losses(self, stage: str, losses: dict[str, torch.Tensor], tokens: TrajectoryTokens) -> torch.Tensor:
        batch_size = tokens.tokens.shape[0]
        total = torch.stack(list(losses.values())).sum()
        sync = stage != "train"
        self.log(f"{stage}/loss", total, prog_bar=True, batch_size=batch_size, sync_dist=sync)
        if len(losses) > 1:
            self.log_dict({f"{stage}/{k}": v for k, v in losses.items()}, batch_size=batch_size, sync_dist=sync)
        self.log(f"{stage}/tokens", tokens.num_valid.float().mean(), batch_size=batch_size, sync_dist=sync)
        return total

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        tokens = self(batch["video"])
        losses = self.losses(tokens, batch)
        if not losses:
            raise ValueError(
                f"nothing to train on: head {self.head.name!r} has no loss of its own, and the segmentation loss "
                f"needs model.segmentation {'(unset) ' if self.segmentation is None else ''}and batches with "
                "'mask' / 'graph' (data load_pseudo_labels: true)"
            )
        return self._log_losses("train", losses, tokens)

    def _evaluation_step(self, stage: str, batch: dict[str, Any]) -> None:
        tokens = self(batch["video"])
        if "text" in batch or "label" in batch:
            losses = self.losses(tokens, batch)
        else:
            losses = self.segmentation_losses(tokens, batch)
        if losses:
            self._log_losses(stage, losses, tokens)
        self.head.update_metrics(tokens, batch)
        if has_labels(batch) and tokens.logits is not None:
            self.segmentation_quality.update(*segmentation_inputs(tokens, batch["mask"], batch["graph"]))

    def _evaluation_epoch_end(self, stage: str) -> dict[str, float]:
        metrics = {f"{stage}/{k}": v for k, v in self.head.compute_metrics().items()}
        self.head.reset_metrics()
        if self.segmentation_quality.update_count:
            metrics.update({f"{stage}/{k}": v for k, v in self.segmentation_quality.compute().items()})
        self.segmentation_quality.reset()
        if metrics:
            self.log_dict(metrics)  # already gathered across processes (the head, SegmentationQuality)
        return {k: float(v) for k, v in metrics.items()}

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluation_step("val", batch)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluation_step("test", batch)

    def on_validation_epoch_end(self) -> None:
        self._evaluation_epoch_end("val")

    def on_test_epoch_end(self) -> None:
        metrics = self._evaluation_epoch_end("test")
        for table in (retrieval_table(metrics, "test"), classification_table(metrics, "test")):
            if table:
                rank_zero_info(table)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> Any:
        return self.head.predict(self(batch["video"]), batch)

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = torch.optim.AdamW(decay_groups(self, hp.weight_decay), lr=hp.lr, betas=tuple(hp.betas))
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(hp.warmup_steps * total) if hp.warmup_steps < 1 else int(hp.warmup_steps)
        warmup = max(1, min(warmup, total))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine(step, warmup, total, hp.min_lr_ratio)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def retrieval_table(metrics: dict[str, float], stage: str) -> str:
    """A text table of t2v / v2t recall and ranks, or ``""`` when there are no retrieval metrics."""
    columns = [("R@1", "r1"), ("R@5", "r5"), ("R@10", "r10"), ("MdR", "medr"), ("MnR", "meanr")]
    rows = []
    for direction in ("t2v", "v2t"):
        keys = [f"{stage}/{direction}_{suffix}" for _, suffix in columns]
        if all(k in metrics for k in keys):
            rows.append(f"{direction:<6}" + "".join(f"{metrics[k]:>9.2f}" for k in keys))
    if not rows:
        return ""
    header = f"{'':<6}" + "".join(f"{name:>9}" for name, _ in columns)
    return "\n".join(["Retrieval (" + stage + ")", header, *rows])


def classification_table(metrics: dict[str, float], stage: str) -> str:
    """A one-line top-1 / top-5 accuracy summary, or ``""`` when there are no classification metrics."""
    keys = [f"{stage}/top1", f"{stage}/top5"]
    if not all(k in metrics for k in keys):
        return ""
    return f"Classification ({stage}): top-1 {metrics[keys[0]]:.2f}  top-5 {metrics[keys[1]]:.2f}"
