"""Panoptic trajectory pseudo-labels of real videos (TrajViT's pipeline), written in the format the segmenter
trains on (``datamodules.pseudo_label_files``): ``trajtok pseudo-label --config configs/pseudo_labels.yaml``.

Modules: ``cuts`` (chunks: fixed, or at shot cuts), ``components`` (segments enclosed by a boundary map),
``segmenters`` (DirectSAM, SAM automatic masks), ``mask_generation`` (SAM's steps after the model), ``loading``
(where their models load from: a local folder, or a downloaded hub id; else one error naming the option),
``propagators`` (SAM 2 / EdgeTAM video tracking), ``linking`` (trajectories across chunks; the output arrays), ``pipeline`` (one video end to end), ``module`` (the
LightningModule whose predict step labels a batch), ``writer`` (files, annotations, statistics). The videos come
from ``datamodules.videos_to_label``. This package sits at the top layer: it knows the core, the data and the
visualiser.
"""

from trajtok.pseudo_labels.cuts import Chunk, FixedChunks, ShotCuts
from trajtok.pseudo_labels.linking import ChunkLabels, link_chunks, match_segments
from trajtok.pseudo_labels.module import PseudoLabeller
from trajtok.pseudo_labels.pipeline import Clip, label_stats, label_video
from trajtok.pseudo_labels.propagators import VideoTracker
from trajtok.pseudo_labels.segmenters import DirectSAMSegmenter, SAMEverythingSegmenter
from trajtok.pseudo_labels.writer import PseudoLabelWriter

__all__ = [
    "Chunk",
    "ChunkLabels",
    "Clip",
    "DirectSAMSegmenter",
    "FixedChunks",
    "PseudoLabelWriter",
    "PseudoLabeller",
    "SAMEverythingSegmenter",
    "ShotCuts",
    "VideoTracker",
    "label_stats",
    "label_video",
    "link_chunks",
    "match_segments",
]
