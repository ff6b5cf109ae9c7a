"""``PseudoLabeller``: the LightningModule whose predict step labels a batch of whole videos, so that Lightning's
predict loop runs the pipeline on one CPU, many GPUs or many nodes (each process labels its share of videos)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import lightning as L

from trajtok.pseudo_labels.cuts import FixedChunks
from trajtok.pseudo_labels.pipeline import Clip, label_stats, label_video


class PseudoLabeller(L.LightningModule):
    """Panoptic trajectory pseudo-labels (TrajViT's pipeline): chunks, key-frame segments, propagation, linking.

    Args:
        segmenter: key-frame segmenter (``trajtok.pseudo_labels.DirectSAMSegmenter``).
        propagator: chunk propagator (``trajtok.pseudo_labels.VideoTracker``).
        chunker: where chunks start (``trajtok.pseudo_labels.ShotCuts``, ``FixedChunks``; default fixed quarters).
        link_iou: IoU from which a key segment continues a trajectory of the previous chunk.
    """

    # Callable, not ``nn.Module | Callable``: jsonargparse builds each member of a union in turn, so a part
    # that fails to build would be built twice and its error reported twice.
    def __init__(self, segmenter: Callable, propagator: Callable, chunker: Callable | None = None,
                 link_iou: float = 0.5) -> None:
        super().__init__()
        if not 0 < link_iou <= 1:
            raise ValueError(f"link_iou must lie in (0, 1], got {link_iou}")
        self.segmenter, self.propagator = segmenter, propagator
        self.chunker = chunker or FixedChunks()
        self.link_iou = link_iou

    def predict_step(self, batch: dict[str, Any], batch_idx: int = 0) -> dict[str, Any]:
        """Per sample: ``{"index", "item", "masks", "graph", "stats"}`` (numpy arrays), or ``{"index", "item",
        "done": True}`` for a video labelled before; and the batch's ``skipped`` reports."""
        results = []
        for sample in batch["samples"]:
            if sample.get("done"):
                results.append({"index": int(sample["index"]), "item": sample["item"], "done": True})
                continue
            began = time.perf_counter()
            masks, graph, chunks = label_video(Clip(sample["frames"], str(sample["item"]["video"])), self.segmenter,
                                               self.propagator, self.chunker, self.link_iou)
            stats = {**label_stats(masks, graph), "chunks": chunks, "seconds": round(time.perf_counter() - began, 3)}
            results.append({"index": int(sample["index"]), "item": sample["item"], "masks": masks.cpu().numpy(),
                            "graph": graph.cpu().numpy(), "stats": stats})
        return {"results": results, "skipped": batch["skipped"]}
