"""COCO run-length encoded masks (the segmentations of YouTube-VIS annotation files), decoded in numpy.

A COCO RLE is ``{"size": [height, width], "counts": ...}``: alternating run lengths of 0s and 1s, starting with 0s,
over the mask read in column-major order (down each column, then the next column). ``counts`` is either a list of
ints ("uncompressed") or a string ("compressed"): each count is written as the difference to the count two
places before it (from the fourth count on), in little-endian groups of 5 bits, each group one character
``48 + bits`` with bit 0x20 set while more groups follow and bit 0x10 of the last group giving the sign.

pycocotools decodes these in C; it is not a dependency here, and these few lines do the same. Polygon
segmentations (lists of vertex lists) need rasterisation, which is left to pycocotools when it is installed.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def rle_counts(text: str) -> np.ndarray:
    """The run lengths of a compressed COCO RLE string."""
    try:
        codes = np.frombuffer(text.encode("ascii"), dtype=np.uint8).astype(np.int64) - 48
    except UnicodeEncodeError as e:
        raise ValueError(f"a compressed RLE is ASCII, got {text[:40]!r}") from e
    if len(codes) == 0:
        return np.zeros(0, dtype=np.int64)
    if codes.min() < 0 or codes.max() > 63:
        raise ValueError(f"not a compressed COCO RLE: characters outside '0'..'o' in {text[:40]!r}")
    last = (codes & 0x20) == 0  # a count's last 5-bit group
    if not last[-1]:
        raise ValueError(f"a compressed COCO RLE ends inside a count: {text[-40:]!r}")
    count_of = np.concatenate([[0], np.cumsum(last)[:-1]])  # which count each character belongs to
    starts = np.flatnonzero(np.concatenate([[True], last[:-1]]))
    position = np.arange(len(codes)) - starts[count_of]
    values = np.zeros(len(starts), dtype=np.int64)
    np.add.at(values, count_of, (codes & 0x1F) << (5 * position))  # disjoint bits: the sum is their union
    groups = position[last] + 1
    negative = (codes[last] & 0x10) != 0
    values[negative] |= -1 << (5 * groups[negative])  # sign extension
    # From the fourth count on, each is stored as the difference to the count two places before it.
    counts = values.copy()
    counts[1::2] = np.cumsum(values[1::2])
    counts[2::2] = np.cumsum(values[2::2])
    return counts


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """The ``(height, width)`` bool mask of a COCO RLE, compressed or not."""
    size, counts = rle.get("size"), rle.get("counts")
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, int) and v >= 0 for v in size)):
        raise ValueError(f"an RLE needs 'size': [height, width], got {size!r}")
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    if isinstance(counts, str):
        runs = rle_counts(counts)
    elif isinstance(counts, list) and all(isinstance(v, int) for v in counts):
        runs = np.asarray(counts, dtype=np.int64)
    else:
        raise ValueError(f"an RLE's 'counts' must be a string or a list of ints, got {type(counts).__name__}")
    height, width = size
    if (runs < 0).any() or runs.sum() != height * width:
        raise ValueError(f"RLE counts cover {int(runs.sum())} pixels (or are negative), its size {height}x{width} "
                         f"has {height * width}")
    flat = np.repeat(np.arange(len(runs)) % 2 == 1, runs)
    return flat.reshape(width, height).T


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """The ``(height, width)`` bool mask of one YouTube-VIS / COCO segmentation: an RLE (``decode_rle``), None
    (nothing in this frame), or polygons (through pycocotools, when installed). An RLE of another size is refused."""
    if segmentation is None:
        return np.zeros((height, width), dtype=bool)
    if isinstance(segmentation, dict):
        mask = decode_rle(segmentation)
        if mask.shape != (height, width):
            raise ValueError(f"an RLE of size {mask.shape[0]}x{mask.shape[1]} for a {height}x{width} frame")
        return mask
    if isinstance(segmentation, list):
        try:
            from pycocotools import mask as coco_mask
        except ImportError as e:
            raise ValueError("polygon segmentations need pycocotools (pip install pycocotools); RLE ones do "
                             "not") from e
        return coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects(segmentation, height, width))).astype(bool)
    raise ValueError(f"a segmentation must be an RLE dict, polygons or null, got {type(segmentation).__name__}")
