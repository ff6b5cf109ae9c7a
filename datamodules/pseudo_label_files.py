"""Pseudo-label files for the segmentation loss, in the format of the TrajViT trajectory pipeline.

- ``<video>_mask.npz``: uint8 ``(T, H, W)`` per-frame segment ids, 0 = no segment (background); stored as
  the npz's unnamed first array (``arr_0``), as the TrajViT pipeline writes it.
- ``<video>_graph.npz``: int ``(M, T)`` under the name ``tensor``: trajectory ``m`` is segment
  ``graph[m, t]`` of frame ``t``'s mask, 0 = absent in that frame. Segment ids are per frame (they need
  not be equal along a trajectory); the graph is what links them through time.
- Optionally, in the graph file, bool ``(M,)`` under the name ``stuff``: which trajectories are background
  ("stuff") rather than objects. Only for reporting quality on objects and background apart (the loss treats
  every trajectory alike); the TrajViT pipeline does not write it, and then every trajectory counts as an object.
"""

from __future__ import annotations

import os
import zipfile

import numpy as np

from datamodules.video import BadSampleError

MASK_ARRAY = "arr_0"
GRAPH_ARRAY = "tensor"
STUFF_ARRAY = "stuff"


class PseudoLabelError(BadSampleError):
    """A mask or graph file that is missing, unreadable, or inconsistent with its partner."""


def pseudo_label_paths(video_path: str) -> tuple[str, str]:
    """The pipeline's default names next to a video: ``a/b.mp4`` -> ``a/b_mask.npz``, ``a/b_graph.npz``."""
    stem = os.path.splitext(video_path)[0]
    return f"{stem}_mask.npz", f"{stem}_graph.npz"


def shard_label_paths(folder: str, shard: str, key: str) -> tuple[str, str]:
    """The pseudo-labels of tar shard sample ``key`` under ``folder`` (``trajtok pseudo-label`` of shards writes
    them there, ``ShardDataModule(pseudo_labels=folder)`` reads them): ``<folder>/<shard name>/<key>_mask.npz``
    and ``_graph.npz``, the shard's file name without ``.tar`` / ``.tar.gz`` / ``.tgz`` keeping keys of different
    shards apart."""
    return pseudo_label_paths(os.path.join(folder, shard_name(shard), key + ".mp4"))


def shard_name(shard: str) -> str:
    """A shard's file name without ``.tar`` / ``.tar.gz`` / ``.tgz``: the folder of its samples' pseudo-labels."""
    name = os.path.basename(shard)
    for suffix in (".tar.gz", ".tgz", ".tar"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def write_masks(path: str, masks: np.ndarray) -> None:
    """Write uint8 ``(T, H, W)`` segment ids (compressed; masks are mostly runs of equal ids)."""
    if masks.dtype != np.uint8 or masks.ndim != 3:
        raise ValueError(f"masks must be uint8 (T, H, W), got {masks.dtype} {masks.shape}")
    np.savez_compressed(path, masks)


def write_graph(path: str, graph: np.ndarray, stuff: np.ndarray | None = None) -> None:
    """Write the ``(M, T)`` trajectory graph as int64 under the pipeline's array name, and ``stuff`` (bool
    ``(M,)``, the background trajectories) when given."""
    if graph.ndim != 2:
        raise ValueError(f"graph must be (M, T), got shape {graph.shape}")
    arrays = {GRAPH_ARRAY: graph.astype(np.int64)}
    if stuff is not None:
        if stuff.shape != graph.shape[:1]:
            raise ValueError(f"stuff must be ({graph.shape[0]},) like the graph's rows, got shape {stuff.shape}")
        arrays[STUFF_ARRAY] = stuff.astype(bool)
    np.savez_compressed(path, **arrays)


def _load_arrays(path: str, name: str, optional: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Array ``name`` of an npz file, and array ``optional`` if the file has it (else None)."""
    if not os.path.isfile(path):
        raise PseudoLabelError(path, "file not found")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if name not in npz.files:
                raise PseudoLabelError(path, f"no array {name!r} (has {npz.files})")
            return npz[name], (npz[optional] if optional in npz.files else None)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:  # np.load's errors for non-npz / truncated files
        raise PseudoLabelError(path, f"cannot read npz: {e}") from e


def load_pseudo_labels(mask_path: str, graph_path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read and check a mask/graph pair: masks uint8 ``(T, H, W)``, graph int64 ``(M, T)`` and its ``stuff``
    flags bool ``(M,)`` (all False when the file has none)."""
    masks, _ = _load_arrays(mask_path, MASK_ARRAY)
    graph, stuff = _load_arrays(graph_path, GRAPH_ARRAY, STUFF_ARRAY)
    if masks.ndim != 3:
        raise PseudoLabelError(mask_path, f"masks must be (T, H, W), got shape {masks.shape}")
    if graph.ndim != 2 or graph.shape[1] != masks.shape[0]:
        raise PseudoLabelError(graph_path, f"graph shape {graph.shape} does not match {masks.shape[0]} mask frames")
    if graph.size and (graph.min() < 0 or graph.max() > 255):
        raise PseudoLabelError(graph_path, "graph ids must lie in 0..255 (uint8 mask ids)")
    if stuff is None:
        stuff = np.zeros(graph.shape[:1], dtype=bool)
    elif stuff.shape != graph.shape[:1]:
        raise PseudoLabelError(graph_path, f"stuff shape {stuff.shape} does not match the graph's {graph.shape[0]} rows")
    return masks.astype(np.uint8, copy=False), graph.astype(np.int64, copy=False), stuff.astype(bool, copy=False)
