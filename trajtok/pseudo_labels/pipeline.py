"""Labelling one video: chunk it, segment each chunk's key frame, propagate the segments through the chunk,
link chunks into trajectories (TrajViT's pipeline), and the statistics of the result.

The parts are interchangeable objects (see ``segmenters``, ``propagators``, ``cuts``); this module only says how
they meet: a segmenter maps ``(clip, key frame indices)`` to long ``(N, H, W)`` segment ids (1..K per frame,
0 = unlabelled), a propagator maps ``(clip, start, stop, key ids (H, W))`` to long ``(stop - start, H, W)`` maps
of those same ids, and a chunker maps frames to ``cuts.Chunk``\\ s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from trajtok.pseudo_labels.cuts import Chunk
from trajtok.pseudo_labels.linking import ChunkLabels, link_chunks


@dataclass(frozen=True)
class Clip:
    """Every frame of a video's range, uint8 ``(T, H, W, 3)`` RGB, and the video it comes from (oracle parts
    read its ground truth by this path)."""

    frames: torch.Tensor
    path: str


def label_video(clip: Clip, segmenter: Callable, propagator: Callable, chunker: Callable[[torch.Tensor], list[Chunk]],
                link_iou: float = 0.5) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Masks uint8 ``(T, H, W)``, graph long ``(M, T)`` and the number of chunks of one clip.

    Each chunk is propagated one frame past its end, onto the next key frame, unless a shot cut separates them:
    that frame's propagated segments are what the next chunk's key segments link to (``linking``).
    """
    chunks = chunker(clip.frames)
    keys = segmenter(clip, [c.start for c in chunks])
    parts = []
    for i, chunk in enumerate(chunks):
        link = i + 1 < len(chunks) and not chunks[i + 1].cut
        stop = chunk.stop + link
        tracked = propagator(clip, chunk.start, stop, keys[i]) if stop - chunk.start > 1 else keys[i][None]
        labels = torch.cat([keys[i][None], tracked[1: chunk.stop - chunk.start]])
        parts.append(ChunkLabels(labels, tracked[-1] if link else None))
    masks, graph = link_chunks(parts, link_iou)
    return masks, graph, len(chunks)


def label_stats(masks: torch.Tensor, graph: torch.Tensor) -> dict[str, float]:
    """What a person checks first about a video's labels: trajectories, frames, mean frames a trajectory
    covers, and the fraction of pixels with a segment."""
    lengths = (graph > 0).sum(1).float()
    return {
        "frames": int(masks.shape[0]),
        "trajectories": int(graph.shape[0]),
        "mean_trajectory_frames": round(float(lengths.mean()) if len(lengths) else 0.0, 3),
        "labelled_fraction": round(float((masks > 0).float().mean()), 4),
    }
