"""Datamodules over a downloaded public data set (a benchmark, in the papers' sense), read from its official files
(``datamodules.public_sets``).

``RetrievalBenchmark`` (video-text batches, as ``VideoTextDataModule``) and ``ClassificationBenchmark``
(labelled batches, as ``ClassificationDataModule``) take a registered benchmark name and the folder the
benchmark was downloaded to (``root``). Annotation files and the clip folder are paths relative to
``root`` (absolute paths are taken as they are); the presets in ``configs/benchmarks/`` give the usual
ones, so pointing ``--data.init_args.root`` at a download is enough. Everything after reading (decoding,
sampling, the bad-video policy, the batch contract) is the parent datamodule's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from datamodules.annotations import LabelledVideoRecord, VideoTextRecord
from datamodules.bad_samples import OnBadSample
from datamodules.base import SPLIT_STAGES
from datamodules.classification import ClassificationDataModule
from datamodules.options import ClipOptions, LoaderOptions
from datamodules.public_sets import Benchmark, Task, get_benchmark
from datamodules.video_text import VideoTextDataModule


class _BenchmarkFiles:
    """The annotation file of each split and the clip folder of a benchmark, resolved against ``root``."""

    def __init__(
        self, benchmark: str, task: Task, root: str, annotations: Mapping[str, str | None], video_dir: str | None
    ) -> None:
        self.benchmark: Benchmark = get_benchmark(benchmark, task)
        given = {split: path for split, path in annotations.items() if path is not None}
        if not given:
            raise ValueError(f"benchmark {benchmark!r}: set at least one of train_annotations, val_annotations, "
                             "test_annotations (paths relative to root)")
        self.root = str(root)
        self.files = {split: os.path.join(self.root, path) for split, path in given.items()}
        self.video_dir = os.path.join(self.root, video_dir if video_dir is not None else self.benchmark.videos)

    def split_paths(self) -> tuple[str | None, str | None, str | None]:
        """Each split's resolved annotation file, None where the split has none."""
        return tuple(self.files.get(split) for split in SPLIT_STAGES)  # type: ignore[return-value]

    def read(self, split: str) -> list:
        return self.benchmark.read(split, self.files, self.video_dir)


class RetrievalBenchmark(VideoTextDataModule):
    """Video-text retrieval data of a downloaded benchmark (``msrvtt_1ka``, ``msrvtt_9k``, ``msrvtt_7k``,
    ``didemo``, ``activitynet``, ``vatex``); batches as ``VideoTextDataModule``'s.

    Args:
        benchmark: a registered retrieval benchmark (``datamodules.public_sets.list_benchmarks("retrieval")``).
        root: the folder the benchmark was downloaded to.
        train_annotations, val_annotations, test_annotations: the official annotation files, relative to
            ``root``; splits left None have no data.
        video_dir: the clip folder, relative to ``root``; default the benchmark's usual one.
        clip, loader, on_bad_video: as for ``VideoTextDataModule``.
    """

    def __init__(
        self,
        benchmark: str,
        root: str,
        train_annotations: str | None = None,
        val_annotations: str | None = None,
        test_annotations: str | None = None,
        video_dir: str | None = None,
        clip: ClipOptions = ClipOptions(),
        loader: LoaderOptions = LoaderOptions(),
        on_bad_video: OnBadSample = "skip",
    ) -> None:
        files = _BenchmarkFiles(benchmark, "retrieval", root, {
            "train": train_annotations, "val": val_annotations, "test": test_annotations}, video_dir)
        train, val, test = files.split_paths()
        super().__init__(
            root=files.root, train_annotations=train, val_annotations=val, test_annotations=test, clip=clip,
            loader=loader, on_bad_video=on_bad_video, load_pseudo_labels=False,
        )
        self.source = files

    def read_records(self, split: str, path: str) -> list[VideoTextRecord]:
        """The records of a split, read with the benchmark's reader."""
        return self.source.read(split)


class ClassificationBenchmark(ClassificationDataModule):
    """Labelled clips of a downloaded benchmark (``k400``, ``ssv2``), for zero-shot classification with the
    CLIP head or for training a probe; batches as ``ClassificationDataModule``'s.

    The class list is ``class_names`` when given, else the benchmark's official order when it has one
    (SSv2's label file), else the sorted label names of the train split (of every split given without
    one), which for Kinetics is the usual alphabetical class index.

    Args:
        benchmark: a registered classification benchmark
            (``datamodules.public_sets.list_benchmarks("classification")``).
        root, train_annotations, val_annotations, test_annotations, video_dir: as for ``RetrievalBenchmark``.
        class_names: the class list (names, or a .txt / .json file), overriding the benchmark's.
        clip, loader, on_bad_video: as for ``ClassificationDataModule``.
    """

    def __init__(
        self,
        benchmark: str,
        root: str,
        train_annotations: str | None = None,
        val_annotations: str | None = None,
        test_annotations: str | None = None,
        video_dir: str | None = None,
        class_names: list[str] | str | None = None,
        clip: ClipOptions = ClipOptions(),
        loader: LoaderOptions = LoaderOptions(),
        on_bad_video: OnBadSample = "skip",
    ) -> None:
        files = _BenchmarkFiles(benchmark, "classification", root, {
            "train": train_annotations, "val": val_annotations, "test": test_annotations}, video_dir)
        train, val, test = files.split_paths()
        super().__init__(
            root=files.root, train_annotations=train, val_annotations=val, test_annotations=test,
            class_names=class_names, clip=clip, loader=loader, on_bad_video=on_bad_video, load_pseudo_labels=False,
        )
        self.source = files

    def records(self, split: str) -> list[LabelledVideoRecord]:
        """The labelled records of a split that has annotations, read once with the benchmark's reader."""
        if split not in self._records:
            if split not in self.source.files:
                raise ValueError(f"no {split} data: set {split}_annotations")
            self._records[split] = self.source.read(split)
        return self._records[split]

    def resolve_class_names(self) -> list[str]:
        """The class list (see the class docstring)."""
        official = self.source.benchmark.class_names
        if self._class_names is None and official is not None:
            self._class_names = official(self.source.files)
        return super().resolve_class_names()
