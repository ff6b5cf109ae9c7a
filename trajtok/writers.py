"""Writing ``trajtok predict`` outputs to disk: the head's predictions as JSON lines, the tokenizer's trajectory
tokens as safetensors files."""

from __future__ import annotations

import glob
import json
import os
from typing import Any

import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch.utils.hooks import RemovableHandle

from trajtok.files import atomic_path
from trajtok.tokens import TrajectoryTokens


def rows(prediction: dict[str, Any]) -> list[dict[str, Any]]:
    """A batch's prediction (``name -> (B, ...)`` tensors or length-B lists) as B JSON-ready rows."""
    columns = {k: v.tolist() if isinstance(v, torch.Tensor) else list(v) for k, v in prediction.items()}
    sizes = {len(v) for v in columns.values()}
    if len(sizes) != 1:
        raise ValueError(f"prediction columns have different lengths: { {k: len(v) for k, v in columns.items()} }")
    return [dict(zip(columns, values)) for values in zip(*columns.values())]


class JsonlPredictionWriter(BasePredictionWriter):
    """One JSON line per sample of ``predict`` (answers, class predictions, embeddings...), written as batches
    finish. Under several processes each writes ``<stem>.rank<R>.jsonl`` (rows carry the data set ``index``).

    Args:
        path: the output file; its folder is created.
    """

    def __init__(self, path: str = "predictions.jsonl"):
        super().__init__(write_interval="batch")
        self.path = path
        self._opened: set[str] = set()

    def _path(self, trainer) -> str:
        if trainer.world_size == 1:
            return self.path
        stem, ext = os.path.splitext(self.path)
        return f"{stem}.rank{trainer.global_rank}{ext or '.jsonl'}"

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        if prediction is None:
            return  # a batch whose samples were all skipped as unusable
        path = self._path(trainer)
        mode = "a" if path in self._opened else "w"  # a new predict run starts a new file
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, mode, encoding="utf-8") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows(prediction))
        self._opened.add(path)


TOKEN_TENSORS = ("tokens", "valid", "labels", "index")
_TOKEN_META = ("grid", "tokens_per_trajectory", "chunks")


class TokenWriter(BasePredictionWriter):
    """The trajectory tokens of every ``predict`` batch, for downstream use (training another model on them,
    analysis): ``<directory>/batch_<rank>_<batch_idx>.safetensors`` holding ``tokens (B, S, D)``, ``valid (B, S)``,
    ``labels (B, T, h, w)`` (each patch's trajectory id) and ``index (B,)`` (the data set index of each clip: the
    batch's ``index``, else Lightning's batch indices), with ``grid``, ``tokens_per_trajectory`` and ``chunks`` in
    the metadata. Read them back with ``load_tokens``. Batches of a second predict dataloader go to
    ``batch_<rank>_<batch_idx>_dl<k>.safetensors``.

    The tokens are those the head received: a forward hook on ``pl_module.tokenizer`` (the ``TrajTokModule``
    attribute) keeps the step's ``TrajectoryTokens`` while the head's prediction is what ``predict_step``
    returns. So the writer works with any head, sits beside ``JsonlPredictionWriter``, needs no change to the
    module or its predict output, costs no second tokenizer pass, and writes the tokens of the step's own
    precision context (bf16 under ``bf16-mixed``). The hook lives only during ``predict``.

    Each predict run first removes this rank's earlier ``batch_<rank>_*.safetensors`` in ``directory``, so that
    files of a longer earlier run are not mixed in (as ``JsonlPredictionWriter`` restarts its file).

    Args:
        directory: the output folder; created.
    """

    def __init__(self, directory: str = "tokens"):
        super().__init__(write_interval="batch")
        self.directory = directory
        self._handle: RemovableHandle | None = None
        self._tokens: TrajectoryTokens | None = None

    def _capture(self, module, args, output) -> None:
        if not isinstance(output, TrajectoryTokens):
            raise TypeError(f"TokenWriter: the tokenizer returned {type(output).__name__}, not TrajectoryTokens")
        self._tokens = output

    def on_predict_start(self, trainer, pl_module) -> None:
        tokenizer = getattr(pl_module, "tokenizer", None)
        if not isinstance(tokenizer, torch.nn.Module):
            raise TypeError(f"TokenWriter needs a module with a 'tokenizer' (TrajTokModule), got {type(pl_module).__name__}")
        self._remove_hook()
        self._handle = tokenizer.register_forward_hook(self._capture)
        os.makedirs(self.directory, exist_ok=True)
        for old in glob.glob(os.path.join(glob.escape(self.directory), f"batch_{trainer.global_rank}_*.safetensors")):
            os.remove(old)

    def _remove_hook(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self._tokens = None

    def on_predict_end(self, trainer, pl_module) -> None:
        self._remove_hook()

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self._remove_hook()  # also after an exception, when on_predict_end is not called

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        tokens, self._tokens = self._tokens, None
        if prediction is None:
            return  # a batch whose samples were all skipped as unusable
        if tokens is None:
            raise RuntimeError("TokenWriter: the tokenizer did not run in this predict step (no tokens to write)")
        index = batch.get("index") if isinstance(batch, dict) else None
        if index is None:
            index = torch.as_tensor(list(batch_indices) if batch_indices is not None else [], dtype=torch.long)
        index = torch.as_tensor(index).detach().cpu().long()
        if index.numel() != tokens.tokens.shape[0]:
            raise ValueError(f"TokenWriter: {index.numel()} indices for a batch of {tokens.tokens.shape[0]} clips")
        tensors = {
            "tokens": tokens.tokens, "valid": tokens.valid, "labels": tokens.labels, "index": index,
        }
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        metadata = {"grid": json.dumps(list(tokens.grid)), "tokens_per_trajectory": str(tokens.tokens_per_trajectory),
                    "chunks": str(tokens.chunks)}
        suffix = f"_dl{dataloader_idx}" if dataloader_idx else ""
        name = f"batch_{trainer.global_rank}_{batch_idx}{suffix}.safetensors"
        with atomic_path(os.path.join(self.directory, name)) as tmp:  # a reader never sees half a file
            save_file(tensors, tmp, metadata=metadata)


def load_tokens(path: str) -> dict[str, Any]:
    """One file of ``TokenWriter``: ``tokens``, ``valid``, ``labels``, ``index`` tensors, and ``grid`` (a tuple),
    ``tokens_per_trajectory`` and ``chunks`` (ints)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such token file")
    try:
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
            names = set(f.keys())
            missing = [k for k in TOKEN_TENSORS if k not in names] + [k for k in _TOKEN_META if k not in metadata]
            if missing:
                raise ValueError(f"{path}: not a TokenWriter file (missing {missing})")
            out: dict[str, Any] = {k: f.get_tensor(k) for k in TOKEN_TENSORS}
    except SafetensorError as error:
        raise ValueError(f"{path}: not a readable safetensors file: {error}") from error
    out["grid"] = tuple(json.loads(metadata["grid"]))
    out["tokens_per_trajectory"] = int(metadata["tokens_per_trajectory"])
    out["chunks"] = int(metadata["chunks"])
    return out
