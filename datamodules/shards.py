"""Video-text pairs from WebDataset tar shards, the layout video2dataset writes, read and written with
``webdataset``.

A shard is a tar file whose members are grouped by key: ``<key>.mp4`` (the video; any of
``datamodules.video.VIDEO_EXTENSIONS``, the first of them if several), ``<key>.txt`` (a caption) and/or
``<key>.json`` (a ``"caption"`` string or list and/or a ``"captions"`` list; every other field is ignored). The
members of one key are consecutive in the tar. A key is a member's path up to the first dot of its file name
(WebDataset's rule), so ``a/x1.mp4`` and ``a/x1.json`` make one sample ``a/x1``; hidden files (``a/._x1.mp4``)
belong to none. A key is one sample of its shard: a key met again later in the shard (a tar appended to, or two
writers' output joined) is a bad sample, skipped and counted, never trained twice (its pseudo-labels, named by
key, would be the first one's); so is a sample with two members of one extension. A sample's captions are the
``.txt`` caption followed by the ``.json`` ones it does not already hold (video2dataset writes the same caption
in both); the first one is the evaluation text. Shards are streamed (``.tar.gz`` works as well) and must be local
(or mounted) files. Batches carry ``video``, ``text``, ``captions`` and ``index``; with ``pseudo_labels`` (a
folder) also ``mask``, ``graph`` and ``stuff``, read from the files ``trajtok pseudo-label`` writes for shard
samples, ``<folder>/<shard name>/<key>_mask.npz`` and ``_graph.npz`` (``pseudo_label_files.shard_label_paths``; a
sample without them is a bad sample).

What webdataset does here: brace expansion of shard patterns (``braceexpand``, its dependency), the key
rule, the per-epoch shard list, the split over ranks and workers, the shuffle buffer, ``with_epoch`` and the
tar writer. What is this project's own: reading the tar stream (Python's ``tarfile``, as webdataset reads it,
but checking where it stops, see ``tar_members``) and grouping its members, decoding clips with PyAV, the
captions' rules, ``index``, the bad-sample policy and its reports in the batch, and the seeding that makes
every epoch (hence a resumed run) read the same samples in the same order.

Who reads what. Each reader (a DataLoader worker of a rank; with ``num_workers=0`` the rank's main
process) reads whole shards: the epoch's shard order (shuffled with ``seed`` and the epoch) is dealt
out to ranks round-robin, then each rank's shards to its workers round-robin, so every shard, hence
every sample, is read by exactly one reader per epoch. There must be at least as many shards as readers
(ranks x workers), else ``ShardedVideoTextDataset`` raises; ``ShardDataModule`` instead lowers a
loader's ``num_workers`` to what the shards allow, with a warning. An optional shuffle buffer mixes
samples across the reader's shards (it holds encoded bytes, decoded as they leave the buffer).

Uneven shards. When shards do not divide evenly (or hold different numbers of samples), readers, and so
ranks, get different numbers of samples. That is harmless for one process and for evaluation (every
sample exactly once; metrics sync at epoch end), but DDP training needs the same number of steps on
every rank, or the rank with more batches waits forever for the others in its gradient all-reduce.
``samples_per_epoch`` is the answer (WebDataset's ``with_epoch``): each rank then yields exactly
``samples_per_epoch // world_size`` samples, split as evenly as possible over its workers. A reader
stops when it has its share (the rest of its shards waits for a later epoch, whose shard order
differs) and starts over on its shards when they run out first (repeating samples, as
``DistributedSampler`` repeats samples to even out ranks; evaluation de-duplicates by ``index``).
With it the dataset has a length (samples per rank) and ``ShardLoader`` the exact number of batches
(each worker batches its own samples, so training's ``drop_last`` drops a partial batch per worker),
so Lightning knows the epoch's length. A good value is a bit under the number of samples (skipped bad
samples lower it).

Epochs. The shard order and the shuffle buffer's draws depend on ``seed`` and the epoch given to
``set_epoch``, which has to reach the process that reads: call it before ``iter(loader)`` and use
non-persistent workers (each epoch's workers then get a fresh copy of the dataset). ``ShardLoader``
does this for you: at each ``iter()`` it sets the epoch from a callable (``ShardDataModule`` passes
the trainer's ``current_epoch``, which also holds on resume; a run resumed mid-epoch reads that
epoch again from its start) or, without one, counts its own iterations.

index. A sample's ``index`` is ``shard_number * INDEX_STRIDE + position``: the shard's position in the
expanded shard list and the sample's position (0-based, in keys) within the shard, e.g. 3000017 is the
18th sample of the 4th shard. It is stable across epochs, workers and ranks as long as the shard list
is the same, but not contiguous. A shard may hold at most ``INDEX_STRIDE`` samples.

Bad samples. ``on_bad_video="skip"`` drops a sample whose video does not decode or that has no video
or caption, or whose key or members repeat (an iterable dataset cannot put another sample in its place: the
epoch is one sample shorter, or under ``samples_per_epoch`` the reader reads on to fill its share), a shard
that does not exist (left out when the dataset is built) and the rest of a damaged shard;
``num_skipped`` / ``skipped_paths`` and ``num_bad_shards`` / ``bad_shards`` count them per process (each
DataLoader worker counts its own and logs a warning). As in the file-based datasets, the batches carry
reports of every skip to the training process, whatever the number of workers: each sample carries
``skipped``, reports (``index``, ``path``, ``reason``, ``origin`` = None) of what its reader skipped since its
previous sample; what a reader skips after its last sample rides on that sample, and what rode on the
samples of a last partial batch that ``drop_last`` drops (``ShardLoader`` tells the dataset its batching)
comes in holes, a batch of them alone, which collate leaves empty (``TrajTokModule`` skips it and counts it
in ``train/empty_batches``). So ``BadSampleReport`` counts every skip once per epoch. Under
``samples_per_epoch`` with ``drop_last`` a reader reads whole batches only (its share rounded down to the batch
size; the loader would drop the rest), so no batch of holes comes and the loader's length stays exact.
``"raise"`` fails instead, naming the shard and the key (``<shard>:<key>``); raised in a DataLoader worker, it
reaches the main process as a ``WorkerUserError`` of the same message (``trajtok`` prints that one line).

Damaged shards. A shard cut short (a download or copy that stopped, a writer killed) or corrupt keeps every
sample that lies whole before the damage; the sample the damage falls in is lost with the rest of the shard,
reported once under its index (``ShardError.position``). A cut exactly between two members, or in a header
whose file name cannot be read, also loses the sample before it: nothing tells whether that sample had
more members. Python's tarfile ends a stream silently at a cut or corrupt header (any but the first), so
``tar_members`` checks that the stream ends with the end-of-archive block; a shard cut inside that block
has lost nothing and reads as whole. Compressed shards (gzip, bzip2, xz) are checked the same way, and a
compressed stream cut short loses what its decompressor had not given out before the cut.

    python -m datamodules.shards --annotations train.jsonl --out 'shards/train-%06d.tar' [--per-shard 100]
"""

from __future__ import annotations

import argparse
import bz2
import contextlib
import gzip
import json
import logging
import lzma
import os
import posixpath
import random
import re
import tarfile
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import webdataset as wds
from braceexpand import braceexpand
from jsonargparse.typing import NonNegativeInt, PositiveInt
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from webdataset.tariterators import base_plus_ext

from datamodules.annotations import VideoTextRecord, read_video_text_annotations
from datamodules.bad_samples import (
    HOLE,
    OnBadSample,
    check_policy,
    user_errors_from_worker,
)
from datamodules.base import SPLIT_STAGES, STAGE_SPLITS, DataModule
from datamodules.clips import clip_sample
from datamodules.collate import collate_video_text
from datamodules.options import ClipOptions, LoaderOptions
from datamodules.pseudo_label_files import shard_label_paths, shard_name
from datamodules.seeding import loader_generator
from datamodules.video import (
    VIDEO_EXTENSIONS,
    BadSampleError,
    DecodedClip,
    decode_clip,
)
from trajtok.files import atomic_write

log = logging.getLogger(__name__)

# index = shard number * INDEX_STRIDE + position in the shard.
INDEX_STRIDE = 1_000_000
Shards = str | Sequence[str]


class ShardError(BadSampleError):
    """A shard that is missing or not a readable tar (truncated, corrupt); ``position`` is the number of
    samples read from it before the damage."""

    def __init__(self, path: str, reason: str, position: int = 0) -> None:
        super().__init__(path, reason)
        self.position = position


class SampleMembersError(ShardError):
    """A sample of a shard whose members make no sample: its key was already read in this shard (a repeat would
    train twice, and read the pseudo-labels of the first), or two of its members have one extension. ``path`` is
    ``<shard>:<key>``, ``position`` the sample's; the rest of the shard is read."""


# ------------------------------------------------------------------------------------------ shard lists


_BRACE = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"(\d+)\.\.(\d+)")


def expand_braces(pattern: str) -> list[str]:
    """Expand ``{a..b}`` (integer ranges, zero-padded when an end has a leading zero) and ``{x,y,z}``
    (alternatives), left to right: ``data/shard-{000000..000002}.tar`` -> three paths.

    The expansion is ``braceexpand``'s (webdataset's own). It leaves a group it cannot expand as literal
    text and counts a range such as ``{3..1}`` down; in a shard list both are typos that would surface
    later as missing files or renumbered shards, so they raise here, naming the group.
    """
    for body in _BRACE.findall(pattern):
        span = _RANGE.fullmatch(body)
        if span is None and "," not in body:
            raise ValueError(f"{pattern!r}: cannot expand {{{body}}}; expected {{first..last}} or {{a,b,...}}")
        if span is not None and int(span[2]) < int(span[1]):
            raise ValueError(f"{pattern!r}: empty range {{{body}}}")
    return list(braceexpand(pattern))


def check_shard_names(paths: list[str]) -> None:
    """Shards are told apart by file name (their samples' pseudo-labels lie in a folder of that name): two
    shards of one name in different folders are refused."""
    names = Counter(shard_name(p) for p in paths)
    clash = [p for p in paths if names[shard_name(p)] > 1]
    if clash:
        raise ValueError(f"shards of the same file name in different folders: {clash[:4]}; rename them, their "
                         "samples' pseudo-labels are named <shard name>/<key>")


def expand_shards(shards: Shards) -> list[str]:
    """Shard paths from one brace pattern / path or a list of them, in order (this order numbers the
    shards, hence ``index``)."""
    patterns = [shards] if isinstance(shards, (str, os.PathLike)) else list(shards)
    paths = [path for pattern in patterns for path in expand_braces(str(pattern))]
    if not paths:
        raise ValueError("no shards given")
    if len(set(paths)) != len(paths):
        raise ValueError(f"shards are listed more than once: {sorted({p for p in paths if paths.count(p) > 1})[:5]}")
    return paths


# ------------------------------------------------------------------------------------------ reading


@dataclass
class ShardSample:
    """The members of one key: ``files`` maps an extension (lower case, without the leading dot, e.g.
    ``mp4``, ``json``, ``seg.npz``) to the member's bytes. ``problem`` says why its members cannot make a
    sample (its key was already read in this shard, or one extension appears twice); None for a sample."""

    shard: str
    key: str
    position: int  # 0-based, in samples, within the shard
    files: dict[str, bytes]
    problem: str | None = None

    @property
    def name(self) -> str:
        """``<shard>:<key>``, how errors name the sample."""
        return f"{self.shard}:{self.key}"


def _tar_message(error: BaseException) -> str:
    """What a tar or decompression error says (its class name when it says nothing)."""
    return str(error.args[0]) if error.args else type(error).__name__


def _not_hidden(name: str) -> bool:
    """Whether a member may belong to a sample: hidden files (``.DS_Store``, macOS's ``._x.mp4``) do not.
    webdataset's key rule would read ``dir/._x.mp4`` as a sample ``dir/`` of extension ``_x.mp4``."""
    return not posixpath.basename(name).startswith(".")


def member_key(name: str) -> str | None:
    """The sample a member belongs to: webdataset's key rule (``base_plus_ext``: the path up to the first dot of
    the file name); None for a member of no sample (no extension, a hidden file)."""
    return base_plus_ext(name)[0] if _not_hidden(name) else None


class TarDamage(Exception):
    """Where a tar stream is damaged: ``reason``, and ``member``, the name of the member whose data or header the
    damage struck, as far as it could be read (``complete``: the whole name; None: unknown)."""

    def __init__(self, reason: str, member: str | None = None, complete: bool = True) -> None:
        super().__init__(reason)
        self.reason, self.member, self.complete = reason, member, complete


#: What a damaged stream raises while it is read: tar errors, cut or corrupt compressed data.
_STREAM_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError, tarfile.TarError)
#: Compressed shards by their first bytes; each of these readers raises at a stream cut short.
_COMPRESSED: tuple[tuple[bytes, Callable[[Any], Any]], ...] = (
    (b"\x1f\x8b", lambda f: gzip.GzipFile(fileobj=f)), (b"BZh", bz2.BZ2File), (b"\xfd7zXZ\x00", lzma.LZMAFile))


class _Tape:
    """A stream as tarfile reads it, with its offset and the last bytes read, so that the block where tarfile
    stopped can be looked at afterwards (tarfile reads a fixed record ahead, never more)."""

    KEEP = 4 * tarfile.RECORDSIZE

    def __init__(self, source: Any) -> None:
        self.source, self.offset = source, 0
        self.chunks: deque[bytes] = deque()
        self.kept = 0

    def read(self, size: int = -1) -> bytes:
        # One read of the source at most (read1): what a cut compressed stream gave before the cut arrives before
        # the error, rather than being dropped with a whole record.
        data = self.source.read1(size) if hasattr(self.source, "read1") else self.source.read(size)
        if data:
            self.offset += len(data)
            self.chunks.append(data)
            self.kept += len(data)
            while self.kept - len(self.chunks[0]) >= self.KEEP:
                self.kept -= len(self.chunks.popleft())
        return data

    def block(self, offset: int) -> bytes:
        """The block (512 bytes, fewer where the stream ends or breaks) at ``offset``, which tarfile has read or not
        yet."""
        with contextlib.suppress(*_STREAM_ERRORS):
            while self.offset < offset + tarfile.BLOCKSIZE and self.read(offset + tarfile.BLOCKSIZE - self.offset):
                pass
        kept = b"".join(self.chunks)
        start = len(kept) - (self.offset - offset)
        if start < 0:
            raise RuntimeError(f"block at {offset} is no longer kept (read up to {self.offset})")
        return kept[start:start + tarfile.BLOCKSIZE]


def tar_members(stream: Any) -> Iterator[tuple[str, bytes]]:
    """``(name, bytes)`` of the regular members of a tar stream (plain, gzip, bzip2 or xz), in order, as webdataset's
    ``tar_file_iterator`` selects them (``__*__`` metadata left out). Raises ``TarDamage`` where the stream is
    damaged: a member's data cut short or corrupt, a header cut short or unreadable, compressed data cut short, or
    the stream ending before the end-of-archive block.

    Python's tarfile, which webdataset streams with, ends a stream silently at a cut or unreadable header after
    the first: what follows is lost without an error. So the block where it stopped is checked here: it must be
    the end-of-archive block (zeros; a tar cut inside it has lost nothing)."""
    head = stream.peek(6)[:6] if hasattr(stream, "peek") else b""
    for magic, reader in _COMPRESSED:
        if head.startswith(magic):
            stream = reader(stream)
            break
    tape = _Tape(stream)
    try:
        tar = _open_tar(tape)
    except _STREAM_ERRORS as e:
        raise TarDamage(f"its first header is unreadable ({_tar_message(e)})", None) from e
    last = None  # the last member read, for messages
    end = 0  # where the header after the last member read starts
    failure = ""
    with tar:
        try:
            for info in tar:
                end = info.offset_data + -(-info.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
                tar.members = []  # a stream keeps every header read otherwise
                if not info.isreg() or _META.match(info.name):
                    continue
                try:
                    data = tar.extractfile(info).read()
                except _STREAM_ERRORS as e:
                    raise TarDamage(f"member {info.name} is cut short or corrupt ({_tar_message(e)})", info.name) from e
                last = info.name
                yield info.name, data
        except _STREAM_ERRORS as e:  # reading a header, or the compressed stream around it
            failure = f" ({_tar_message(e)})"
    block = tape.block(end)
    if not any(block):
        if block:
            return  # the end-of-archive block, whole or cut: nothing is lost
        raise TarDamage(f"the tar ends after {_after(last)} without its end-of-archive block{failure}", None)
    # The header where reading stopped: cut short (its name may still be readable) or unreadable (its name too).
    name, nul, _ = block[:100].partition(b"\0")
    if len(block) < tarfile.BLOCKSIZE:
        raise TarDamage(f"the header after {_after(last)} is cut short{failure}",
                        name.decode("utf-8", "surrogateescape"), complete=bool(nul) or len(block) >= 100)
    raise TarDamage(f"the header after {_after(last)} is unreadable{failure}", None)


def _open_tar(stream: Any) -> tarfile.TarFile:
    """A tar read as a stream (tarfile's ``r|``: no seeking, each member's data read once, in order)."""
    return tarfile.open(fileobj=stream, mode="r|")


def _after(member: str | None) -> str:
    return f"member {member}" if member else "the start"


_META = re.compile(r"__[^/]*__($|/)")  # webdataset's skip_meta


def _may_belong(member: str | None, complete: bool, key: str) -> bool:
    """Whether a damaged member (its name, whole or a prefix, or None: unknown) may be one of sample ``key``'s."""
    if member is None:
        return True
    if complete:
        return member_key(member) == key
    return (key + ".").startswith(member) or member.startswith(key + ".")


def iterate_shard(path: str) -> Iterator[ShardSample]:
    """The samples of a tar shard in order, each the consecutive members that share a key (webdataset's key
    rule); each sample's members are read into memory, nothing else is kept.

    A key that was already read in this shard, or a sample with two members of one extension, comes as a
    ``ShardSample`` with its ``problem`` (it takes its position; the reader skips it), and reading goes on.
    Raises ``ShardError`` naming the shard when it is missing or damaged (``tar_members``); the samples before
    the damage have been yielded by then, the last one too when the damage is known to lie past its members:
    the sample the damage falls in (or may fall in, where the damaged member's name cannot be read) is lost,
    with the rest of the shard, from ``ShardError.position`` on.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise ShardError(path, "shard not found")
    position = 0
    seen: dict[str, int] = {}  # key -> position of its first sample
    key: str | None = None
    files: dict[str, bytes] = {}
    problem: str | None = None

    def sample() -> ShardSample:
        nonlocal position
        first = seen.setdefault(key, position)
        why = problem or (f"key {key!r} is repeated in its shard (first at position {first}); the repeat is left out"
                          if first != position else None)
        position += 1
        return ShardSample(path, key, position - 1, files, why)

    try:
        with open(path, "rb") as stream:
            for name, data in tar_members(stream):
                member = member_key(name)
                if member is None:
                    continue
                if member != key:
                    if key is not None:
                        yield sample()
                    key, files, problem = member, {}, None
                ext = base_plus_ext(name)[1].lower()
                if ext in files:
                    problem = problem or f"member {name} appears twice in the sample; the sample is left out"
                else:
                    files[ext] = data
    except TarDamage as e:
        if key is not None and not _may_belong(e.member, e.complete, key):
            yield sample()  # whole: the damage lies past its members
        raise ShardError(path, f"unreadable tar from sample {position} on: {e.reason}", position) from e
    if key is not None:
        yield sample()


def sample_captions(sample: ShardSample) -> list[str]:
    """The ``.txt`` caption, then the ``.json`` ``captions`` / ``caption`` ones not already there; raises
    ``BadSampleError`` naming the sample when there is none or the JSON is malformed."""
    captions: list[str] = []
    try:
        if "txt" in sample.files:
            captions.append(sample.files["txt"].decode("utf-8").strip())
        if "json" in sample.files:
            meta = json.loads(sample.files["json"].decode("utf-8"))
            if not isinstance(meta, dict):
                raise BadSampleError(sample.name, f".json holds a {type(meta).__name__}, not an object")
            for field in ("captions", "caption"):
                value = meta.get(field)
                values = [value] if isinstance(value, str) else value
                if value is not None and not (isinstance(values, list) and all(isinstance(v, str) for v in values)):
                    raise BadSampleError(sample.name, f".json {field!r} is neither a string nor a list of strings")
                captions.extend(v.strip() for v in values or ())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadSampleError(sample.name, f"unreadable caption: {e}") from e
    captions = list(dict.fromkeys(c for c in captions if c))
    if not captions:
        raise BadSampleError(sample.name, f"no caption (.txt, or .json 'caption' / 'captions'); members: {sorted(sample.files)}")
    return captions


# ------------------------------------------------------------------------------------------ dataset


class ShardedVideoTextDataset(IterableDataset):
    """Video-text samples from tar shards, split over ranks and DataLoader workers (see the module doc).

    Each iteration runs a webdataset pipeline for this reader: the epoch's shard list, split by rank and
    by worker, streamed as samples, mixed in the shuffle buffer, then decoded; under ``samples_per_epoch``
    its ``with_epoch`` gives the reader's share.

    Yields the samples of ``VideoTextDataset``: ``video`` float ``(T, 3, S, S)`` (decoded and transformed
    as the file-based datasets do), ``text`` (a random caption in training, the first otherwise),
    ``captions``, ``index`` (``shard number * INDEX_STRIDE + position``) and ``skipped`` (reports of the
    bad samples skipped just before this one; after it too, for a reader's last sample); collate with
    ``collate_video_text``, which leaves out the holes that carry the reports no sample can (see the module doc).

    Args:
        shards: a shard path or brace pattern (``data/shard-{000000..000009}.tar``), or a list of them.
        clip: how a clip is read and transformed (``datamodules.options.ClipOptions``, as ``ShardDataModule``
            takes it).
        train: random frame jitter, random resized crop and random caption (else evaluation frames, resize,
            first caption).
        shuffle: shuffle the shard order every epoch (default: ``train``).
        shuffle_buffer: samples each reader holds to shuffle across its shards (0 or 1: none). They are
            kept encoded, so the memory is about ``shuffle_buffer`` times a video file's size, per reader.
        seed: seeds the shard order and the buffer together with the epoch (``set_epoch``); the same on
            every rank.
        samples_per_epoch: samples per epoch over all ranks; each rank yields exactly
            ``samples_per_epoch // world_size`` (repeating its shards if needed). Needed for DDP
            training on shards that do not split evenly; None reads each sample once.
        on_bad_video: "skip" drops unusable samples and unreadable shards (counted), "raise" fails.
        rank, world_size: this process's place, default from ``torch.distributed`` when initialised,
            else 0 of 1 (given explicitly, e.g. to simulate ranks).
        video_extensions: member extensions taken as the video, in order of preference (with or without the dot).
        pseudo_labels: folder of the samples' pseudo-label files (see the module doc); None: none read.
    """

    member_kind = "video"  # what the member read from each sample is, for error messages

    def __init__(
        self,
        shards: Shards,
        clip: ClipOptions = ClipOptions(),
        train: bool = False,
        shuffle: bool | None = None,
        shuffle_buffer: NonNegativeInt = 0,
        seed: int = 0,
        samples_per_epoch: PositiveInt | None = None,
        on_bad_video: OnBadSample = "skip",
        rank: int | None = None,
        world_size: int | None = None,
        video_extensions: Sequence[str] = VIDEO_EXTENSIONS,
        max_reported: NonNegativeInt = 10,
        pseudo_labels: str | None = None,
    ) -> None:
        super().__init__()
        check_policy(on_bad_video)
        if (rank is None) != (world_size is None):
            raise ValueError("give rank and world_size together, or neither")
        if world_size is not None and not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
        if samples_per_epoch is not None and samples_per_epoch < 1:
            raise ValueError(f"samples_per_epoch must be >= 1, got {samples_per_epoch}")
        self.shards = expand_shards(shards)
        missing = [s for s in self.shards if not os.path.isfile(s)]
        if len(missing) == len(self.shards) or (missing and on_bad_video == "raise"):
            raise FileNotFoundError(f"{len(missing)} of {len(self.shards)} shards do not exist, e.g. {missing[0]}")
        if missing:
            log.warning("%d of %d shards do not exist and are left out, e.g. %s", len(missing), len(self.shards), missing[0])
        # Shard numbers (positions in self.shards) of the shards that exist; readers share these.
        self.available = [n for n, s in enumerate(self.shards) if os.path.isfile(s)]
        if pseudo_labels is not None:
            if not os.path.isdir(pseudo_labels):
                raise ValueError(f"pseudo_labels: {pseudo_labels} is not a directory (the out_dir of trajtok pseudo-label)")
            check_shard_names(self.shards)
        self.pseudo_labels = pseudo_labels
        self._numbers = {path: n for n, path in enumerate(self.shards)}  # the pipeline carries paths
        self.clip = clip
        self.train = train
        self.shuffle = train if shuffle is None else shuffle
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.samples_per_epoch = samples_per_epoch
        self.on_bad_video = on_bad_video
        self.rank, self.world_size = rank, world_size
        self.video_extensions = tuple(e.lower().lstrip(".") for e in video_extensions)
        self.max_reported = max_reported
        self.epoch = 0
        self.batch_size: int | None = None  # how the loader batches (set_batching)
        self.drop_last = False
        self.num_skipped = 0
        self.skipped_paths: list[str] = []
        self.bad_shards: list[str] = []
        self._bad: dict[int, dict[str, Any]] = {}  # index -> its skip report

    # -------------------------------------------------------------------------------- who reads what

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next iteration reads (shard order and buffer draws); see the module doc for
        getting it into DataLoader workers."""
        self.epoch = int(epoch)

    def distributed(self) -> tuple[int, int]:
        """``(rank, world_size)``: as given, else from ``torch.distributed`` when initialised, else (0, 1)."""
        if self.world_size is not None:
            return self.rank, self.world_size
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def __getstate__(self) -> dict[str, Any]:
        # Workers started with spawn / forkserver get a pickled copy and no process group: pin the rank
        # and world size of the process that starts them.
        state = self.__dict__.copy()
        if self.world_size is None and dist.is_available() and dist.is_initialized():
            state["rank"], state["world_size"] = dist.get_rank(), dist.get_world_size()
        return state

    def check_readers(self, world_size: int, num_workers: int) -> None:
        """Raise ValueError when the shards cannot give every reader (rank x worker) one."""
        readers = world_size * max(1, num_workers)
        if len(self.available) < readers:
            raise ValueError(
                f"{len(self.available)} shards cannot feed {world_size} rank(s) x {max(1, num_workers)} DataLoader "
                f"worker(s) = {readers} readers: every reader reads whole shards and needs at least one. Use "
                f"fewer workers, or more, smaller shards (write_shards' samples_per_shard), e.g. {self.shards[0]}"
            )

    def _shard_stages(self, rank: int, world_size: int, worker: int, num_workers: int, epoch: int) -> list[Any]:
        """The head of one reader's pipeline in an epoch: the shard list (``{"url": path}``), shuffled
        with ``seed`` and the epoch (the same order on every rank), dealt to ranks, then to workers.

        webdataset's ``split_by_node`` / ``split_by_worker`` look the rank up in the reading process, where
        a spawned worker has no process group and a simulated rank is unknown; ``wds.slice`` deals the same
        way (every ``world_size``-th shard from ``rank``) with the rank this dataset resolved.
        """
        self.check_readers(world_size, num_workers)
        seed = f"shards/{self.seed}/{epoch}" if self.shuffle else None
        return [
            wds.SimpleShardList([self.shards[n] for n in self.available], seed=seed),
            wds.slice(rank, None, world_size),
            wds.slice(worker, None, num_workers),
        ]

    def shards_for(self, rank: int, world_size: int, worker: int, num_workers: int, epoch: int) -> list[int]:
        """Shard numbers one reader reads in an epoch: the epoch's order dealt to ranks, then to workers."""
        stages = self._shard_stages(rank, world_size, worker, num_workers, epoch)
        return [self._numbers[shard["url"]] for shard in wds.DataPipeline(*stages)]

    def quota(self, world_size: int, worker: int, num_workers: int) -> int | None:
        """Samples one reader yields per epoch under ``samples_per_epoch`` (None: all of its shards)."""
        if self.samples_per_epoch is None:
            return None
        per_rank = self.samples_per_epoch // world_size
        return per_rank // num_workers + (worker < per_rank % num_workers)

    def __len__(self) -> int:
        """Samples per epoch of this rank; only with ``samples_per_epoch`` (else the length is unknown
        without reading every shard, and ``len`` raises TypeError, as for any unsized iterable)."""
        if self.samples_per_epoch is None:
            raise TypeError(f"{type(self).__name__} has no length without samples_per_epoch")
        return self.samples_per_epoch // self.distributed()[1]

    # -------------------------------------------------------------------------------- reading

    def set_batching(self, batch_size: int | None, drop_last: bool) -> None:
        """How the loader batches this reader's samples (``ShardLoader`` sets it at every ``iter()``). Under
        ``drop_last`` the reader gives whole batches only: what the loader would drop is not read (under
        ``samples_per_epoch``) or not given, and the skip reports it carried still reach a batch (see ``__iter__``)."""
        self.batch_size, self.drop_last = batch_size, bool(drop_last)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        with user_errors_from_worker():  # one message in the main process, not a worker's traceback
            yield from self._iterate()

    def _iterate(self) -> Iterator[dict[str, Any]]:
        rank, world_size = self.distributed()
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        head = self._shard_stages(rank, world_size, worker, num_workers, self.epoch)
        group = self.batch_size if self.drop_last and self.batch_size else 1
        quota = self.quota(world_size, worker, num_workers)
        if quota is not None:
            quota -= quota % group  # drop_last would drop the rest: it is not read
            if quota == 0:
                return
        mixing = []
        if self.shuffle_buffer > 1:
            # initial = the whole buffer: it fills before the first sample leaves, as its size promises.
            rng = random.Random(f"buffer/{self.seed}/{self.epoch}/{rank}/{worker}")
            mixing = [wds.shuffle(self.shuffle_buffer, initial=self.shuffle_buffer, rng=rng)]
        stage = self._loader_stage()
        pipeline = wds.DataPipeline(*head, self._read_shards, *mixing, stage)
        # with_epoch reads the reader's shards over again until it has its share; it stops early only
        # when a whole pass gave nothing, and a short share would leave this rank behind the others.
        held: list[dict[str, Any]] = []  # the batch being filled, given once whole
        last = None  # the last sample of the last whole batch, given with the next sample (or at the end)
        done = 0
        for sample in pipeline if quota is None else pipeline.with_epoch(quota):
            done += 1
            if last is not None:
                yield last
                last = None
            held.append(sample)
            if len(held) == group:
                yield from held[:-1]
                last, held = held[-1], []
        if quota is not None and done < quota:
            shards = [shard["url"] for shard in wds.DataPipeline(*head)]
            raise RuntimeError(
                f"none of the samples of shards {shards[:5]} can be loaded, so this reader cannot give its "
                f"samples_per_epoch share; first bad samples: {self.skipped_paths}"
            )
        # The reports of what the reader skipped after its last sample, and those on the samples of a last partial
        # batch (which drop_last drops: they are dropped here), would be lost. They ride on the last sample when it is
        # still in hand (no partial batch), else come in holes, a batch of them alone (which collate leaves empty and
        # the module skips), so that the training process counts them all the same.
        reports = [r for sample in held for r in sample.get("skipped", ())] + list(getattr(stage, "pending", ()))
        if last is not None:
            last["skipped"] = [*last.get("skipped", ()), *reports]
            yield last
        elif reports:
            index = reports[0]["index"]
            yield {"index": index, "skipped": reports, HOLE: True}
            for _ in range(group - 1):
                yield {"index": index, "skipped": [], HOLE: True}

    def _read_shards(self, shards: Iterable[dict[str, str]]) -> Iterator[tuple[int, ShardSample | ShardError]]:
        """``(index, sample)`` of each shard (``{"url": path}``) in turn. In skip mode, a damaged shard gives
        ``(index of the first sample lost, its ShardError)``, and a sample whose members make none (a repeated key
        or member) ``(its index, a SampleMembersError)``, counted and logged here."""
        for shard in shards:
            number = self._numbers[shard["url"]]
            try:
                for sample in iterate_shard(shard["url"]):
                    if sample.position >= INDEX_STRIDE:
                        raise ValueError(f"{sample.shard} holds more than INDEX_STRIDE = {INDEX_STRIDE} samples")
                    index = number * INDEX_STRIDE + sample.position
                    if sample.problem is None:
                        yield index, sample
                        continue
                    error = SampleMembersError(sample.name, sample.problem, sample.position)
                    if self.on_bad_video == "raise":
                        raise error
                    if index not in self._bad:
                        self._note_bad(index, error)
                    yield index, error
            except ShardError as e:
                if self.on_bad_video == "raise":
                    raise
                if e.path not in self.bad_shards:
                    self.bad_shards.append(e.path)
                    log.warning("skipping the rest of shard: %s", e)
                yield number * INDEX_STRIDE + e.position, e

    def _loader_stage(self) -> Callable[[Iterable[tuple[int, ShardSample | ShardError]]], Iterator[dict[str, Any]]]:
        """The pipeline's last stage: decoded samples, each carrying the reports of what was skipped
        since the previous one. The reports wait in one list for the whole iteration (the stage's ``pending``),
        so that under ``with_epoch`` what the end of one pass skipped is reported with the first sample of the
        next, and what the end of the last pass skipped is given by ``__iter__``."""
        pending: list[dict[str, Any]] = []

        def load_samples(items: Iterable[tuple[int, ShardSample | ShardError]]) -> Iterator[dict[str, Any]]:
            for index, item in items:
                if isinstance(item, ShardError):
                    pending.append(self._report(index, item))
                    continue
                if index not in self._bad:
                    try:
                        out = self.load(item, index)
                    except BadSampleError as e:
                        if self.on_bad_video == "raise":
                            raise
                        self._note_bad(index, e)
                if index in self._bad:
                    pending.append(dict(self._bad[index]))
                    continue
                out["skipped"] = pending.copy()
                pending.clear()
                yield out

        load_samples.pending = pending
        return load_samples

    def load(self, sample: ShardSample, index: int) -> dict[str, Any]:
        """One sample of the batch contract, or a ``BadSampleError`` naming ``<shard>:<key>``."""
        ext = self.video_member(sample)
        captions = sample_captions(sample)
        name = f"{sample.name}.{ext}"
        labels = None if self.pseudo_labels is None else shard_label_paths(self.pseudo_labels, sample.shard, sample.key)
        clip = clip_sample(self.decode(sample.files[ext], name), labels, name, self.train, self.clip)
        # Drawn after the clip, as VideoTextDataset does.
        text = captions[int(torch.randint(len(captions), (1,)))] if self.train else captions[0]
        return {**clip, "text": text, "captions": captions, "index": index}

    def video_member(self, sample: ShardSample) -> str:
        """The extension of the sample's video member, or a ``BadSampleError`` naming the sample."""
        ext = next((e for e in self.video_extensions if e in sample.files), None)
        if ext is None:
            raise BadSampleError(sample.name, f"no {self.member_kind} member (.{', .'.join(self.video_extensions)}); "
                                              f"members: {sorted(sample.files)}")
        return ext

    def decode(self, data: bytes, name: str) -> DecodedClip:
        """The sampled frames of a member's bytes (``name``: ``<shard>:<key>.<ext>``, for errors)."""
        return decode_clip(data, self.clip.num_frames, "random" if self.train else self.clip.eval_sampling, name=name)

    @property
    def num_bad_shards(self) -> int:
        return len(self.bad_shards)

    @staticmethod
    def _report(index: int, error: BadSampleError) -> dict[str, Any]:
        return {"index": index, "path": error.path, "reason": error.reason, "origin": None}

    def _note_bad(self, index: int, error: BadSampleError) -> None:
        self._bad[index] = self._report(index, error)
        self.num_skipped += 1
        if len(self.skipped_paths) < self.max_reported:
            self.skipped_paths.append(error.path)
        log.warning("skipping sample %d: %s", index, error)


class ShardLoader(DataLoader):
    """A DataLoader that sets its dataset's epoch at every ``iter()``, in the main process, before
    workers start: from ``current_epoch()`` when given (and not None), else from its own count of
    iterations; and its batching (``batch_size``, ``drop_last``: see ``set_batching``). Workers must not be
    persistent, since persistent workers keep the dataset copy (and epoch) of their first iteration."""

    def __init__(self, dataset: ShardedVideoTextDataset, *args: Any, current_epoch: Callable[[], int | None] | None = None,
                 **kwargs: Any) -> None:
        if kwargs.get("persistent_workers") and kwargs.get("num_workers", 0) > 0:
            raise ValueError("ShardLoader needs persistent_workers=False: persistent workers never see a new epoch")
        super().__init__(dataset, *args, **kwargs)
        self.current_epoch = current_epoch
        self.iterations = 0

    def __len__(self) -> int:
        """Batches per epoch, exact: each worker batches its own share of ``samples_per_epoch`` (a plain
        DataLoader divides the rank's total, over-counting by up to a batch per worker). TypeError when
        the dataset has no length."""
        dataset: ShardedVideoTextDataset = self.dataset
        workers = max(1, self.num_workers)
        quotas = [dataset.quota(dataset.distributed()[1], w, workers) for w in range(workers)]
        if quotas[0] is None:
            raise TypeError(f"{type(dataset).__name__} has no length without samples_per_epoch")
        if self.batch_size is None:
            return sum(quotas)
        return sum(q // self.batch_size if self.drop_last else -(-q // self.batch_size) for q in quotas)

    def __iter__(self):
        epoch = self.current_epoch() if self.current_epoch is not None else None
        self.dataset.set_epoch(self.iterations if epoch is None else epoch)
        self.dataset.set_batching(self.batch_size, self.drop_last)
        self.iterations += 1
        return super().__iter__()


# ------------------------------------------------------------------------------------------ datamodule


class ShardDataModule(DataModule):
    """Video-text data from tar shards (see the module doc), batches as ``VideoTextDataModule``'s (``mask`` /
    ``graph`` with ``pseudo_labels``).

    Args:
        train_shards: a shard path or brace pattern (``data/train-{000000..000099}.tar``), or a list of
            them, of the train split; None: no training data.
        val_shards: the val split's shards; None: no validation.
        test_shards: the test split's shards (predict uses them too).
        clip: frames per clip, input size and training augmentation.
        loader: batch sizes and DataLoader workers. Each worker batches its own samples and training drops
            each worker's last partial batch; ``num_workers`` is lowered (with a warning) for a split whose
            shards cannot give every rank x worker one.
        on_bad_video: "skip" drops unusable samples and unreadable shards (counted on the datasets),
            "raise" fails naming ``<shard>:<key>``.
        shuffle_buffer: training samples each reader holds to mix shards (encoded bytes; 0 = none).
        seed: seeds the per-epoch shard order and the shuffle buffer.
        samples_per_epoch: training samples per epoch over all ranks, for equal step counts per rank
            under DDP (see the module doc); None reads every training sample once per epoch.
        pseudo_labels: the ``out_dir`` of ``trajtok pseudo-label`` run on these shards (``data.shards``): every
            split's batches then carry ``mask`` / ``graph`` / ``stuff``, as ``VideoTextDataModule``'s do.

    Epochs reach the training dataset through ``ShardLoader`` (the trainer's ``current_epoch`` at each
    epoch's ``iter``), so the training loader's workers are not persistent. With a global seed, the
    training loader's generator (its workers' seeds, hence their augmentation draws) is seeded from the
    epoch too, as ``VideoTextDataModule``'s is.
    """

    def __init__(
        self,
        train_shards: str | list[str] | None = None,
        val_shards: str | list[str] | None = None,
        test_shards: str | list[str] | None = None,
        clip: ClipOptions = ClipOptions(),
        loader: LoaderOptions = LoaderOptions(),
        on_bad_video: OnBadSample = "skip",
        shuffle_buffer: NonNegativeInt = 256,
        seed: int = 0,
        samples_per_epoch: PositiveInt | None = None,
        pseudo_labels: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.shards = {"train": train_shards, "val": val_shards, "test": test_shards}
        self.clip = clip
        self.loader = loader
        self.on_bad_video = on_bad_video
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.samples_per_epoch = samples_per_epoch
        self.pseudo_labels = pseudo_labels
        self.datasets: dict[str, ShardedVideoTextDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        for split in STAGE_SPLITS.get(stage, ("train", "val", "test")):
            if self.shards[split] is None or split in self.datasets:
                continue
            train = split == "train"
            self.datasets[split] = self.build_dataset(
                self.shards[split], train=train, shuffle_buffer=self.shuffle_buffer if train else 0, seed=self.seed,
                samples_per_epoch=self.samples_per_epoch if train else None, on_bad_video=self.on_bad_video,
                pseudo_labels=self.pseudo_labels, clip=self.clip,
            )
        world_size = self.datasets["train"].distributed()[1] if "train" in self.datasets else 1
        if "train" in self.datasets and world_size > 1 and self.samples_per_epoch is None:
            log.warning("training on shards with %d ranks and no samples_per_epoch: ranks with fewer samples end their "
                        "epoch first and DDP waits for them forever unless the shards split exactly evenly", world_size)

    def build_dataset(self, shards: Shards, **kwargs: Any) -> ShardedVideoTextDataset:
        """The dataset of a split's shards (``kwargs``: the split's reading options and ``clip``)."""
        return ShardedVideoTextDataset(shards, **kwargs)

    def _current_epoch(self) -> int | None:
        return None if self.trainer is None else self.trainer.current_epoch

    def _workers(self, split: str) -> int:
        """``num_workers``, lowered so that every rank x worker gets a shard."""
        dataset = self.datasets[split]
        world_size = dataset.distributed()[1]
        dataset.check_readers(world_size, 1)  # too few shards even for one reader per rank
        fit = len(dataset.available) // world_size
        if self.loader.num_workers > fit:
            log.warning("%s: %d shards for %d rank(s): using %d DataLoader workers, not %d",
                        split, len(dataset.available), world_size, fit, self.loader.num_workers)
            return fit
        return self.loader.num_workers

    def _dataset(self, split: str) -> ShardedVideoTextDataset:
        if split not in self.datasets:
            self.setup(SPLIT_STAGES[split])
        if split not in self.datasets:
            raise ValueError(f"no {split} data: set {split}_shards")
        return self.datasets[split]

    def train_dataloader(self) -> ShardLoader:
        dataset = self._dataset("train")
        return ShardLoader(
            dataset, batch_size=self.loader.batch_size, num_workers=self._workers("train"), collate_fn=collate_video_text,
            drop_last=True, current_epoch=self._current_epoch, generator=loader_generator(self.trainer),
        )

    def _eval_loader(self, split: str) -> DataLoader:
        dataset = self._dataset(split)
        workers = self._workers(split)
        return DataLoader(dataset, batch_size=self.loader.batch_size_for(train=False), num_workers=workers,
                          collate_fn=collate_video_text, persistent_workers=workers > 0)

    def val_dataloader(self) -> DataLoader | list:
        # No validation shards: Lightning skips validation for an empty list of loaders.
        return [] if self.shards["val"] is None else self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader("test")


# ------------------------------------------------------------------------------------------ writing


def _entries(records: Iterable[VideoTextRecord | tuple]) -> Iterator[tuple[str, str, list[str]]]:
    """``(key, video path, captions)`` of records or ``(key, video, caption or captions)`` tuples."""
    for i, rec in enumerate(records):
        if isinstance(rec, VideoTextRecord):
            if rec.start_sec is not None or rec.end_sec is not None:
                raise ValueError(f"{rec.video}: shards hold whole videos; cut the {rec.start_sec}..{rec.end_sec} s "
                                 "segment into its own file first")
            yield f"{i:09d}", rec.video, list(rec.captions)
        else:
            key, video, captions = rec
            yield str(key), str(video), [captions] if isinstance(captions, str) else list(captions)


def _shard_sample(key: str, video: str, captions: list[str], caption_files: Sequence[str]) -> dict[str, Any]:
    """One sample as webdataset's ``TarWriter`` takes it: ``__key__`` and extension -> member bytes (the
    video file's bytes under its own extension, the captions as ``txt`` and / or ``json``)."""
    ext = os.path.splitext(video)[1].lower().lstrip(".") or "mp4"
    with open(video, "rb") as f:
        sample = {"__key__": key, ext: f.read()}
    if "txt" in caption_files:
        sample["txt"] = captions[0].encode("utf-8")
    if "json" in caption_files:
        sample["json"] = json.dumps({"caption": captions[0], "captions": captions}).encode("utf-8")
    return sample


def _write_shard(path: str, samples: Iterable[dict[str, Any]]) -> None:
    """Write one shard with webdataset's ``TarWriter`` (gzip-compressed when ``path`` ends in ``.gz``), whole or
    not at all (``trajtok.files.atomic_write``: a temporary beside ``path``, renamed into place once complete, with
    the permissions of any new file), so that no reader ever sees half a shard. (``wds.ShardWriter`` writes in
    place, and leaving its ``with`` on an error closes the half-written shard as a valid, shorter tar.)"""
    # mtime 0: the same input gives the same tar. encoder=False: members are bytes already.
    compress = "gz" if path.endswith(".gz") else False
    with atomic_write(path, "wb") as stream, wds.TarWriter(stream, encoder=False, compress=compress, mtime=0,
                                                        mode=0o644) as sink:
        for sample in samples:
            sink.write(sample)


def write_shards(
    records: Iterable[VideoTextRecord | tuple[str, str, str | Sequence[str]]],
    out_pattern: str,
    samples_per_shard: int = 100,
    caption_files: Sequence[str] = ("txt", "json"),
) -> list[str]:
    """Write video-text pairs as tar shards in the layout the reader (and video2dataset) uses; returns
    the shard paths, in order (give them, or the matching brace pattern, to the dataset).

    ``records``: ``VideoTextRecord`` s (as ``read_video_text_annotations`` returns; keys are their
    running number, ``000000000`` ...; pseudo-labels are not written, segments are refused), or
    ``(key, video path, caption or captions)`` tuples (keys without a dot in their last part, unique); the
    member keeps the file's extension, so image paths give image shards (``datamodules.images``).
    ``out_pattern`` numbers shards printf-style from 0: ``out/train-%06d.tar`` (``.tar.gz``: compressed).
    ``caption_files``: write the first caption as ``<key>.txt`` and/or all of them as ``<key>.json``
    (``{"caption": first, "captions": all}``). Everything is checked before the first shard is written;
    each shard appears whole or not at all (see ``_write_shard``), with the permissions of any new file under
    the umask (0644 under the usual 022: other users of a shared cluster can read it).
    """
    if samples_per_shard < 1:
        raise ValueError(f"samples_per_shard must be >= 1, got {samples_per_shard}")
    if not set(caption_files) <= {"txt", "json"} or not caption_files:
        raise ValueError(f"caption_files must be some of ('txt', 'json'), got {caption_files!r}")
    try:
        if out_pattern % 0 == out_pattern % 1:
            raise TypeError
    except TypeError:
        raise ValueError(f"out_pattern needs a printf-style shard number, e.g. 'shards/train-%06d.tar', got {out_pattern!r}") from None
    entries = list(_entries(records))
    if not entries:
        raise ValueError("no records to write")
    counts = Counter(key for key, _, _ in entries)
    for key, _, captions in entries:
        if not key or "." in posixpath.basename(key) or counts[key] > 1:
            raise ValueError(f"key {key!r}: keys must be non-empty, unique and have no '.' in their last part")
        if not captions or not all(isinstance(c, str) and c.strip() for c in captions):
            raise ValueError(f"key {key!r}: needs at least one non-empty caption, got {captions!r}")
    paths = []
    for start in range(0, len(entries), samples_per_shard):
        path = out_pattern % len(paths)
        chunk = entries[start : start + samples_per_shard]
        _write_shard(path, (_shard_sample(key, video, captions, caption_files) for key, video, captions in chunk))
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write an annotation file's video-text pairs as tar shards.")
    parser.add_argument("--annotations", required=True, help="JSONL / JSON / CSV annotation file")
    parser.add_argument("--root", default=None, help="folder video paths are relative to (default: the file's)")
    parser.add_argument("--out", required=True, help="shard path pattern, e.g. 'shards/train-%%06d.tar'")
    parser.add_argument("--per-shard", type=int, default=100, help="samples per shard")
    args = parser.parse_args(argv)
    paths = write_shards(read_video_text_annotations(args.annotations, args.root), args.out, args.per_shard)
    print(f"wrote {len(paths)} shards: {paths[0]} .. {paths[-1]}")


if __name__ == "__main__":
    main()
