"""``PseudoLabelWriter``: the prediction writer of ``trajtok pseudo-label``.

Per labelled video it writes the two npz files (each to a temporary name, then renamed: a file that exists is
whole), then appends its row of statistics to ``<out_dir>/stats.rank<R>.jsonl``: that row is the record that the
video is done (``datamodules.videos_to_label``), so a run stopped between the files and the row labels the video
again when rerun, and one stopped later (while its contact sheet is drawn, say) does not lose it. When all
processes are done, process 0 writes from what is on disk (so rows of earlier, resumed runs count too):

- ``<out_dir>/pseudo_labels.jsonl``: an annotation row per labelled video (``video``, ``caption`` or ``label``,
  ``start`` / ``end``, ``mask``, ``graph``; paths relative to ``out_dir``), which ``VideoTextDataModule``
  reads as ``train_annotations`` with no conversion; not for tar shards, whose labels
  ``ShardDataModule(pseudo_labels=out_dir)`` finds by shard and key beside the shards' videos;
- ``<out_dir>/summary.csv``: one row per video (of the videos being labelled; for shards, every sample named in
  the statistics): the latest status (labelled / failed), frames, trajectories, mean frames per trajectory,
  fraction of pixels labelled, chunks, seconds, and the reason of a failure.

A file that cannot be written (a read-only or full disk) is a ``UserError`` naming it.

``visualize``: the first N videos each process labels are also painted (``trajtok.visualize``) into
``<out_dir>/visualize/<name>_sheet.png``.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from jsonargparse.typing import NonNegativeInt
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info

from datamodules.pseudo_label_files import write_graph, write_masks
from datamodules.videos_to_label import LabelItem, read_stats
from trajtok.errors import UserError
from trajtok.files import atomic_path, atomic_write
from trajtok.visualize import contact_sheet, overlay, write_png

SUMMARY_FIELDS = ("name", "status", "frames", "trajectories", "mean_trajectory_frames", "labelled_fraction",
                  "chunks", "seconds", "reason")


@contextlib.contextmanager
def disk_errors_as_user_errors(path: str) -> Iterator[None]:
    """Runs a block that writes ``path``: an ``OSError`` in it (a read-only or full disk) is a ``UserError`` naming
    ``path``. Whether the file appears whole is the block's writer's part (``trajtok.files``)."""
    try:
        yield
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from e


def annotation_row(item: LabelItem, out_dir: str) -> dict[str, Any]:
    """The training annotation of a labelled video, paths relative to ``out_dir`` (the annotation's folder)."""
    row = {"video": os.path.relpath(item.video, out_dir), **item.row}
    if item.start_sec is not None:
        row["start"] = item.start_sec
    if item.end_sec is not None:
        row["end"] = item.end_sec
    return {**row, "mask": os.path.relpath(item.mask, out_dir), "graph": os.path.relpath(item.graph, out_dir)}


class PseudoLabelWriter(BasePredictionWriter):
    """Writes each video's pseudo-labels as its batch finishes, and the annotation file and summary at the end
    (see the module). The output folder is the datamodule's ``out_dir``.

    Args:
        visualize: paint the first N labelled videos of each process (0: none).
        display_size: side of the painted frames.
        max_columns: frames shown per contact sheet.
    """

    def __init__(self, visualize: NonNegativeInt = 0, display_size: int = 256, max_columns: int = 8) -> None:
        super().__init__(write_interval="batch")
        self.visualize, self.display_size, self.max_columns = visualize, display_size, max_columns
        self.painted = 0
        self.counts = {"labelled": 0, "done": 0, "failed": 0}

    @staticmethod
    def _data(trainer):
        data = trainer.datamodule
        if not hasattr(data, "annotation_items") or not hasattr(data, "out_dir"):
            raise TypeError(f"PseudoLabelWriter needs a PseudoLabelDataModule, got {type(data).__name__}")
        return data

    def _append(self, trainer, rows: list[dict[str, Any]]) -> None:
        """Append ``rows`` (stamped with the time) to this process's statistics, one write of whole lines, after a
        line break if a killed run left its last line unfinished."""
        path = os.path.join(self._data(trainer).out_dir, f"stats.rank{trainer.global_rank}.jsonl")
        text = "".join(json.dumps({**row, "time": time.time()}) + "\n" for row in rows)
        with disk_errors_as_user_errors(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "a+b") as f:
                f.seek(0, os.SEEK_END)
                if f.tell():
                    f.seek(-1, os.SEEK_END)
                    if f.read(1) != b"\n":
                        text = "\n" + text
                f.write(text.encode("utf-8"))

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        data = self._data(trainer)
        frames = {int(s["index"]): s["frames"] for s in batch["samples"] if "frames" in s}
        for result in prediction["results"]:
            item = LabelItem(**result["item"])
            if result.get("done"):
                self.counts["done"] += 1
                continue
            masks, graph = result.pop("masks"), result.pop("graph")  # not kept in the predict loop's outputs
            # numpy writes to a name, not whole: each file goes through a temporary renamed into place.
            with disk_errors_as_user_errors(item.mask), atomic_path(item.mask) as tmp:
                write_masks(tmp, masks)
            with disk_errors_as_user_errors(item.graph), atomic_path(item.graph) as tmp:
                write_graph(tmp, graph)
            name = item.name(data.out_dir)
            self._append(trainer, [{"name": name, "status": "labelled", **result["stats"]}])  # now it is done
            self.counts["labelled"] += 1
            if self.painted < self.visualize:
                self._paint(frames[result["index"]], masks, graph, os.path.join(data.out_dir, "visualize", name))
                self.painted += 1
        rows = [{"name": data.failed_name(report), "status": "failed", "reason": report["reason"]}
                for report in prediction["skipped"]]
        self.counts["failed"] += len(rows)
        if rows:
            self._append(trainer, rows)

    def _paint(self, frames: torch.Tensor, masks: np.ndarray, graph: np.ndarray, stem: str) -> None:
        """A contact sheet of the video's frames over its trajectories (one colour per trajectory)."""
        masks_t, graph_t = torch.from_numpy(masks).long(), torch.from_numpy(graph)
        # Per frame, segment id -> trajectory id + 1 through the graph; minus one below, unlabelled is -1 (unpainted).
        lookup = torch.zeros(masks_t.shape[0], 256, dtype=torch.long)
        traj, frame = (graph_t > 0).nonzero(as_tuple=True)
        lookup[frame, graph_t[traj, frame]] = traj + 1
        trajectories = lookup.gather(1, masks_t.flatten(1)).view_as(masks_t)
        scale = self.display_size / max(frames.shape[1:3])
        size = (max(1, round(frames.shape[1] * scale)), max(1, round(frames.shape[2] * scale)))
        shown = torch.nn.functional.interpolate(frames.cpu().permute(0, 3, 1, 2).float(), size=size, mode="bilinear")
        shown = shown.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        labels = torch.nn.functional.interpolate(trajectories[:, None].float(), size=size, mode="nearest")[:, 0].long() - 1
        sheet = contact_sheet(shown, overlay(shown, labels), self.max_columns)
        with disk_errors_as_user_errors(f"{stem}_sheet.png"):
            write_png(f"{stem}_sheet.png", sheet)  # whole or not at all by itself

    def on_predict_end(self, trainer, pl_module) -> None:
        trainer.strategy.barrier()
        if trainer.is_global_zero:
            self.write_summary(self._data(trainer))
        trainer.strategy.barrier()

    def write_summary(self, data) -> None:
        """``pseudo_labels.jsonl`` (every done item; none for shards) and ``summary.csv`` (the rows of every
        process and run, the latest per video; only the data's videos unless shards), both written atomically."""
        rows = {row["name"]: row for row in read_stats(data.out_dir)}  # oldest first: the latest stays
        done = data.annotation_items()
        annotations = os.path.join(data.out_dir, "pseudo_labels.jsonl")
        if done is not None:
            names = {item.name(data.out_dir) for item in data.items}
            rows = {name: row for name, row in rows.items() if name in names}
            with disk_errors_as_user_errors(annotations), atomic_write(annotations, "w") as f:
                f.writelines(json.dumps(annotation_row(item, data.out_dir)) + "\n" for item in done)
        summary = os.path.join(data.out_dir, "summary.csv")
        with disk_errors_as_user_errors(summary), atomic_write(summary, "w", newline="") as f:
            writer = csv.DictWriter(f, SUMMARY_FIELDS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows[name] for name in sorted(rows))
        failed = sum(row["status"] == "failed" for row in rows.values())
        if done is not None:
            rank_zero_info(f"pseudo-labels: {len(done)} of {len(data.items)} videos labelled in {data.out_dir} "
                           f"({failed} failed); annotations {annotations}, statistics {summary}")
            return
        labelled = sum(row["status"] == "labelled" for row in rows.values())
        rank_zero_info(f"pseudo-labels: {labelled} shard samples labelled in {data.out_dir} ({failed} failed); "
                       f"statistics {summary}; train with ShardDataModule's pseudo_labels={data.out_dir}")
