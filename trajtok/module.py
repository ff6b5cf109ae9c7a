"""The one LightningModule: a tokenizer and a head; the head owns its losses and metrics, the module adds the
tokenizer-side segmentation loss and metrics when the batch carries pseudo-labels."""

from __future__ import annotations

import inspect
from typing import Any

import lightning as L
import torch
from jsonargparse.typing import (
    ClosedUnitInterval,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
)
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from trajtok.batches import batch_sources
from trajtok.callbacks import BadSampleReport, NonFiniteSteps, any_process
from trajtok.checkpoint import load_tokenizer_weights
from trajtok.head import Head
from trajtok.optim import decay_groups, warmup_cosine
from trajtok.seeding import EpochSeeding
from trajtok.segmentation import (
    SegmentationLoss,
    SegmentationQuality,
    has_labels,
    segmentation_inputs,
    segmentation_table,
)
from trajtok.segmentation.video_quality import (
    VideoSegmentationQuality,
    video_segmentation_table,
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
        max_nonfinite_steps: a training step whose loss or gradients are not finite (NaN / inf) changes no weight
            and no optimizer state: it is skipped, warned about, and counted in ``train/nonfinite_steps``
            (``trajtok.callbacks.NonFiniteSteps``, added as a callback). Training stops with a ``RuntimeError``
            when more steps than this have been skipped (0: at the first).

    Reproducible epochs: when a global seed is set (``seed_everything`` in the yaml), each training epoch starts
    by reseeding from ``(seed, epoch, global rank)`` (``trajtok.seeding.EpochSeeding``, added as a callback), so
    resuming from an end-of-epoch checkpoint replays exactly the epochs an uninterrupted run would have (docs/training.md
    "Resuming").
    """

    def __init__(
        self,
        tokenizer: nn.Module,
        head: Head,
        lr: PositiveFloat = 1e-3,
        weight_decay: NonNegativeFloat = 0.02,
        betas: tuple[float, float] = (0.9, 0.98),
        warmup_steps: NonNegativeFloat = 0.05,
        min_lr_ratio: ClosedUnitInterval = 0.01,
        segmentation: SegmentationLoss | None = None,
        tokenizer_checkpoint: str | None = None,
        max_nonfinite_steps: NonNegativeInt = 10,
    ):
        super().__init__()
        if not isinstance(head, Head):
            raise TypeError(f"head must be a heads.Head, got {type(head).__name__}")
        if lr <= 0 or not 0 <= min_lr_ratio <= 1 or warmup_steps < 0:
            raise ValueError(f"bad schedule: lr={lr}, min_lr_ratio={min_lr_ratio}, warmup_steps={warmup_steps}")
        if max_nonfinite_steps < 0:
            raise ValueError(f"max_nonfinite_steps={max_nonfinite_steps} must be >= 0")
        # max_nonfinite_steps is a run policy, not part of the model: kept out of hparams so that a resumed fit
        # takes it from the command line (Lightning's CLI lays a checkpoint's hparams over the config).
        self.save_hyperparameters(ignore=["tokenizer", "head", "segmentation", "max_nonfinite_steps"])
        self.max_nonfinite_steps = max_nonfinite_steps
        self.tokenizer = tokenizer
        self.head = head
        self.head.build(tokenizer.out_dim)
        self.segmentation = segmentation
        self.segmentation_quality = SegmentationQuality()
        self.vos_quality = VideoSegmentationQuality()  # VEQ / STQ_EN of batches with vos_mask
        if tokenizer_checkpoint is not None:
            load_tokenizer_weights(self.tokenizer, tokenizer_checkpoint)
        # A head that never reads token features lets a tokenizer that can skip its trajectory encoder do so.
        skip = not head.needs_tokens and "encode" in inspect.signature(tokenizer.forward).parameters
        self._tokenize_kwargs = {"encode": False} if skip else {}
        self.empty_batches = 0  # training batches whose samples were all skipped as unusable
        self._empty_step = False  # under DDP an empty batch still runs backward: its gradients are dropped

    def setup(self, stage: str) -> None:
        """Hand the datamodule's class list (classification data) to the head, which checks or adopts it, and its
        question types (QA data whose rows name them), by which the head also scores; and take an example clip of the
        datamodule's size for the model summary."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        class_names = getattr(datamodule, "class_names", None)
        if class_names:
            self.head.set_class_names(list(class_names))
        question_types = getattr(datamodule, "question_types", None)
        if question_types:
            self.head.set_question_types(list(question_types))
        clip = getattr(datamodule, "clip", None)  # the datamodule's ClipOptions; image data has no num_frames
        frames, size = getattr(clip, "num_frames", None), getattr(clip, "image_size", None)
        if self.example_input_array is None and isinstance(frames, int) and isinstance(size, int):
            # Lightning's model summary runs this through forward (with the head) and shows each part's FLOPs.
            self.example_input_array = {"video": torch.zeros(1, frames, 3, size, size), "with_head": True}

    def configure_callbacks(self) -> list[L.Callback]:
        """``EpochSeeding`` (reproducible epochs, see the class docstring), a ``BadSampleReport`` (the samples
        data sets skipped, logged and warned about per epoch) and ``NonFiniteSteps`` (at
        ``max_nonfinite_steps``), each unless the trainer was given one."""
        given = self.trainer.callbacks if self._trainer is not None else []
        defaults = {EpochSeeding: EpochSeeding, BadSampleReport: BadSampleReport,
                    NonFiniteSteps: lambda: NonFiniteSteps(self.max_nonfinite_steps)}
        return [build() for callback, build in defaults.items() if not any(isinstance(c, callback) for c in given)]

    def forward(self, video: torch.Tensor, with_head: bool = False) -> TrajectoryTokens:
        """The tokens of ``video``; ``with_head`` also runs the head's per-clip work (``Head.encode_example``),
        which is how the model summary counts the head's FLOPs."""
        tokens = self.tokenizer(video, **self._tokenize_kwargs)
        if with_head:
            self.head(tokens)
        return tokens

    def segmentation_losses(self, tokens: TrajectoryTokens, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The weighted segmentation terms, or ``{}`` without a segmentation loss or without labels."""
        if self.segmentation is None or not has_labels(batch):
            return {}
        logits, targets, _ = segmentation_inputs(tokens, batch["mask"], batch["graph"])
        return self.segmentation(logits, targets)

    def losses(self, tokens: TrajectoryTokens, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The head's named losses and the segmentation terms; the training loss is their sum."""
        losses = dict(self.head.losses(tokens, batch))
        segmentation = self.segmentation_losses(tokens, batch)
        if segmentation.keys() & losses.keys():
            raise ValueError(f"head {self.head.name!r} returns losses named like the segmentation terms: "
                             f"{sorted(segmentation.keys() & losses.keys())}")
        losses.update(segmentation)
        return losses

    def _log_losses(self, stage: str, losses: dict[str, torch.Tensor], tokens: TrajectoryTokens,
                    suffix: str = "") -> torch.Tensor:
        """Log the total (``{stage}/loss{suffix}``), the terms when there are several, and the valid token count;
        returns the total. ``suffix`` names a source of joint training (``_video``)."""
        batch_size = tokens.tokens.shape[0]
        total = torch.stack(list(losses.values())).sum()
        sync = stage != "train"
        self.log(f"{stage}/loss{suffix}", total, prog_bar=not suffix, batch_size=batch_size, sync_dist=sync)
        if len(losses) > 1:
            self.log_dict({f"{stage}/{k}{suffix}": v for k, v in losses.items()}, batch_size=batch_size, sync_dist=sync)
        self.log(f"{stage}/tokens{suffix}", tokens.num_valid.float().mean(), batch_size=batch_size, sync_dist=sync)
        return total

    def _training_losses(self, batch: dict[str, Any]) -> tuple[TrajectoryTokens, dict[str, torch.Tensor]]:
        """Tokens and named losses of one batch of the data contract."""
        tokens = self(batch["video"])
        losses = self.losses(tokens, batch)
        if not losses:
            raise ValueError(
                f"nothing to train on: head {self.head.name!r} has no loss of its own, and the segmentation loss "
                f"needs model.segmentation {'(unset) ' if self.segmentation is None else ''}and batches with "
                "'mask' / 'graph' (data load_pseudo_labels: true)"
            )
        return tokens, losses

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        """The loss of a batch; of a joint batch (``{"video": batch, "image": batch}``, ``datamodules.JointDataModule``),
        the sum of each source's loss, each source through the same tokenizer and head as its own problem (its own
        contrastive negatives), logged as ``train/loss_<source>`` beside ``train/loss``."""
        usable = {name: b for name, b in batch_sources(batch).items() if "video" in b}
        if self._trainer is not None and any_process(self.trainer, not usable, self.device):
            return self._skip_empty_batch()
        sources = {name: self._training_losses(b) for name, b in usable.items()}
        if "" in sources:
            return self._log_losses("train", sources[""][1], sources[""][0])
        total = torch.stack([self._log_losses("train", losses, tokens, suffix=f"_{name}")
                             for name, (tokens, losses) in sources.items()]).sum()
        self.log("train/loss", total, prog_bar=True, batch_size=sum(t.tokens.shape[0] for t, _ in sources.values()))
        return total

    def _skip_empty_batch(self) -> torch.Tensor | None:
        """No step for a batch whose samples were all skipped as unusable (on this process, or on another: the
        processes step together); counted in ``train/empty_batches``. ``BadSampleReport`` still counts its
        samples."""
        self.empty_batches += 1
        if self._trainer is not None and self.trainer.training:
            self.log("train/empty_batches", float(self.empty_batches), on_step=True, on_epoch=False, batch_size=1)
        if self._trainer is None or self.trainer.world_size == 1:
            return None
        # Under DDP every process must run backward, for the gradient all-reduce: a zero that reaches every
        # parameter; on_before_optimizer_step drops its gradients.
        self._empty_step = True
        return torch.stack([p.sum() for p in self.parameters() if p.requires_grad]).sum() * 0.0

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self._empty_step:  # a zero loss still moves AdamW's moments and weight decay: no gradient at all
            self._empty_step = False
            optimizer.zero_grad(set_to_none=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["empty_batches"] = self.empty_batches

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.empty_batches = int(checkpoint.get("empty_batches", 0))

    def _evaluation_step(self, stage: str, batch: dict[str, Any]) -> None:
        if "video" not in batch:
            return  # all of its samples were skipped as unusable (BadSampleReport counts them)
        tokens = self(batch["video"])
        if "text" in batch or "label" in batch:
            losses = self.losses(tokens, batch)
        else:
            losses = self.segmentation_losses(tokens, batch)
        if losses:
            self._log_losses(stage, losses, tokens)
        self.head.update_metrics(tokens, batch)
        if has_labels(batch) and tokens.logits is not None:
            self.segmentation_quality.update(
                *segmentation_inputs(tokens, batch["mask"], batch["graph"], batch.get("stuff"))
            )
        if "vos_mask" in batch:  # video segmentation benchmarks (datamodules.video_segmentation)
            self.vos_quality.update(tokens.labels, batch["vos_mask"])

    def _evaluation_epoch_end(self, stage: str) -> tuple[dict[str, float], dict[str, float]]:
        """Log the epoch's head and segmentation metrics as ``{stage}/<name>``; returns both (unprefixed)."""
        head = {k: float(v) for k, v in self.head.compute_metrics().items()}
        self.head.reset_metrics()
        segmentation = {}
        if self.segmentation_quality.update_count:
            segmentation = {k: float(v) for k, v in self.segmentation_quality.compute().items()}
        self.segmentation_quality.reset()
        if self.vos_quality.update_count:
            segmentation.update({k: float(v) for k, v in self.vos_quality.compute().items()})
        self.vos_quality.reset()
        metrics = {f"{stage}/{k}": v for k, v in {**head, **segmentation}.items()}
        if metrics:
            # Already gathered across processes (the head, SegmentationQuality): every process holds the same
            # values, which a max keeps exactly (and Lightning does not advise sync_dist=True for each under DDP).
            self.log_dict(metrics, sync_dist=True, reduce_fx="max")
        return head, segmentation

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluation_step("val", batch)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluation_step("test", batch)

    def on_validation_epoch_end(self) -> None:
        self._evaluation_epoch_end("val")

    def on_test_epoch_end(self) -> None:
        head, segmentation = self._evaluation_epoch_end("test")
        for table in (segmentation_table(segmentation, "test"), video_segmentation_table(segmentation, "test"),
                      self.head.summary(head, "test")):
            if table:
                rank_zero_info(table)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> Any:
        if "video" not in batch:
            return None  # all of its samples were skipped as unusable; writers write nothing for it
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
