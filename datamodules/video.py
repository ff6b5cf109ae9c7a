"""Decoding a clip of ``T`` frames from a video file (or its bytes) with PyAV.

Sampling splits the frames of the wanted range into ``T`` equal parts and takes one frame of each part:
its middle frame for evaluation (deterministic), a uniformly random one for training (temporal jitter).
A range shorter than ``T`` frames repeats frames, because the same index mapping then hits some frames
twice. Decoding runs once over the range and converts only the chosen frames to RGB, since conversion,
not decoding, is what costs when ``T`` is much smaller than the number of frames.

A video is a path, or its encoded bytes (``bytes`` or a binary file-like object, read whole), e.g. a member
of a tar shard; errors then name it by the ``name`` given to ``decode_clip``.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import BinaryIO, Literal, Union

import av
import numpy as np
import torch

from trajtok.errors import UserError

Sampling = Literal["middle", "random", "linspace"]
#: How evaluation picks its frames: ``middle`` (of T equal parts) or ``linspace`` (the released TrajTok's drivers:
#: ``round(linspace(0, n - 1, T))``, first and last frame included).
EvalSampling = Literal["middle", "linspace"]
#: What a video file's name ends with (lower case), in order of preference where one clip comes in several files or
#: one tar shard sample holds several videos. The one list of the data layer: class folders, the folders that
#: ``trajtok pseudo-label`` reads, tar shard members and the clip look-ups of public data sets all use it.
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v", ".3gp")
# A file path, or the encoded bytes of a video (in memory or in a binary file-like object).
VideoSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, BinaryIO]


class BadSampleError(UserError, RuntimeError):
    """A sample whose files cannot be used; data sets may skip these instead of failing a whole run (a data
    error of the user's: the ``trajtok`` command reports it as one message).

    ``path`` is the offending file and ``reason`` what is wrong with it; ``origin`` (set by ``locate``) is
    where the sample was declared, e.g. ``"ann.jsonl, row 3"``, and joins the message when known.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason
        self.origin: str | None = None

    def locate(self, origin: str | None) -> BadSampleError:
        """Add the annotation row the sample comes from to the message (once); returns ``self``."""
        if origin and self.origin is None and origin != self.path:
            self.origin = origin
            self.args = (f"{self.path}: {self.reason} (sample of {origin})",)
        return self


class VideoDecodeError(BadSampleError):
    """A video file that is missing, unreadable, has no video stream, or has no decodable frame."""


@dataclass(frozen=True)
class DecodedClip:
    """Frames of a clip and where they came from.

    ``indices`` are positions within the decoded range (the whole file, or the ``start_sec``..``end_sec``
    segment), so per-frame side data of that range (pseudo-label masks) can be sampled identically.
    """

    frames: torch.Tensor  # uint8 (T, H, W, 3)
    indices: list[int]
    num_range_frames: int
    # The work done, so tests can check that a long video costs what it should: frames that went through
    # the decoder, and frames converted to RGB (only those are kept in memory; at most the distinct
    # ``indices`` per decoding pass).
    num_decoded: int = 0
    num_converted: int = 0


def sample_indices(
    num_source: int,
    num_frames: int,
    sampling: Sampling,
    generator: torch.Generator | None = None,
) -> list[int]:
    """Pick ``num_frames`` frame indices out of ``num_source`` frames, one per equal-length part.

    ``middle`` takes each part's middle frame; ``random`` a uniformly random frame of each part. When
    ``num_source < num_frames`` the parts are shorter than a frame and indices repeat, in order. ``linspace``
    takes ``round(linspace(0, num_source - 1, num_frames))`` (ties to even, as numpy): the first and the last
    frame, evenly spaced between, as the released TrajTok's evaluation reads clips.
    """
    if num_source < 1:
        raise ValueError(f"num_source must be >= 1, got {num_source}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if sampling == "middle":
        # Integer arithmetic: floor((i + 1/2) * n / T) without float rounding.
        return [((2 * i + 1) * num_source) // (2 * num_frames) for i in range(num_frames)]
    if sampling == "linspace":
        return np.linspace(0, num_source - 1, num_frames).round().astype(int).tolist()
    if sampling == "random":
        u = torch.rand(num_frames, generator=generator, dtype=torch.float64)
        pos = (torch.arange(num_frames, dtype=torch.float64) + u) * num_source / num_frames
        return pos.floor().long().clamp_(0, num_source - 1).tolist()
    raise ValueError(f"sampling must be 'middle', 'random' or 'linspace', got {sampling!r}")


def _source(video: VideoSource, name: str | None) -> tuple[str | bytes, str]:
    """A path (str) or the whole encoded video (bytes), and the name errors give it."""
    if isinstance(video, (str, os.PathLike)):
        return str(video), name or str(video)
    if isinstance(video, (bytes, bytearray, memoryview)):
        return bytes(video), name or "<bytes>"
    return video.read(), name or str(getattr(video, "name", "<stream>"))


def _open(path: str | bytes, name: str | None = None) -> av.container.InputContainer:
    """Open a container (a file, or encoded bytes) and return it with a clear error for every way that
    fails; errors name ``name`` (default: the path)."""
    name = name or str(path)
    if isinstance(path, str) and not os.path.exists(path):
        raise VideoDecodeError(name, "file not found")
    try:
        container = av.open(path if isinstance(path, str) else io.BytesIO(path))
    except av.FFmpegError as e:
        raise VideoDecodeError(name, f"cannot open: {e}") from e
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(name, "no video stream")
    return container


def _range_seconds(stream: av.video.stream.VideoStream) -> float:
    """The stream's first timestamp in seconds; segment bounds are relative to it."""
    if stream.start_time is None:
        return 0.0
    return float(stream.start_time * stream.time_base)


def _in_range(t: float, lo: float, hi: float | None, tick: float) -> int:
    """-1 before the range, 0 inside, 1 after; half a tick of tolerance because timestamps are rationals
    rounded to the stream's time base."""
    if t < lo - 0.5 * tick:
        return -1
    if hi is not None and t >= hi - 0.5 * tick:
        return 1
    return 0


def _seek(container: av.container.InputContainer, stream: av.video.stream.VideoStream, t: float) -> None:
    """Seek to the key frame at or before absolute time ``t`` (seconds)."""
    container.seek(int(Fraction(t) / stream.time_base), stream=stream, backward=True, any_frame=False)


def _enter_range(container, stream, start: float | None, end: float | None) -> tuple[float, float | None]:
    """Stream-time bounds ``(lo, hi)`` of the segment; seeks to its start when there is one."""
    base = _range_seconds(stream)
    lo = base + (start or 0.0)
    hi = None if end is None else base + end
    if start:
        _seek(container, stream, lo)
    return lo, hi


def _count_range_frames(path: str | bytes, start: float | None, end: float | None, name: str) -> int:
    """Count frames in the range from packet timestamps (demuxing only; no decoding)."""
    container = _open(path, name)
    try:
        stream = container.streams.video[0]
        if start is None and end is None and stream.frames > 0:
            return stream.frames  # the container's own count; exact for mp4
        lo, hi = _enter_range(container, stream, start, end)
        count = 0
        for packet in container.demux(stream):
            if packet.size == 0:
                continue  # the demuxer's trailing flush packet
            if start is None and end is None:
                count += 1
                continue
            if packet.pts is None:
                raise VideoDecodeError(name, "packets carry no timestamps; cannot cut a segment")
            if _in_range(float(packet.pts * stream.time_base), lo, hi, float(stream.time_base)) == 0:
                count += 1
        return count
    except av.FFmpegError as e:
        raise VideoDecodeError(name, f"cannot demux: {e}") from e
    finally:
        container.close()


def _decode_at(
    path: str | bytes, wanted: list[int], start: float | None, end: float | None, name: str
) -> tuple[dict[int, np.ndarray], int, bool, int]:
    """Decode the range once; return RGB frames at the wanted positions, frames seen, whether decoding
    ran to the end of the range (needed to trust the count it saw), and frames decoded in all.

    Frames are converted at the size of the first one converted, so a stream whose resolution changes
    midway (concatenated transport streams) still gives a clip of equal-sized frames.
    """
    last = max(wanted)
    wanted_set = set(wanted)
    out: dict[int, np.ndarray] = {}
    size: dict[str, int] = {}
    decoded = 0
    container = _open(path, name)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        lo, hi = _enter_range(container, stream, start, end)
        k = 0
        for frame in container.decode(stream):
            decoded += 1
            if start is not None or end is not None:
                if frame.time is None:
                    raise VideoDecodeError(name, "frames carry no timestamps; cannot cut a segment")
                where = _in_range(frame.time, lo, hi, float(stream.time_base))
                if where < 0:
                    continue
                if where > 0:
                    return out, k, True, decoded
            if k in wanted_set:
                size = size or {"width": frame.width, "height": frame.height}
                out[k] = frame.to_ndarray(format="rgb24", **size)
            if k == last:
                return out, k + 1, False, decoded
            k += 1
        return out, k, True, decoded
    except av.FFmpegError as e:
        raise VideoDecodeError(name, f"cannot decode: {e}") from e
    finally:
        container.close()


def decode_clip(
    path: VideoSource,
    num_frames: int,
    sampling: Sampling = "middle",
    start_sec: float | None = None,
    end_sec: float | None = None,
    generator: torch.Generator | None = None,
    *,
    name: str | None = None,
) -> DecodedClip:
    """Decode ``num_frames`` sampled frames of ``path`` (optionally of ``start_sec``..``end_sec``).

    ``path`` is a file path, or the encoded video as ``bytes`` or a binary file-like object (read whole
    from its current position). Raises ``VideoDecodeError`` naming the file (or ``name``, default the
    path, else the file object's ``name``) when it is missing, corrupt, or has no frame in range.
    """
    path, name = _source(path, name)
    if start_sec is not None and end_sec is not None and end_sec <= start_sec:
        raise ValueError(f"{name}: end_sec {end_sec} must be greater than start_sec {start_sec}")
    n = _count_range_frames(path, start_sec, end_sec, name)
    if n == 0:
        raise VideoDecodeError(name, "no frames in the requested range")
    indices = sample_indices(n, num_frames, sampling, generator)
    got, seen, reached_end, decoded = _decode_at(path, indices, start_sec, end_sec, name)
    converted = len(got)
    if len(got) < len(set(indices)):
        # The container's count was too high (truncated file, wrong metadata): the decode pass ran to the
        # real end, so its count is exact; resample on it.
        if not reached_end or seen == 0:
            raise VideoDecodeError(name, "no decodable frames")
        n = seen
        indices = sample_indices(n, num_frames, sampling, generator)
        got, _, _, again = _decode_at(path, indices, start_sec, end_sec, name)
        decoded, converted = decoded + again, converted + len(got)
        if len(got) < len(set(indices)):
            raise VideoDecodeError(name, "frames changed between two decoding passes")
    frames = torch.from_numpy(np.stack([got[i] for i in indices]))
    return DecodedClip(
        frames=frames, indices=indices, num_range_frames=n, num_decoded=decoded, num_converted=converted
    )


def read_clip(
    path: VideoSource,
    num_frames: int,
    sampling: Sampling = "middle",
    start_sec: float | None = None,
    end_sec: float | None = None,
    generator: torch.Generator | None = None,
    *,
    name: str | None = None,
) -> torch.Tensor:
    """The frames of ``decode_clip``: uint8 ``(T, H, W, 3)`` RGB."""
    return decode_clip(path, num_frames, sampling, start_sec, end_sec, generator, name=name).frames


def read_all_frames(path: VideoSource, start_sec: float | None = None, end_sec: float | None = None,
                    max_frames: int | None = None, *, name: str | None = None) -> torch.Tensor:
    """Every frame of ``path`` (or of its ``start_sec``..``end_sec`` range), uint8 ``(T, H, W, 3)``: what
    pseudo-labelling reads, since its masks must cover each frame that clip sampling may pick. ``path`` is a file
    or the encoded video's bytes (a tar shard's member), errors naming ``name`` (default: the path), as in
    ``decode_clip``. A range of more than ``max_frames`` frames is a ``VideoDecodeError`` (a long video would not
    fit in memory)."""
    source, name = _source(path, name)
    count = _count_range_frames(source, start_sec, end_sec, name)
    if max_frames is not None and count > max_frames:
        raise VideoDecodeError(name, f"{count} frames in range, more than max_frames={max_frames}")
    if count == 0:
        raise VideoDecodeError(name, "no frames in the requested range")
    clip = decode_clip(source, count, "middle", start_sec, end_sec, name=name)
    if clip.num_range_frames != count:  # the container's count was wrong: decode the frames that exist
        clip = decode_clip(source, clip.num_range_frames, "middle", start_sec, end_sec, name=name)
    return clip.frames
