"""Data: video decoding, sampling, transforms, annotation reading, and the datamodules.

Nothing here knows a model. Models and data meet in the batch, a dict with these keys:

- ``video``: float32 ``(B, T, 3, H, W)``, normalised with the ImageNet mean/std; images are ``T = 1``.
- ``text``: ``list[str]`` of length B, one caption per clip (a random one of its captions in training,
  the first in evaluation).
- ``captions``: ``list[list[str]]``, all captions of each clip (retrieval evaluation ranks every one).
- ``index``: long ``(B,)``, the sample's index in its data set (for tar shards: shard number x 1,000,000 +
  position in the shard, unique but not contiguous); distributed samplers repeat samples to even out
  ranks, and evaluation de-duplicates by this index.
- ``label``: long ``(B,)``, in classification batches (which have no ``text`` / ``captions``): the class
  index of each clip in the datamodule's ``class_names``.
- ``question``, ``answer``: ``list[str]`` of length B, in question-answering batches (which have no
  ``text`` / ``captions`` / ``label``, nor ``mask`` / ``graph``): one question about each clip and its
  answer. A video with several questions is several samples.
- ``options``: ``list[list[str]]``, in QA batches: each question's multiple-choice options, ``[]`` for an
  open-ended question.
- ``answer_index``: long ``(B,)``, in QA batches: the answer's position in ``options``, -1 when open-ended.
- ``type``: ``list[str]``, in QA batches: each question's type as its row names it (the motion set's
  ``qa_motion.TYPES``), ``""`` when it names none (the default synthetic set); accuracy is also reported per type.
- ``prior_index``: long ``(B,)``, in QA batches: the option the answer prior picks (the split's most frequent
  answer of the question's type and option set), -1 when open-ended; the prior is scored beside the model.
- ``skipped``: ``list[dict]``, in batches of the clip datamodules (usually empty): the unusable samples
  (``on_bad_video: skip``) drawn for this batch and left out of it (the batch is that much smaller), each
  ``{"index", "path", "reason", "origin"}`` (``origin``: the annotation file and row, or None);
  ``trajtok.callbacks.BadSampleReport`` counts each once per epoch, across workers and ranks. A batch whose
  samples were all unusable holds ``skipped`` alone (no ``video``); the module skips it.
- ``mask``: uint8 ``(B, T, H, W)``, optional (present when the data names pseudo-label files, e.g. the
  synthetic default): per-frame segment ids at the input resolution, cropped and resized (nearest) with
  the video; 0 = no segment. Ids are per frame, not per trajectory.
- ``graph``: long ``(B, M, T)``, with ``mask``: trajectory ``m`` is segment ``graph[b, m, t]`` of frame
  ``t``, 0 = absent in that frame (occluded or cropped away); rows of all zeros are padding.
- ``stuff``: bool ``(B, M)``, with ``graph``: trajectory ``m`` is background ("stuff", e.g. the synthetic set's
  textured background) rather than an object; for reporting quality apart, all False when the files say nothing.

Modules: ``video`` (PyAV decoding and frame sampling; ``VIDEO_EXTENSIONS``), ``transforms`` (crop / resize /
normalise in torch), ``rows`` (reading JSONL / JSON / CSV files as numbered rows and checking their values),
``annotations`` (the records of annotation rows, class folders), ``pseudo_label_files`` (the mask + trajectory-graph
files: names, reading, writing), ``synthetic`` (the embedded default data set), ``synthetic_motion`` (its
motion scenario, the motion test set), ``options`` (the option groups every
datamodule takes: ``ClipOptions`` / ``FrameOptions``, ``LoaderOptions``, ``AnnotationKeys``, ``SyntheticOptions``;
the data sets take them too), ``bad_samples`` (the skip-or-raise policy for unusable samples, ``RecordDataset``),
``clips`` (``ClipDataset``: a clip with its pseudo-labels), ``collate`` (the collate functions), ``base``
(``ClipDataModule``, the split loaders; the split / stage mapping), ``video_text`` (video-text dataset,
``VideoTextDataModule``), ``classification`` (class lists, labelled dataset, collate, ``ClassificationDataModule``,
whose batches carry ``label`` instead of ``text`` / ``captions``), ``qa`` (question-answering dataset, collate,
``QADataModule``, whose batches carry ``question``, ``answer``, ``options``, ``answer_index``, ``type`` and
``prior_index``; synthetic questions), ``qa_motion`` (the motion test set's questions, answers balanced per type), ``shards`` (video-text
pairs from WebDataset-style tar shards, as video2dataset writes them, split over ranks and workers:
``ShardedVideoTextDataset``, ``ShardDataModule``, ``write_shards``), ``images`` (image-text data as one-frame clips
from annotation files, caption folders, tar shards or the synthetic set's frames: ``ImageTextDataModule``,
``ImageShardDataModule``), ``joint`` (``JointDataModule``: a video and an image datamodule
together, training batches ``{"video": batch, "image": batch}``, evaluation on the videos), ``public_sets`` (readers
of public data sets' official annotation files, MSR-VTT to SSv2, and their registry), ``public_data``
(``RetrievalBenchmark`` / ``ClassificationBenchmark``: datamodules over a downloaded public data set),
``video_segmentation`` (DAVIS / MOSE / YouTube-VIS for scoring the segmenter), ``videos_to_label`` (the videos
``trajtok pseudo-label`` labels: ``PseudoLabelDataModule``).
"""

from datamodules.bad_samples import OnBadSample
from datamodules.classification import (
    ClassificationDataModule,
    ClassificationDataset,
    collate_classification,
)
from datamodules.collate import collate_video_text
from datamodules.images import (
    ImageShardDataModule,
    ImageTextDataModule,
    ImageTextDataset,
    ShardedImageTextDataset,
)
from datamodules.joint import JointDataModule
from datamodules.options import (
    AnnotationKeys,
    ClipOptions,
    FrameOptions,
    LoaderOptions,
    SyntheticOptions,
)
from datamodules.qa import QADataModule, QADataset, collate_qa
from datamodules.shards import ShardDataModule, ShardedVideoTextDataset, write_shards
from datamodules.video_text import VideoTextDataModule, VideoTextDataset

__all__ = [
    "AnnotationKeys",
    "ClassificationDataModule",
    "ClassificationDataset",
    "ClipOptions",
    "FrameOptions",
    "ImageShardDataModule",
    "ImageTextDataModule",
    "ImageTextDataset",
    "JointDataModule",
    "LoaderOptions",
    "OnBadSample",
    "QADataModule",
    "QADataset",
    "ShardDataModule",
    "ShardedImageTextDataset",
    "ShardedVideoTextDataset",
    "SyntheticOptions",
    "VideoTextDataModule",
    "VideoTextDataset",
    "collate_classification",
    "collate_qa",
    "collate_video_text",
    "write_shards",
]
