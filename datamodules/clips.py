"""The clip data set: decoding an annotated video's clip with its pseudo-labels and the transforms, under the
bad-sample policy (``datamodules.bad_samples``).

It is what the video-text, classification and QA data sets have in common; each of them only says what a
sample holds besides the clip (``load``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from jsonargparse.typing import NonNegativeInt

from datamodules.annotations import LabelledVideoRecord, VideoTextRecord
from datamodules.bad_samples import OnBadSample, RecordDataset
from datamodules.options import ClipOptions
from datamodules.pseudo_label_files import PseudoLabelError, load_pseudo_labels
from datamodules.transforms import (
    eval_clip_transform,
    squash_clip_transform,
    train_clip_transform,
)
from datamodules.video import DecodedClip, decode_clip

# What a clip dataset needs of a record: video, start_sec, end_sec, mask, graph.
ClipRecord = VideoTextRecord | LabelledVideoRecord


def drop_missing_trajectories(masks: torch.Tensor, graph: torch.Tensor) -> torch.Tensor:
    """Zero graph entries whose segment id no longer occurs in that frame's mask (cropped away or
    lost in resizing), so no trajectory claims a segment with no pixels."""
    num_frames = masks.shape[0]
    present = torch.zeros(num_frames, 256, dtype=torch.bool)
    present.scatter_(1, masks.reshape(num_frames, -1).long(), True)
    present[:, 0] = False  # id 0 is "absent", never a segment
    keep = present[torch.arange(num_frames)[None, :], graph]  # (M, T)
    return torch.where(keep, graph, torch.zeros_like(graph))


def clip_sample(clip: DecodedClip, labels: tuple[str, str] | None, video: str, train: bool,
                options: ClipOptions) -> dict[str, torch.Tensor]:
    """``video`` float ``(T, 3, S, S)`` of a decoded clip, transformed as ``options`` say (random resized crop and
    flip in training, centre crop or squash otherwise: ``eval_resize``), plus ``mask``, ``graph`` and ``stuff`` of
    the pseudo-label files ``labels`` (mask, graph) sampled at the clip's frames and transformed with them; ``video``
    names the video in errors (file sets and tar shards share this)."""
    masks = graph = stuff = None
    if labels is not None:
        masks_np, graph_np, stuff = load_pseudo_labels(*labels)
        if masks_np.shape[0] != clip.num_range_frames:
            raise PseudoLabelError(labels[0], f"has {masks_np.shape[0]} frames, the video ({video}) has {clip.num_range_frames}")
        masks = torch.from_numpy(masks_np[clip.indices])
        graph = torch.from_numpy(graph_np[:, clip.indices])
    size = options.image_size
    if train:
        frames, masks = train_clip_transform(clip.frames, size, options.crop_scale, options.horizontal_flip, masks)
    elif options.eval_resize == "squash":
        frames, masks = squash_clip_transform(clip.frames, size, masks)
    else:
        frames, masks = eval_clip_transform(clip.frames, size, masks)
    out = {"video": frames}
    if masks is not None:
        out["mask"] = masks
        out["graph"] = drop_missing_trajectories(masks, graph)
        out["stuff"] = torch.from_numpy(stuff)
    return out


class ClipDataset(RecordDataset):
    """Clips of annotated videos: decoding with pseudo-labels and transforms, under the bad-sample policy
    of ``RecordDataset`` (unusable: a missing, corrupt, truncated, empty or audio-only video; broken
    pseudo-labels).

    ``clip`` (``datamodules.options.ClipOptions``, as the datamodules take it) says how a clip is read and
    transformed. Subclasses say what a sample holds besides the clip (``load``).
    """

    def __init__(
        self,
        records: Sequence[ClipRecord],
        clip: ClipOptions = ClipOptions(),
        train: bool = False,
        on_bad_video: OnBadSample = "skip",
        load_pseudo_labels: bool = True,
        max_reported: NonNegativeInt = 10,
    ) -> None:
        super().__init__(records, on_bad_video, max_reported)
        self.clip = clip
        self.train = train
        half = [r.video for r in self.records if (r.mask is None) != (r.graph is None)]
        if load_pseudo_labels and half:
            raise ValueError(f"{len(half)} records name only one of mask / graph, e.g. {half[0]}")
        with_labels = sum(r.mask is not None for r in self.records)
        if load_pseudo_labels and 0 < with_labels < len(self.records):
            # Mixed batches would silently lose the segmentation targets of some clips.
            raise ValueError(
                f"{with_labels} of {len(self.records)} records have mask and graph files; give them for all or "
                "set load_pseudo_labels=False"
            )
        self.load_pseudo_labels = load_pseudo_labels and with_labels > 0
        if on_bad_video == "raise":
            self.check_files_exist()  # again: the pseudo-label files count once load_pseudo_labels is known

    def record_files(self, index: int) -> list[str]:
        rec = self.records[index]
        video = [rec.video] if isinstance(rec.video, (str, os.PathLike)) and "://" not in str(rec.video) else []
        labels = [rec.mask, rec.graph] if getattr(self, "load_pseudo_labels", False) else []
        return [str(path) for path in [*video, *labels]]

    def load_clip(self, rec: ClipRecord) -> dict[str, torch.Tensor]:
        """``video`` of a record, transformed, plus ``mask`` and ``graph`` when pseudo-labels are loaded;
        or a ``BadSampleError`` naming the file that prevents it."""
        sampling = "random" if self.train else self.clip.eval_sampling
        decoded = decode_clip(rec.video, self.clip.num_frames, sampling, rec.start_sec, rec.end_sec)
        labels = (rec.mask, rec.graph) if self.load_pseudo_labels else None
        return clip_sample(decoded, labels, str(rec.video), self.train, self.clip)
