"""The one LightningModule: a tokenizer and a head; the head owns the losses and metrics."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from heads.base import Head
from trajtok.optim import decay_groups, warmup_cosine
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
    ):
        super().__init__()
        if not isinstance(head, Head):
            raise TypeError(f"head must be a heads.Head, got {type(head).__name__}")
        if lr <= 0 or not 0 <= min_lr_ratio <= 1 or warmup_steps < 0:
            raise ValueError(f"bad schedule: lr={lr}, min_lr_ratio={min_lr_ratio}, warmup_steps={warmup_steps}")
        self.save_hyperparameters(ignore=["tokenizer", "head"])
        self.tokenizer = tokenizer
        self.head = head
        self.head.build(tokenizer.out_dim)

    def forward(self, video: torch.Tensor) -> TrajectoryTokens:
        return self.tokenizer(video)

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
        tokens = self.tokenizer(batch["video"])
        return self._log_losses("train", self.head.losses(tokens, batch), tokens)

    def _evaluation_step(self, stage: str, batch: dict[str, Any]) -> None:
        tokens = self.tokenizer(batch["video"])
        if "text" in batch or "label" in batch:
            self._log_losses(stage, self.head.losses(tokens, batch), tokens)
        self.head.update_metrics(tokens, batch)

    def _evaluation_epoch_end(self, stage: str) -> dict[str, float]:
        metrics = {f"{stage}/{k}": v for k, v in self.head.compute_metrics().items()}
        self.head.reset_metrics()
        if metrics:
            self.log_dict(metrics)  # already gathered across processes by the head
        return {k: float(v) for k, v in metrics.items()}

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluation_step("val", batch)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluation_step("test", batch)

    def on_validation_epoch_end(self) -> None:
        self._evaluation_epoch_end("val")

    def on_test_epoch_end(self) -> None:
        metrics = self._evaluation_epoch_end("test")
        table = retrieval_table(metrics, "test")
        if table:
            rank_zero_info(table)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> Any:
        return self.head.predict(self.tokenizer(batch["video"]), batch)

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
