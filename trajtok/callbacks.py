"""Training-time reporting: throughput in the progress bar, and TensorBoard when it is installed."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn


class ClipThroughput(L.Callback):
    """Logs ``train/clips_per_s`` (this process's clips per second of training step, data loading included) to
    the progress bar and the loggers, averaged over the last ``window`` steps so it reads steadily."""

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
        self._clips.append(int(batch["video"].shape[0]))
        self._times, self._clips = self._times[-self.window - 1:], self._clips[-self.window:]
        elapsed = self._times[-1] - self._times[0]
        if elapsed > 0:
            pl_module.log("train/clips_per_s", sum(self._clips) / elapsed, prog_bar=True, on_step=True,
                          on_epoch=False, batch_size=self._clips[-1])


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
