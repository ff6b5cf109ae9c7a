"""Writing ``trajtok predict`` outputs to disk."""

from __future__ import annotations

import json
import os
from typing import Any

import torch
from lightning.pytorch.callbacks import BasePredictionWriter


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
        path = self._path(trainer)
        mode = "a" if path in self._opened else "w"  # a new predict run starts a new file
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, mode, encoding="utf-8") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows(prediction))
        self._opened.add(path)
