"""Faults injected into training by the resume, non-finite and distributed tests (test-only; not collected).
The ``trajtok`` subprocesses of ``helpers.run_trajtok`` can import them, e.g.
``run_trajtok(["fit", ..., callback("faults.KillAt", epoch=1)], cwd, cache)``.
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import lightning as L
import torch
from torch import nn

from trajtok.head import Head, register_head
from trajtok.tokens import TrajectoryTokens


class KillAt(L.Callback):
    """SIGKILLs the process just before training batch ``batch`` of epoch ``epoch``: no hook, no checkpoint and
    no logger flush runs after it, as when a job is pre-empted."""

    def __init__(self, epoch: int, batch: int = 0):
        super().__init__()
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), signal.SIGKILL)


class KillDuringCheckpointWrite(L.Callback):
    """SIGKILLs the process halfway through writing the bytes of a checkpoint file named ``name`` at epoch
    ``epoch``, wherever they are written: by ``torch.save`` into a file (a checkpoint IO writing in place or into
    a temporary file), or by the copy that moves a finished temporary file across file systems (Lightning's
    default, fsspec, when ``$TMPDIR`` is not on the run's file system). Half of the bytes reach the file."""

    def __init__(self, epoch: int, name: str = "last.ckpt"):
        super().__init__()
        self.epoch, self.name, self.armed = epoch, name, False
        import shutil

        save, copyfile = torch.save, shutil.copyfile

        def targeted(path: Any) -> bool:
            return self.armed and self.name in os.path.basename(str(path))

        def die_halfway(data: bytes, file: Any) -> None:
            file.write(data[: len(data) // 2])
            file.flush()
            os.fsync(file.fileno())
            os.kill(os.getpid(), signal.SIGKILL)

        def partial_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
            if not targeted(getattr(f, "name", f)):
                return save(obj, f, *args, **kwargs)
            buffer = __import__("io").BytesIO()
            save(obj, buffer, *args, **kwargs)
            if hasattr(f, "write"):
                die_halfway(buffer.getvalue(), f)
            with open(f, "wb") as file:
                die_halfway(buffer.getvalue(), file)

        def partial_copyfile(src: Any, dst: Any, *args: Any, **kwargs: Any) -> Any:
            if not targeted(dst):
                return copyfile(src, dst, *args, **kwargs)
            with open(src, "rb") as source, open(dst, "wb") as file:
                die_halfway(source.read(), file)

        torch.save, shutil.copyfile = partial_save, partial_copyfile

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self.armed = trainer.current_epoch == self.epoch


class Bug(L.Callback):
    """A programming error (not the user's) when training starts: its traceback must reach the user."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        raise KeyError("a bug in our code")


class RecordIndices(L.Callback):
    """Appends each validation batch's sample indices (``null`` for a batch with none) to a JSON-lines file."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(batch["index"].tolist() if "index" in batch else None) + "\n")


class SaveAtEnd(L.Callback):
    """Writes the final weights, step and epoch to ``path`` (``{rank}`` in it is the process's global rank)
    when fit ends; Lightning's ``last.ckpt`` is only rewritten when a monitored checkpoint is."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
        torch.save({"state_dict": state, "global_step": trainer.global_step, "epoch": trainer.current_epoch,
                    "lr": [g["lr"] for g in trainer.optimizers[0].param_groups]},
                   self.path.format(rank=trainer.global_rank))


class WeightTrace(L.Callback):
    """A checksum of all trainable weights after every training batch (``[global_step, float64 sum, float64
    sum of squares]`` rows), written as JSON to ``path`` (``{rank}``: the global rank) when fit ends or fails; kept in
    ``rows`` only when ``path`` is None."""

    def __init__(self, path: str | None = None):
        super().__init__()
        self.path = path
        self.rows: list[list[float]] = []

    @staticmethod
    def checksum(module: nn.Module) -> list[float]:
        params = [p.detach().double() for p in module.parameters() if p.requires_grad]
        return [sum(float(p.sum()) for p in params), sum(float(p.pow(2).sum()) for p in params)]

    def on_train_start(self, trainer, pl_module) -> None:
        self.rows.append([trainer.global_step, *self.checksum(pl_module)])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.rows.append([trainer.global_step, *self.checksum(pl_module)])

    def _write(self, trainer) -> None:
        if self.path is None:
            return
        with open(self.path.format(rank=trainer.global_rank), "w") as f:
            json.dump(self.rows, f)

    def on_fit_end(self, trainer, pl_module) -> None:
        self._write(trainer)

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._write(trainer)


class Corrupt(L.Callback):
    """Makes training batches non-finite, on every process or only on process ``rank``: ``nan_video`` fills the
    clips of those batches with NaN (so the loss is NaN); ``nan_grad`` sets one gradient to NaN just before the
    optimizer step (after DDP's all-reduce: as a NaN in one FSDP shard would be). Batches are counted from 0
    over the whole fit, skipped ones included."""

    def __init__(self, nan_video: list[int] | None = None, nan_grad: list[int] | None = None,
                 rank: int | None = None):
        super().__init__()
        self.nan_video, self.nan_grad, self.rank = set(nan_video or ()), set(nan_grad or ()), rank
        self.batch = -1

    def _here(self, trainer: L.Trainer) -> bool:
        return self.rank is None or trainer.global_rank == self.rank

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batch += 1
        if self.batch in self.nan_video and self._here(trainer):
            batch["video"].fill_(float("nan"))

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if self.batch in self.nan_grad and self._here(trainer):
            grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            if grads:
                grads[0].view(-1)[0] = float("nan")


class TinyTokenizer(nn.Module):
    """Four tokens per clip from a linear map of its mean frame: enough of a tokenizer for a fast real fit
    (clips of ``(T, 3, 4, 4)``)."""

    out_dim = 8

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(3 * 4 * 4, 4 * self.out_dim)

    def forward(self, video: torch.Tensor) -> TrajectoryTokens:
        b, t = video.shape[:2]
        tokens = self.proj(video.float().mean(dim=1).flatten(1)).view(b, 4, self.out_dim)
        valid = torch.ones(b, 4, dtype=torch.bool, device=video.device)
        labels = torch.full((b, t, 1, 1), -1, dtype=torch.long, device=video.device)
        return TrajectoryTokens(tokens=tokens, valid=valid, logits=None, labels=labels, grid=(t, 1, 1))


@register_head("square")
class SquareHead(Head):
    """Regresses every token's projection to 1: one linear layer and a mean squared error."""

    def __init__(self) -> None:
        super().__init__()
        self.proj: nn.Module = nn.Identity()

    def build(self, token_dim: int) -> None:
        self.proj = nn.Linear(token_dim, 1)

    def losses(self, tokens: TrajectoryTokens, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {"mse": (self.proj(tokens.tokens) - 1).pow(2).mean()}
