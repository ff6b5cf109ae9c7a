"""Training-time reporting and guards: throughput in the progress bar, TensorBoard when it is installed, the
samples data sets skipped as unusable, and the skipping of steps whose loss or gradients are not finite."""

from __future__ import annotations

import math
import os
import time
from collections import deque
from typing import Any, Literal

import lightning as L
import torch
from jsonargparse.typing import NonNegativeInt
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn

from trajtok.batches import batch_sources


def batch_clips(batch: Any) -> int:
    """The clips (images count) of a training batch, over the sources of a joint batch; 0 for a batch or source
    whose samples were all skipped as unusable (no ``video``)."""
    return sum(int(part["video"].shape[0]) for part in batch_sources(batch).values()
               if isinstance(part, dict) and "video" in part)


class ClipThroughput(L.Callback):
    """Logs ``train/clips_per_s`` (this process's clips per second of training step, data loading included) to
    the progress bar and the loggers, averaged over the last ``window`` steps so it reads steadily.

    A batch whose samples were all skipped as unusable holds no ``video`` (only its ``skipped`` reports, see
    ``datamodules.collate.drops_skipped``): it counts as a step of no clips, as any callback that reads a batch
    must take it."""

    def __init__(self, window: int = 10):
        super().__init__()
        if window < 1:
            raise ValueError(f"window={window} must be at least 1")
        self.window = window
        self._times: list[float] = []
        self._clips: list[int] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._times = [time.perf_counter()]  # the first step's data loading counts too
        self._clips = []

    def on_train_batch_end(self, trainer, pl_module, outputs: Any, batch: dict[str, Any], batch_idx: int) -> None:
        self._times.append(time.perf_counter())
        self._clips.append(batch_clips(batch))
        self._times, self._clips = self._times[-self.window - 1:], self._clips[-self.window:]
        elapsed = self._times[-1] - self._times[0]
        if elapsed > 0:
            pl_module.log("train/clips_per_s", sum(self._clips) / elapsed, prog_bar=True, on_step=True,
                          on_epoch=False, batch_size=max(1, self._clips[-1]))


class BestCheckpoint(ModelCheckpoint):
    """The state of the best epoch by a validation metric, ``epochNN-<metric><value>.ckpt`` in ``dirpath`` (by
    default ``<trainer.default_root_dir>/checkpoints``, beside ``last.ckpt``); a re-run overwrites it rather than
    adding ``-v1`` copies."""

    def __init__(self, monitor: str, mode: Literal["max", "min"] = "max", dirpath: str | None = None):
        short = monitor.rsplit("/", 1)[-1]
        super().__init__(dirpath=dirpath, filename=f"epoch{{epoch:02d}}-{short}={{{monitor}:.4g}}", monitor=monitor,
                         mode=mode, auto_insert_metric_name=False, enable_version_counter=False)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.dirpath is None:
            self.dirpath = os.path.realpath(os.path.join(trainer.default_root_dir, "checkpoints"))
        super().setup(trainer, pl_module, stage)


class OptionalTensorBoard(Logger):
    """A ``TensorBoardLogger`` when ``tensorboard`` (or ``tensorboardX``) is installed, else nothing and a warning,
    so one yaml serves machines with and without it (``pip install tensorboard`` to turn it on)."""

    def __init__(self, save_dir: str, name: str = "tensorboard", version: int | str | None = None):
        super().__init__()
        try:
            self._logger: TensorBoardLogger | None = TensorBoardLogger(save_dir=save_dir, name=name, version=version)
        except ModuleNotFoundError:
            rank_zero_warn("tensorboard is not installed: TensorBoard logging is off (pip install tensorboard)")
            self._logger = None
        self._save_dir, self._name, self._version = save_dir, name, version

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> int | str:
        return self._logger.version if self._logger else (self._version or 0)

    @property
    def save_dir(self) -> str:
        return self._save_dir

    @property
    def log_dir(self) -> str | None:
        return self._logger.log_dir if self._logger else None

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if self._logger:
            self._logger.log_metrics(metrics, step)

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        if self._logger:
            self._logger.log_hyperparams(params, *args, **kwargs)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._logger:
            self._logger.finalize(status)


def gather_skipped(reports: dict[tuple[int, int], dict[str, Any]]) -> dict[tuple[int, int], dict[str, Any]]:
    """The union of every process's skip reports (keyed by ``(dataloader_idx, index)``); this process's own
    when ``torch.distributed`` is not initialised. A collective: every process must call it."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return reports
    if torch.distributed.get_world_size() == 1:
        return reports
    parts: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(parts, sorted(reports.items()))
    merged: dict[tuple[int, int], dict[str, Any]] = {}
    for part in parts:
        for key, report in part:
            merged.setdefault(tuple(key), report)
    return merged


def describe_skipped(report: dict[str, Any]) -> str:
    """One skip report as text: ``sample 3 (ann.jsonl, row 4): /data/a.mp4: file not found``."""
    where = f" ({report['origin']})" if report.get("origin") else ""
    return f"sample {report['index']}{where}: {report['path']}: {report['reason']}"


class BadSampleReport(L.Callback):
    """At the end of every epoch of every stage, the samples the data sets skipped as unusable (missing,
    corrupt, empty videos; broken pseudo-labels; ``on_bad_video: skip``): logs ``{stage}/skipped_samples``
    (train, val, test) and warns, on rank 0, with their number and the first ``max_reported`` of them
    (data set index, annotation file and row, file, reason).

    Where the numbers come from: a skipped sample's hole carries its report and collate gathers them into
    the batch's ``skipped`` (``datamodules.bad_samples.RecordDataset``). Counting in the data set
    instead would be wrong with ``num_workers > 0``: every worker process has its own copy of the data set,
    and counters in a copy never reach the trainer. A shared channel (a ``multiprocessing`` manager, files
    per worker) would reach it, but adds a process or files to clean up, and would count samples that
    workers prefetched but the model never saw. The batch is exact with any number of workers, at any
    ``prefetch_factor``, and arrives in step with training. A bad sample met by several samples of an epoch
    is counted once (reports are keyed by dataloader and data set index); under DDP the reports of all
    processes are gathered before counting, so every rank logs the same, global number.

    ``TrajTokModule`` adds one with the defaults unless the trainer already has one; a data set that
    reports nothing (no ``skipped`` in its batches) is simply not counted.

    Args:
        max_reported: how many skipped samples the warning names (all are counted).
        warn: warn at epochs with skipped samples (the metric is logged either way).
    """

    def __init__(self, max_reported: NonNegativeInt = 10, warn: bool = True):
        super().__init__()
        if max_reported < 0:
            raise ValueError(f"max_reported={max_reported} must be >= 0")
        self.max_reported = max_reported
        self.warn = warn
        self._epoch: dict[str, dict[tuple[int, int], dict[str, Any]]] = {}
        # Per stage, the distinct samples skipped in each finished epoch: [(epoch, count, first reports)].
        self.history: dict[str, list[tuple[int, int, list[dict[str, Any]]]]] = {}

    def _collect(self, stage: str, batch: Any, dataloader_idx: int) -> None:
        seen = self._epoch.setdefault(stage, {})
        # The sources of a joint training batch are separate data sets: each is counted under its own position.
        for source, part in enumerate(batch_sources(batch).values()):
            reports = part.get("skipped") if isinstance(part, dict) else None
            for report in reports or ():
                seen.setdefault((dataloader_idx + source, int(report["index"])), dict(report))

    def _report(self, stage: str, trainer: L.Trainer, pl_module: L.LightningModule, log: bool) -> None:
        reports = gather_skipped(self._epoch.pop(stage, {}))
        count = len(reports)
        first = [reports[k] for k in sorted(reports)[: self.max_reported]]
        self.history.setdefault(stage, []).append((trainer.current_epoch, count, first))
        if log:
            pl_module.log(f"{stage}/skipped_samples", float(count), on_step=False, on_epoch=True, batch_size=1,
                          sync_dist=True, reduce_fx="max")  # every rank holds the gathered count already
        if count and self.warn:
            shown = "; ".join(describe_skipped(r) for r in first)
            more = f"; ... ({count - len(first)} more)" if count > len(first) else ""
            rank_zero_warn(f"{stage} epoch {trainer.current_epoch}: {count} unusable sample(s) skipped, each "
                           f"left out of its batch: {shown}{more}")

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._epoch.pop("train", None)

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._epoch.pop("val", None)

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._epoch.pop("test", None)

    def on_predict_epoch_start(self, trainer, pl_module) -> None:
        self._epoch.pop("predict", None)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._collect("train", batch, 0)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect("val", batch, dataloader_idx)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect("test", batch, dataloader_idx)

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect("predict", batch, dataloader_idx)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._report("train", trainer, pl_module, log=True)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        # The sanity check's few batches are reported too (a bad val file shows before training), not logged.
        self._report("val", trainer, pl_module, log=not trainer.sanity_checking)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._report("test", trainer, pl_module, log=True)

    def on_predict_epoch_end(self, trainer, pl_module) -> None:
        self._report("predict", trainer, pl_module, log=False)  # Lightning logs nothing in predict


def any_process(trainer: L.Trainer, flag: bool, device: torch.device) -> bool:
    """``flag`` or-ed over all processes (a collective under DDP / FSDP: every process must call it)."""
    if trainer.world_size == 1:
        return flag
    return bool(trainer.strategy.reduce(torch.tensor(float(flag), device=device), reduce_op="sum") > 0)


class NonFiniteSteps(L.Callback):
    _counters = ("train/nonfinite_steps", "train/empty_batches", "train/clips_per_s")

    """Skips a training step whose loss or gradients are not finite (NaN / inf): its gradients are dropped before
    the optimizer step, so AdamW changes no weight and no state (the LR schedule still advances). Each skip is
    warned about (naming the step and the logged loss terms) and counted in ``train/nonfinite_steps``, carried
    across resumes in the callback's checkpoint state. Training stops with a ``RuntimeError`` once more than
    ``max_steps`` steps were skipped (0: at the first), listing the recent losses.

    Under DDP / FSDP the processes agree (the loss flag and the gradient norm's finiteness are or-ed over them), so
    they all skip the same steps; backward still runs everywhere, as DDP's gradient all-reduce needs. With
    ``16-mixed`` precision the gradient scaler skips steps with inf / NaN gradients itself (and lowers its scale);
    only non-finite losses are counted then. ``TrajTokModule`` adds one with its ``max_nonfinite_steps``.
    """

    def __init__(self, max_steps: NonNegativeInt = 10):
        super().__init__()
        if max_steps < 0:
            raise ValueError(f"max_steps={max_steps} must be >= 0")
        self.max_steps = max_steps
        self.skipped = 0
        self._loss_not_finite = False
        self._recent_losses: deque[tuple[int, float]] = deque(maxlen=8)  # (step, loss) for the stop message

    def on_before_backward(self, trainer, pl_module, loss: torch.Tensor) -> None:
        value = float(loss.detach())  # one host sync per step: the decision is taken in Python
        self._recent_losses.append((trainer.global_step, value))
        finite = math.isfinite(value)
        self._loss_not_finite = any_process(trainer, not finite, loss.device)
        if self._loss_not_finite:
            # What the step logged (its loss terms where it has several): which term blew up.
            terms = ", ".join(f"{k.removeprefix('train/')}={float(v):.4g}" for k, v in trainer.callback_metrics.items()
                              if k.startswith("train/") and k not in self._counters)
            self._count(trainer, f"loss ({terms})" if not finite else "loss on another process")

    def on_before_optimizer_step(self, trainer, pl_module, optimizer: torch.optim.Optimizer) -> None:
        if not self._loss_not_finite:
            if getattr(trainer.precision_plugin, "scaler", None) is not None:
                return
            grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros((), device=pl_module.device)
            finite = bool(torch.isfinite(norm))
            if not any_process(trainer, not finite, norm.device):
                return
            self._count(trainer, f"gradients (norm {float(norm):.4g})" if not finite else "gradients on another process")
        self._loss_not_finite = False
        optimizer.zero_grad(set_to_none=True)  # no gradient: AdamW leaves the weight and its moments alone

    def _count(self, trainer: L.Trainer, what: str) -> None:
        self.skipped += 1
        if self.skipped > self.max_steps:
            recent = ", ".join(f"step {step}: {loss:.4g}" for step, loss in self._recent_losses)
            raise RuntimeError(
                f"training stopped at step {trainer.global_step}: non-finite {what}; {self.skipped} steps had a "
                f"non-finite loss or gradients, more than model.max_nonfinite_steps={self.max_steps}. Last "
                f"training losses (this process): {recent}. Lower model.lr, raise warmup_steps, set "
                "trainer.gradient_clip_val, or check the data for broken clips."
            )
        rank_zero_warn(f"step {trainer.global_step}: non-finite {what}: optimizer step skipped "
                       f"({self.skipped} of at most {self.max_steps})")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        pl_module.log("train/nonfinite_steps", float(self.skipped), on_step=True, on_epoch=False, batch_size=1)

    def state_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped = int(state_dict.get("skipped", 0))
