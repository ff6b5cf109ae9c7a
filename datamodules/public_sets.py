"""Readers for the official annotation files of public video data sets (the benchmarks papers report), and a
registry of them. (Comparisons of this project's models with their peers are the top-level ``benchmarks/``
scripts, which this module has nothing to do with.)

A user who has downloaded MSR-VTT, DiDeMo, ActivityNet Captions, VATEX, Kinetics-400 or Something-Something
v2 reads the files as they were released, without converting them: each ``read_*`` function turns one
official file into the records the clip datasets take (``VideoTextRecord`` for retrieval,
``LabelledVideoRecord`` for classification), with the clip paths the benchmark's usual naming gives. The
protocol choices that make numbers comparable with published ones live here, once:

- MSR-VTT 1k-A (``read_msrvtt_jsfusion``): the 1,000 clips of JSFusion's test csv, one caption each.
  Training splits from ``MSRVTT_data.json`` (``read_msrvtt_data``): "9k", every clip but the 1k-A test
  clips (what ``MSRVTT_train.9k.csv`` lists, 9,000 clips); "7k", the official train + validate splits
  (``MSRVTT_train.7k.csv``, 7,010 clips); "test", the official test split (2,990 clips). Each clip keeps
  all its captions (20 in MSR-VTT): training draws one at random, evaluation ranks every one.
- DiDeMo and ActivityNet Captions (``read_didemo``, ``read_activitynet``): paragraph-to-video retrieval.
  All sentences of a video, in file order, joined by single spaces into one paragraph; the whole video is
  the clip (the sentences' times are not used).
- VATEX (``read_vatex``): every English caption of a clip (10) is a text-to-video query; video-to-text
  counts a clip's best-ranked caption.
- Kinetics-400 (``read_kinetics``) and Something-Something v2 (``read_ssv2``): labelled clips, for
  zero-shot classification (class names into prompt templates) or for training a probe.

Missing clip files are not checked here: the datasets handle them by their ``on_bad_video`` policy (skip
and report, or raise), as for any annotation file. A clip whose name the benchmarks' downloads spell with
different extensions or folders is looked up among those candidates (``_find_clip``); when none exists,
the first candidate is the record's path, so the error names the usual location.

Malformed files fail with a ValueError naming the file and the row (1-based) or key, as
the annotation readers do (``datamodules.rows``): a silently dropped row would shift retrieval ground truth.

``register_benchmark`` names a benchmark (its task, its reader per split, its usual clip folder and, for
classification, its official class list); ``datamodules.public_data`` builds datamodules from a name.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from datamodules.annotations import LabelledVideoRecord, VideoTextRecord
from datamodules.rows import (
    check_path,
    iter_csv,
    parse_text,
    read_json,
    require_keys,
    row_error,
)
from datamodules.video import VIDEO_EXTENSIONS

# Where the official MSR-VTT splits put a clip (the "split" field of MSRVTT_data.json's videos).
MSRVTT_SPLITS = {"7k": ("train", "validate"), "test": ("test",)}
# The label file Something-Something v2 ships beside its split files.
SSV2_LABELS = "something-something-v2-labels.json"


def _fail_at(path: str, where: str, reason: str) -> ValueError:
    """An error naming the file and a place in it that is not a numbered row (a key, a nested list)."""
    return ValueError(f"{path}, {where}: {reason}")


def _find_clip(candidates: Sequence[str]) -> str:
    """The first of ``candidates`` that exists, else the first (so a missing clip is reported where the
    benchmark's usual layout puts it)."""
    return next((c for c in candidates if os.path.isfile(c)), candidates[0])


def _with_extensions(stem: str, first: str | None = None) -> list[str]:
    """``stem`` with each video extension (``VIDEO_EXTENSIONS``, ``first`` moved ahead: the one the benchmark
    releases), in the order a clip is looked up."""
    extensions = [first] if first else []
    return [stem + ext for ext in [*extensions, *(e for e in VIDEO_EXTENSIONS if e != first)]]


def _json_list(path: str) -> list[tuple[int, Any]]:
    """(1-based position, row) of a JSON file holding one list."""
    data = read_json(path)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of rows, got {type(data).__name__}")
    if not data:
        raise ValueError(f"{path}: no rows")
    return list(enumerate(data, start=1))


def _csv_rows(path: str) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) of a CSV with a header line; at least one row."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"annotation file not found: {path}")
    rows = list(iter_csv(path))
    if not rows:
        raise ValueError(f"{path}: no rows")
    return rows


def _clip_name(value: Any, key: str, path: str, row: int) -> str:
    """A clip id used in a file name: a non-blank string without a path separator."""
    name = parse_text(value, key, path, row)
    check_path(name, key, path, row)
    if "/" in name or "\\" in name:
        raise row_error(path, row, f"{key!r} must be a clip id, not a path: {name!r}")
    return name


def _paragraph(sentences: Sequence[str]) -> str:
    """Sentences joined, in order, by single spaces (each stripped; blank ones add nothing)."""
    return " ".join(s.strip() for s in sentences if s.strip())


# --------------------------------------------------------------------------------------------- MSR-VTT


def _jsfusion_rows(path: str) -> list[tuple[int, str, str]]:
    """(row, video id, sentence) of JSFusion's csv (columns key, vid_key, video_id, sentence); a video id
    twice is refused, since 1k-A has one caption per clip and a repeat would double a clip."""
    out, seen = [], {}
    for number, row in _csv_rows(path):
        require_keys(row, ("video_id", "sentence"), path, number)
        video_id = _clip_name(row["video_id"], "video_id", path, number)
        if video_id in seen:
            raise row_error(path, number, f"video_id {video_id!r} repeats row {seen[video_id]}")
        seen[video_id] = number
        out.append((number, video_id, parse_text(row["sentence"], "sentence", path, number)))
    return out


def read_msrvtt_jsfusion(path: str, video_dir: str) -> list[VideoTextRecord]:
    """MSR-VTT 1k-A: one record per row of ``MSRVTT_JSFUSION_test.csv``, the clip
    ``<video_dir>/<video_id>.mp4`` with the row's sentence as its only caption."""
    path = str(path)
    return [
        VideoTextRecord(video=os.path.join(video_dir, f"{video_id}.mp4"), captions=(sentence,),
                        origin=f"{path}, row {number}")
        for number, video_id, sentence in _jsfusion_rows(path)
    ]


def read_msrvtt_data(
    path: str, video_dir: str, split: Literal["9k", "7k", "test"], test_csv: str | None = None
) -> list[VideoTextRecord]:
    """MSR-VTT clips of a split of ``MSRVTT_data.json``, each with all its captions, in the file's order.

    ``split``: "9k" (every clip except those of the 1k-A ``test_csv``, which it then requires), "7k" (the
    official train and validate splits) or "test" (the official test split). The clip is
    ``<video_dir>/<video_id>.mp4``. A sentence of an unknown video, a chosen video without sentences, or
    a 1k-A clip missing from the file raises ValueError naming where.
    """
    path = str(path)
    if split not in ("9k", "7k", "test"):
        raise ValueError(f"MSR-VTT split must be '9k', '7k' or 'test', got {split!r}")
    if split == "9k" and test_csv is None:
        raise ValueError("the MSR-VTT 9k split is every clip except the 1k-A test clips: give test_csv")
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("videos"), list) or not isinstance(
        data.get("sentences"), list
    ):
        raise ValueError(f"{path}: expected an object with lists 'videos' and 'sentences'")
    splits: dict[str, str] = {}
    for i, video in enumerate(data["videos"]):
        where = f"videos[{i}]"
        if not isinstance(video, dict) or not isinstance(video.get("video_id"), str) or not isinstance(
            video.get("split"), str
        ):
            raise _fail_at(path, where, "expected an object with string 'video_id' and 'split'")
        if video["video_id"] in splits:
            raise _fail_at(path, where, f"video_id {video['video_id']!r} appears twice")
        splits[video["video_id"]] = video["split"]
    captions: dict[str, list[str]] = {video_id: [] for video_id in splits}
    for i, sentence in enumerate(data["sentences"]):
        where = f"sentences[{i}]"
        if not isinstance(sentence, dict) or not isinstance(sentence.get("video_id"), str):
            raise _fail_at(path, where, "expected an object with a string 'video_id'")
        if sentence["video_id"] not in captions:
            raise _fail_at(path, where, f"video_id {sentence['video_id']!r} is not among 'videos'")
        caption = sentence.get("caption")
        if not isinstance(caption, str) or not caption.strip():
            raise _fail_at(path, where, f"'caption' must be a non-blank string, got {caption!r}")
        captions[sentence["video_id"]].append(caption.strip())
    if split == "9k":
        test_ids = {video_id for _, video_id, _ in _jsfusion_rows(str(test_csv))}
        unknown = sorted(test_ids - splits.keys())
        if unknown:
            raise ValueError(f"{test_csv}: {len(unknown)} 1k-A clips are not in {path}, e.g. {unknown[0]!r}")
        chosen = [video_id for video_id in splits if video_id not in test_ids]
    else:
        chosen = [video_id for video_id, s in splits.items() if s in MSRVTT_SPLITS[split]]
    if not chosen:
        raise ValueError(f"{path}: no videos in the {split!r} split")
    empty = next((video_id for video_id in chosen if not captions[video_id]), None)
    if empty is not None:
        raise ValueError(f"{path}: video {empty!r} has no sentences")
    return [
        VideoTextRecord(video=os.path.join(video_dir, f"{video_id}.mp4"), captions=tuple(captions[video_id]),
                        origin=f"{path}, video {video_id}")
        for video_id in chosen
    ]


# ------------------------------------------------------------------------------- paragraph retrieval


def read_didemo(path: str, video_dir: str) -> list[VideoTextRecord]:
    """DiDeMo paragraph-to-video: one record per video of a ``{train,val,test}_data.json`` list of
    ``{"video", "description", "times", ...}`` rows, its descriptions joined in file order into one
    paragraph. The clip is the whole video, ``<video_dir>/<video>`` as named, else its stem with a common
    video extension (copies are often transcoded to .mp4)."""
    path = str(path)
    descriptions: dict[str, list[str]] = {}
    first_row: dict[str, int] = {}
    for number, row in _json_list(path):
        require_keys(row, ("video", "description"), path, number)
        video = _clip_name(row["video"], "video", path, number)
        first_row.setdefault(video, number)
        descriptions.setdefault(video, []).append(parse_text(row["description"], "description", path, number))
    return [
        VideoTextRecord(
            video=_find_clip([os.path.join(video_dir, video),
                              *_with_extensions(os.path.join(video_dir, os.path.splitext(video)[0]))]),
            captions=(_paragraph(texts),),
            origin=f"{path}, row {first_row[video]}",
        )
        for video, texts in descriptions.items()
    ]


def read_activitynet(path: str, video_dir: str) -> list[VideoTextRecord]:
    """ActivityNet Captions paragraph-to-video: one record per key of ``val_1.json`` (or ``train.json``,
    ``{"v_<id>": {"duration", "timestamps", "sentences"}}``), its sentences joined in order into one
    paragraph. The clip is the whole video, ``<video_dir>/<key>`` with a common video extension."""
    path = str(path)
    data = read_json(path)
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path}: expected a non-empty JSON object of videos")
    records = []
    for key, video in data.items():
        where = f"key {key!r}"
        if not key.strip() or "/" in key or "\\" in key:
            raise _fail_at(path, where, "a video key must be a clip id")
        sentences = video.get("sentences") if isinstance(video, dict) else None
        if not isinstance(sentences, list) or not all(isinstance(s, str) for s in sentences):
            raise _fail_at(path, where, f"'sentences' must be a list of strings, got {sentences!r}")
        paragraph = _paragraph(sentences)
        if not paragraph:
            raise _fail_at(path, where, "no non-blank sentence")
        records.append(VideoTextRecord(video=_find_clip(_with_extensions(os.path.join(video_dir, key))),
                                       captions=(paragraph,), origin=f"{path}, {where}"))
    return records


# ----------------------------------------------------------------------------------------------- VATEX


def read_vatex(path: str, video_dir: str) -> list[VideoTextRecord]:
    """VATEX: one record per row of a ``vatex_*.json`` list of ``{"videoID", "enCap", "chCap"}``, with all
    its English captions; the clip is ``<video_dir>/<videoID>.mp4`` (``<ytid>_<start:06d>_<end:06d>``).
    A row without English captions (the private test split has none) raises ValueError."""
    path = str(path)
    records, seen = [], {}
    for number, row in _json_list(path):
        require_keys(row, ("videoID", "enCap"), path, number)
        video_id = _clip_name(row["videoID"], "videoID", path, number)
        if video_id in seen:
            raise row_error(path, number, f"videoID {video_id!r} repeats row {seen[video_id]}")
        seen[video_id] = number
        captions = row["enCap"]
        if not isinstance(captions, list) or not captions:
            raise row_error(path, number, f"'enCap' must be a non-empty list of captions, got {captions!r}")
        records.append(VideoTextRecord(
            video=os.path.join(video_dir, f"{video_id}.mp4"),
            captions=tuple(parse_text(c, "enCap", path, number) for c in captions),
            origin=f"{path}, row {number}",
        ))
    return records


# -------------------------------------------------------------------------------------- classification


def _whole_seconds(value: Any, key: str, path: str, row: int) -> int:
    """A clip boundary of the Kinetics csv: a whole number of seconds >= 0 ("14" or "14.0")."""
    try:
        seconds = float(value)
    except (TypeError, ValueError) as e:
        raise row_error(path, row, f"{key!r} must be a whole number of seconds, got {value!r}") from e
    if not seconds >= 0 or not seconds.is_integer():
        raise row_error(path, row, f"{key!r} must be a whole number of seconds >= 0, got {value!r}")
    return int(seconds)


def read_kinetics(path: str, video_dir: str, split: str | None = None) -> list[LabelledVideoRecord]:
    """Kinetics-400 (also 600 / 700): one record per row of the official csv (``label, youtube_id,
    time_start, time_end, split``), labelled with the class name; with ``split`` ("train", "val", "test")
    only the rows of that split.

    The clip is the trimmed 10-second file ``<youtube_id>_<time_start:06d>_<time_end:06d>.mp4`` (the
    downloaders' naming), directly in ``video_dir``, in a ``<split>/`` folder (the CVDF layout), in a
    ``<label>/`` folder (the ActivityNet crawler's; spaces in the label also as "_"), or in
    ``<split>/<label>/``; also with another video extension (.mkv, .webm ...).
    """
    path = str(path)
    records = []
    for number, row in _csv_rows(path):
        require_keys(row, ("label", "youtube_id", "time_start", "time_end"), path, number)
        if split is not None:
            require_keys(row, ("split",), path, number)
            if row["split"] != split:
                continue
        label = parse_text(row["label"], "label", path, number)
        youtube_id = _clip_name(row["youtube_id"], "youtube_id", path, number)
        start = _whole_seconds(row["time_start"], "time_start", path, number)
        end = _whole_seconds(row["time_end"], "time_end", path, number)
        name = f"{youtube_id}_{start:06d}_{end:06d}"
        labels = dict.fromkeys([label, label.replace(" ", "_")])
        splits = dict.fromkeys(["", row.get("split", "")])
        folders = dict.fromkeys(os.path.normpath(os.path.join(video_dir, s, f)) for s in splits for f in ["", *labels])
        candidates = [os.path.join(folder, name + ext) for ext in VIDEO_EXTENSIONS for folder in folders]
        records.append(LabelledVideoRecord(video=_find_clip(candidates), label=label, origin=f"{path}, row {number}"))
    if not records:
        raise ValueError(f"{path}: no rows of split {split!r}")
    return records


def ssv2_template(template: str) -> str:
    """A Something-Something v2 row's template as its label file names it: without the brackets
    ("Putting [something] on [something]" -> "Putting something on something")."""
    return template.replace("[", "").replace("]", "")


def read_ssv2_labels(path: str) -> list[str]:
    """Something-Something v2 class names in class-index order, from ``something-something-v2-labels.json``
    (``{template: "index"}``); the indices must be 0 .. N-1, each once."""
    path = str(path)
    data = read_json(path)
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path}: expected a non-empty JSON object of template -> class index")
    names: dict[int, str] = {}
    for name, index in data.items():
        if not isinstance(index, (str, int)) or isinstance(index, bool) or not str(index).isdigit():
            raise _fail_at(path, f"key {name!r}", f"class index must be digits, got {index!r}")
        if int(index) in names:
            raise _fail_at(path, f"key {name!r}", f"class index {index} is also {names[int(index)]!r}")
        names[int(index)] = name
    if sorted(names) != list(range(len(names))):
        raise ValueError(f"{path}: class indices must be 0 .. {len(names) - 1}, each once")
    return [names[i] for i in range(len(names))]


def read_ssv2(path: str, labels_path: str, video_dir: str) -> list[LabelledVideoRecord]:
    """Something-Something v2: one record per row of ``something-something-v2-{train,validation}.json``
    (``{"id", "label", "template", "placeholders"}``), labelled with the class index its template (without
    brackets) has in ``labels_path``; the clip is ``<video_dir>/<id>.webm`` (or another extension when transcoded).
    A row without a template (the test split has none) or with an unknown one raises ValueError."""
    path = str(path)
    index = {name: i for i, name in enumerate(read_ssv2_labels(labels_path))}
    records = []
    for number, row in _json_list(path):
        require_keys(row, ("id", "template"), path, number)
        video_id = _clip_name(row["id"], "id", path, number)
        template = ssv2_template(parse_text(row["template"], "template", path, number))
        if template not in index:
            raise row_error(path, number, f"template {template!r} is not a class of {labels_path}")
        records.append(LabelledVideoRecord(
            video=_find_clip(_with_extensions(os.path.join(video_dir, video_id), first=".webm")),
            label=index[template], origin=f"{path}, row {number}",
        ))
    return records


# -------------------------------------------------------------------------------------------- registry

Task = Literal["retrieval", "classification"]
# (split, annotation file of each split the data has, clip folder) -> the split's records.
SplitReader = Callable[[str, Mapping[str, str], str], list[Any]]


@dataclass(frozen=True)
class Benchmark:
    """A benchmark as the datamodules see it.

    ``read(split, files, video_dir)`` gives a split's records from the annotation files of all splits
    (a training split may be defined by the test split's clips, as MSR-VTT 9k is). ``videos`` is the usual
    clip folder relative to the benchmark's root; ``class_names(files)``, for classification benchmarks
    that fix their class order, the class list (else the data's sorted label names are used).
    """

    name: str
    task: Task
    read: SplitReader
    videos: str
    class_names: Callable[[Mapping[str, str]], list[str]] | None = None


_BENCHMARKS: dict[str, Benchmark] = {}


def register_benchmark(
    name: str, task: Task, videos: str, class_names: Callable[[Mapping[str, str]], list[str]] | None = None
) -> Callable[[SplitReader], SplitReader]:
    """Decorator: make a split reader available as benchmark ``name``."""

    def decorate(read: SplitReader) -> SplitReader:
        if name in _BENCHMARKS:
            raise ValueError(f"benchmark name {name!r} is taken")
        _BENCHMARKS[name] = Benchmark(name, task, read, videos, class_names)
        return read

    return decorate


def list_benchmarks(task: Task | None = None) -> list[str]:
    """Registered benchmark names (of one task when given), sorted."""
    return sorted(name for name, b in _BENCHMARKS.items() if task is None or b.task == task)


def get_benchmark(name: str, task: Task | None = None) -> Benchmark:
    """A registered benchmark; ValueError naming the known ones (of ``task``) otherwise."""
    found = _BENCHMARKS.get(name)
    if found is None or (task is not None and found.task != task):
        kind = f"{task} " if task else ""
        raise ValueError(f"benchmark: unknown {kind}benchmark {name!r}; known: {', '.join(list_benchmarks(task))}")
    return found


def _split_file(files: Mapping[str, str], split: str, benchmark: str) -> str:
    if split not in files:
        raise ValueError(f"benchmark {benchmark!r}: no {split} annotations given (set {split}_annotations)")
    return files[split]


@register_benchmark("msrvtt_1ka", "retrieval", videos="videos/all")
def _msrvtt_1ka(split: str, files: Mapping[str, str], video_dir: str) -> list[VideoTextRecord]:
    """Every split in JSFusion's csv format."""
    return read_msrvtt_jsfusion(files[split], video_dir)


def _msrvtt_train_on(train_split: Literal["9k", "7k"]) -> SplitReader:
    """Train on a ``MSRVTT_data.json`` split; evaluate on 1k-A csv files."""

    def read(split: str, files: Mapping[str, str], video_dir: str) -> list[VideoTextRecord]:
        if split != "train":
            return read_msrvtt_jsfusion(files[split], video_dir)
        test_csv = _split_file(files, "test", f"msrvtt_{train_split}") if train_split == "9k" else None
        return read_msrvtt_data(files["train"], video_dir, train_split, test_csv)

    return read


register_benchmark("msrvtt_9k", "retrieval", videos="videos/all")(_msrvtt_train_on("9k"))
register_benchmark("msrvtt_7k", "retrieval", videos="videos/all")(_msrvtt_train_on("7k"))


@register_benchmark("didemo", "retrieval", videos="videos")
def _didemo(split: str, files: Mapping[str, str], video_dir: str) -> list[VideoTextRecord]:
    return read_didemo(files[split], video_dir)


@register_benchmark("activitynet", "retrieval", videos="videos")
def _activitynet(split: str, files: Mapping[str, str], video_dir: str) -> list[VideoTextRecord]:
    return read_activitynet(files[split], video_dir)


@register_benchmark("vatex", "retrieval", videos="videos")
def _vatex(split: str, files: Mapping[str, str], video_dir: str) -> list[VideoTextRecord]:
    return read_vatex(files[split], video_dir)


@register_benchmark("k400", "classification", videos="videos")
def _kinetics(split: str, files: Mapping[str, str], video_dir: str) -> list[LabelledVideoRecord]:
    """Each split's own csv (train.csv, validate.csv), every row."""
    return read_kinetics(files[split], video_dir)


def _ssv2_labels_beside(files: Mapping[str, str]) -> str:
    """The label file in the folder of the split files (where the official release puts it)."""
    return os.path.join(os.path.dirname(next(iter(files.values()))), SSV2_LABELS)


@register_benchmark("ssv2", "classification", videos="20bn-something-something-v2",
                    class_names=lambda files: read_ssv2_labels(_ssv2_labels_beside(files)))
def _ssv2(split: str, files: Mapping[str, str], video_dir: str) -> list[LabelledVideoRecord]:
    return read_ssv2(files[split], _ssv2_labels_beside(files), video_dir)
