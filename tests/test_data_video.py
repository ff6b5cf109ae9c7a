"""Decoding and sampling clips with PyAV, on small real video files written here with PyAV.

Frame ``i`` of a test video has brightness ``BASE + STEP * i`` everywhere, so a decoded frame's
brightness says which source frame was sampled.
"""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from helpers import MSRVTT24, needs_msrvtt24

from datamodules.annotations import VideoTextRecord
from datamodules.bad_samples import HOLE, MissingFilesError
from datamodules.options import ClipOptions
from datamodules.video import VideoDecodeError, decode_clip, read_clip, sample_indices
from datamodules.video_text import VideoTextDataset

BASE, STEP = 8, 6


def write_video(
    path,
    num_frames,
    width=48,
    height=32,
    fps=10,
    codec="libx264",
    pix_fmt="yuv420p",
    gray=False,
    gop=None,
    container_options=None,
):
    """Write a clip whose frame i is uniformly ``BASE + STEP * i`` bright."""
    with av.open(str(path), "w", options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if codec == "libx264":
            stream.options = {"crf": "0", "preset": "ultrafast", **({"g": str(gop)} if gop else {})}
        for i in range(num_frames):
            value = BASE + STEP * i
            if gray:
                frame = av.VideoFrame.from_ndarray(np.full((height, width), value, np.uint8), format="gray")
            else:
                frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), value, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return str(path)


def frame_ids(clip: torch.Tensor) -> list[int]:
    """Source frame index of each decoded frame, from its mean brightness."""
    return [round((float(f.float().mean()) - BASE) / STEP) for f in clip]


def test_sample_indices_linspace_is_numpys_rounded_linspace():
    """The released TrajTok's evaluation frames: round(linspace(0, n - 1, T)), first and last frame included."""
    for n, t in [(100, 8), (16, 8), (9, 8), (3, 8), (1, 4), (37, 5)]:
        assert sample_indices(n, t, "linspace") == np.linspace(0, n - 1, t).round().astype(int).tolist()
    assert sample_indices(9, 5, "linspace") == [0, 2, 4, 6, 8]
    assert sample_indices(6, 5, "linspace") == [0, 1, 2, 4, 5]  # 1.25 -> 1, 3.75 -> 4; 2.5 rounds to even


def test_sample_indices_middle_and_short():
    assert sample_indices(16, 8, "middle") == [1, 3, 5, 7, 9, 11, 13, 15]
    assert sample_indices(10, 4, "middle") == [1, 3, 6, 8]  # parts [0,2.5) [2.5,5) [5,7.5) [7.5,10)
    assert sample_indices(3, 8, "middle") == [0, 0, 0, 1, 1, 2, 2, 2]
    assert sample_indices(1, 4, "middle") == [0, 0, 0, 0]
    with pytest.raises(ValueError):
        sample_indices(0, 4, "middle")
    with pytest.raises(ValueError):
        sample_indices(8, 4, "uniform")


def test_sample_indices_random_stays_in_its_part():
    draws = [sample_indices(16, 4, "random", torch.Generator().manual_seed(s)) for s in range(50)]
    for idx in draws:
        assert [i // 4 for i in idx] == [0, 1, 2, 3]  # one frame from each quarter
    assert len({tuple(d) for d in draws}) > 10  # and they vary
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert sample_indices(100, 8, "random", g1) == sample_indices(100, 8, "random", g2)


def test_read_clip_middle_sampling(tmp_path):
    path = write_video(tmp_path / "a.mp4", 16)
    clip = decode_clip(path, 8, "middle")
    assert clip.frames.shape == (8, 32, 48, 3) and clip.frames.dtype == torch.uint8
    assert clip.num_range_frames == 16
    assert clip.indices == [1, 3, 5, 7, 9, 11, 13, 15]
    assert frame_ids(clip.frames) == clip.indices
    assert torch.equal(read_clip(path, 8), clip.frames)


def test_read_clip_random_sampling_decodes_the_drawn_frames(tmp_path):
    path = write_video(tmp_path / "a.mp4", 24)
    for seed in range(3):
        clip = decode_clip(path, 6, "random", generator=torch.Generator().manual_seed(seed))
        assert [i // 4 for i in clip.indices] == list(range(6))
        assert frame_ids(clip.frames) == clip.indices


def test_short_clip_repeats_frames(tmp_path):
    path = write_video(tmp_path / "short.mp4", 3)
    clip = read_clip(path, 8, "middle")
    assert clip.shape[0] == 8
    assert frame_ids(clip) == [0, 0, 0, 1, 1, 2, 2, 2]


def test_segment_by_seconds_seeks_and_counts_only_the_segment(tmp_path):
    # 40 frames at 10 fps with a key frame every 5 frames, so seeking lands before the segment.
    path = write_video(tmp_path / "long.mp4", 40, fps=10, gop=5)
    clip = decode_clip(path, 8, "middle", start_sec=1.0, end_sec=2.6)  # frames 10..25
    assert clip.num_range_frames == 16
    assert frame_ids(clip.frames) == [10 + i for i in clip.indices] == [11, 13, 15, 17, 19, 21, 23, 25]
    tail = decode_clip(path, 4, "middle", start_sec=3.2)  # frames 32..39
    assert tail.num_range_frames == 8 and frame_ids(tail.frames) == [33, 35, 37, 39]
    with pytest.raises(ValueError, match="end_sec"):
        decode_clip(path, 4, start_sec=2.0, end_sec=1.0)


def test_grayscale_video_becomes_rgb(tmp_path):
    path = write_video(tmp_path / "gray.mkv", 10, width=33, height=47, codec="ffv1", pix_fmt="gray", gray=True)
    with av.open(path) as c:
        assert c.streams.video[0].format.name == "gray"
    clip = read_clip(path, 5)
    assert clip.shape == (5, 47, 33, 3)
    assert torch.equal(clip[..., 0], clip[..., 1]) and torch.equal(clip[..., 1], clip[..., 2])
    assert frame_ids(clip) == [1, 3, 5, 7, 9]


def test_odd_sized_colour_video(tmp_path):
    path = write_video(tmp_path / "odd.mp4", 6, width=33, height=47, pix_fmt="yuv444p")
    clip = read_clip(path, 3)
    assert clip.shape == (3, 47, 33, 3)
    assert frame_ids(clip) == [1, 3, 5]


def test_missing_corrupt_and_empty_files_raise_naming_the_file(tmp_path):
    missing = str(tmp_path / "missing.mp4")
    with pytest.raises(VideoDecodeError, match="missing.mp4.*not found") as e:
        read_clip(missing, 4)
    assert e.value.path == missing

    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    with pytest.raises(VideoDecodeError, match="garbage.mp4"):
        read_clip(str(garbage), 4)

    good = write_video(tmp_path / "good.mp4", 16)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(Path(good).read_bytes()[:300])
    with pytest.raises(VideoDecodeError, match="truncated.mp4"):
        read_clip(str(truncated), 4)

    audio_only = str(tmp_path / "audio.mp4")
    with av.open(audio_only, "w") as c:
        s = c.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 8000
        for p in [*s.encode(frame), *s.encode()]:
            c.mux(p)
    with pytest.raises(VideoDecodeError, match="no video stream"):
        read_clip(audio_only, 4)

    no_frames = str(tmp_path / "empty.mp4")
    with av.open(no_frames, "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        c.start_encoding()  # header and trailer, no frame
    assert os.path.getsize(no_frames) > 0
    with pytest.raises(VideoDecodeError, match="empty.mp4"):
        read_clip(no_frames, 4)


def test_index_promising_more_frames_than_the_file_holds(tmp_path):
    # faststart puts the index (16 frames) first; cutting the tail leaves fewer decodable frames, and
    # sampling must spread over the frames that really decode.
    path = write_video(tmp_path / "fs.mp4", 16, container_options={"movflags": "faststart"})
    data = Path(path).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with av.open(str(cut)) as c:
        assert c.streams.video[0].frames == 16
    clip = decode_clip(str(cut), 4, "middle")
    assert 0 < clip.num_range_frames < 16
    assert clip.indices == sample_indices(clip.num_range_frames, 4, "middle")
    assert frame_ids(clip.frames) == clip.indices


def _records(tmp_path):
    good1 = write_video(tmp_path / "good1.mp4", 8)
    missing = str(tmp_path / "missing.mp4")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"not a video at all" * 10)
    good2 = write_video(tmp_path / "good2.mp4", 12)
    paths = [good1, missing, str(corrupt), good2]
    return [VideoTextRecord(video=p, captions=(f"clip {i}", f"other {i}")) for i, p in enumerate(paths)], paths


def test_dataset_raise_mode_names_the_bad_file(tmp_path):
    records, paths = _records(tmp_path)
    with pytest.raises(MissingFilesError, match="missing.mp4"):  # missing files: before any sample is read
        VideoTextDataset(records, clip=ClipOptions(num_frames=4, image_size=16), on_bad_video="raise")
    present = [r for r, p in zip(records, paths) if p != paths[1]]
    ds = VideoTextDataset(present, clip=ClipOptions(num_frames=4, image_size=16), on_bad_video="raise")
    assert ds[0]["index"] == 0
    with pytest.raises(VideoDecodeError, match="corrupt.mp4") as e:
        ds[1]
    assert e.value.path == paths[2]


def test_dataset_skip_mode_leaves_holes_and_counts(tmp_path):
    records, paths = _records(tmp_path)
    ds = VideoTextDataset(records, clip=ClipOptions(num_frames=4, image_size=16), on_bad_video="skip")
    got = [ds[i] for i in range(len(ds))]
    assert [s["index"] for s in got] == [0, 1, 2, 3] and [HOLE in s for s in got] == [False, True, True, False]
    assert got[3]["text"] == "clip 3" and got[3]["captions"] == ["clip 3", "other 3"]  # caption follows video
    assert got[3]["video"].shape == (4, 3, 16, 16) and "video" not in got[1]
    assert ds.num_skipped == 2 and ds.skipped_paths == [paths[1], paths[2]]
    ds[1]  # known bad samples are not retried, nor counted twice
    assert ds.num_skipped == 2


def test_dataset_with_only_bad_files_raises(tmp_path):
    ds = VideoTextDataset([VideoTextRecord(str(tmp_path / "x.mp4"), ("x",))], clip=ClipOptions(num_frames=2, image_size=8))
    with pytest.raises(RuntimeError, match="x.mp4"):
        ds[0]


@needs_msrvtt24
def test_real_msrvtt_clips_decode():
    videos = sorted(os.listdir(MSRVTT24 / "videos"))
    assert len(videos) == 24
    for name in videos[:6]:
        path = str(MSRVTT24 / "videos" / name)
        clip = decode_clip(path, 8, "middle")
        t, h, w, c = clip.frames.shape
        assert (t, c) == (8, 3) and h in (352, 360) and 400 <= w <= 640
        assert clip.num_range_frames >= 20  # 2 fps, about 10-17 s
        assert clip.frames.float().std() > 10  # real content, not a blank frame
    # A 2..6 s segment of a 2 fps clip has 8 frames.
    seg = decode_clip(str(MSRVTT24 / "videos/video176.mp4"), 4, "middle", start_sec=2.0, end_sec=6.0)
    assert seg.num_range_frames == 8 and seg.indices == [1, 3, 5, 7]
