"""Bad video input, on files written here with PyAV: each case either decodes to a correct clip or fails with
a ``VideoDecodeError`` naming the file; data sets then skip the sample (reporting it in the batch) or raise
naming the file and the annotation row. No case yields a placeholder (zero) clip.

Frame ``i`` of a test video is split in two halves of uniform brightness, ``5 + 5 * (i // 45)`` and
``5 + 5 * (i % 45)``, so a decoded frame says which source frame it is for up to 2025 frames.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from datamodules.annotations import (
    read_labelled_annotations,
    read_qa_annotations,
    read_video_text_annotations,
)
from datamodules.bad_samples import HOLE, MissingFilesError
from datamodules.classification import ClassificationDataset
from datamodules.collate import collate_video_text
from datamodules.options import ClipOptions
from datamodules.qa import QADataset
from datamodules.video import VideoDecodeError, decode_clip, sample_indices
from datamodules.video_text import VideoTextDataset

LOSSLESS = {"libx264": {"crf": "0", "preset": "ultrafast"}}


def frame_pixels(i: int, height: int, width: int) -> np.ndarray:
    frame = np.empty((height, width), np.uint8)
    frame[:, : width // 2] = 5 + 5 * (i // 45)
    frame[:, width // 2 :] = 5 + 5 * (i % 45)
    return frame


def write_video(path, num_frames, width=16, height=16, codec="libx264", pix_fmt="yuv444p", fps=25, gop=None,
                fmt=None, first=0):
    """Frames ``first .. first + num_frames - 1`` (see the module docstring), gray or colour."""
    gray = pix_fmt == "gray"
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.options = {**LOSSLESS.get(codec, {}), **({"g": str(gop)} if gop else {})}
        for i in range(first, first + num_frames):
            pixels = frame_pixels(i, height, width)
            frame = (av.VideoFrame.from_ndarray(pixels, format="gray") if gray else
                     av.VideoFrame.from_ndarray(np.repeat(pixels[..., None], 3, axis=2), format="rgb24"))
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return str(path)


def frame_ids(frames: torch.Tensor) -> list[int]:
    """Source index of each decoded uint8 ``(T, H, W, 3)`` frame."""
    half = frames.shape[2] // 2
    left = frames[:, :, :half].float().mean(dim=(1, 2, 3))
    right = frames[:, :, half:].float().mean(dim=(1, 2, 3))
    return [round((float(a) - 5) / 5) * 45 + round((float(b) - 5) / 5) for a, b in zip(left, right)]


def write_audio(path, codec: str, seconds: float = 0.5, rate: int = 16000) -> str:
    """An audio-only file: a 440 Hz sine."""
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * 440 * t)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        fmt, samples = ("fltp", wave.astype(np.float32)) if codec == "aac" else ("s16", (wave * 32767).astype(np.int16))
        frame = av.AudioFrame.from_ndarray(samples[None], format=fmt, layout="mono")
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    return str(path)


def write_empty(path, codec: str, pix_fmt: str = "yuv420p") -> str:
    """A container with a video stream (header and trailer) and no frame."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, pix_fmt
        container.start_encoding()
    assert os.path.getsize(path) > 0
    return str(path)


# --- files that cannot give a clip --------------------------------------------------------------------------

def test_garbage_bytes_named_mp4(tmp_path):
    path = tmp_path / "garbage.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(VideoDecodeError, match="garbage.mp4: cannot open") as e:
        decode_clip(str(path), 4)
    assert e.value.path == str(path)


def test_mp4_with_a_garbled_payload(tmp_path):
    # The index (moov) is intact, the coded frames (mdat) are random bytes: the decoder refuses them.
    data = bytearray(Path(write_video(tmp_path / "ok.mp4", 20, 32, 32, pix_fmt="yuv420p")).read_bytes())
    start, end = data.find(b"mdat") + 4, data.find(b"moov") - 4
    data[start:end] = np.random.default_rng(0).integers(0, 256, end - start, dtype=np.uint8).tobytes()
    path = tmp_path / "garbled.mp4"
    path.write_bytes(bytes(data))
    with pytest.raises(VideoDecodeError, match="garbled.mp4: cannot decode"):
        decode_clip(str(path), 4)


def test_mp4_cut_in_half_has_no_index(tmp_path):
    data = Path(write_video(tmp_path / "full.mp4", 40)).read_bytes()
    half = tmp_path / "half.mp4"
    half.write_bytes(data[: len(data) // 2])  # the index (moov) is written last: gone
    with pytest.raises(VideoDecodeError, match="half.mp4: cannot open"):
        decode_clip(str(half), 4)


@pytest.mark.parametrize("codec", ["libx264", "ffv1"])
def test_mkv_cut_in_half_gives_the_frames_that_remain(tmp_path, codec):
    # Matroska has no up-front frame count: the frames are counted by demuxing what is there, and sampling
    # spreads over them (the last, partial packet may not decode; the count is then redone by decoding).
    data = Path(write_video(tmp_path / "full.mkv", 40, codec=codec)).read_bytes()
    half = tmp_path / "half.mkv"
    half.write_bytes(data[: len(data) // 2])
    clip = decode_clip(str(half), 4, "middle")
    assert 4 <= clip.num_range_frames < 40
    assert clip.indices == sample_indices(clip.num_range_frames, 4, "middle")
    assert frame_ids(clip.frames) == clip.indices


@pytest.mark.parametrize("name, codec, pix_fmt", [("empty.mp4", "libx264", "yuv420p"), ("empty.mkv", "ffv1", "yuv420p"),
                                                  ("empty.mov", "png", "rgb24")])
def test_containers_with_a_video_stream_and_no_frame(tmp_path, name, codec, pix_fmt):
    path = write_empty(tmp_path / name, codec, pix_fmt)
    with pytest.raises(VideoDecodeError, match=name):
        decode_clip(path, 4)


@pytest.mark.parametrize("name, codec", [("sine.m4a", "aac"), ("sine.mp4", "mp2"), ("sine.mkv", "mp2")])
def test_audio_only_files(tmp_path, name, codec):
    path = write_audio(tmp_path / name, codec)
    with av.open(path) as c:  # a real, readable audio file
        assert len(c.streams.audio) == 1 and not c.streams.video
    with pytest.raises(VideoDecodeError, match=f"{name}: no video stream"):
        decode_clip(path, 4)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(VideoDecodeError, match="nope.mp4: file not found"):
        decode_clip(str(tmp_path / "nope.mp4"), 4)
    (tmp_path / "dir.mp4").mkdir()
    with pytest.raises(VideoDecodeError, match="dir.mp4"):
        decode_clip(str(tmp_path / "dir.mp4"), 4)


# --- unusual files that do give a clip ----------------------------------------------------------------------

@pytest.mark.parametrize("name, codec", [("gray.mkv", "ffv1"), ("gray.mov", "png")])
def test_grayscale_sources_become_rgb_with_equal_channels(tmp_path, name, codec):
    path = write_video(tmp_path / name, 12, width=37, height=23, codec=codec, pix_fmt="gray")
    with av.open(path) as c:
        assert c.streams.video[0].format.name == "gray"
    clip = decode_clip(path, 4)
    assert clip.frames.shape == (4, 23, 37, 3) and clip.frames.dtype == torch.uint8
    assert torch.equal(clip.frames[..., 0], clip.frames[..., 1]) and torch.equal(clip.frames[..., 1], clip.frames[..., 2])
    assert frame_ids(clip.frames) == clip.indices == [1, 4, 7, 10]


@pytest.mark.parametrize(
    "name, codec, pix_fmt",
    [("odd.mp4", "libx264", "yuv444p"), ("odd.mkv", "ffv1", "yuv444p"), ("odd.mov", "png", "rgb24"),
     ("odd_mpeg4.mp4", "mpeg4", "yuv420p")],  # mpeg4 pads odd yuv420p sizes itself
)
def test_odd_sized_frames(tmp_path, name, codec, pix_fmt):
    path = write_video(tmp_path / name, 6, width=37, height=23, codec=codec, pix_fmt=pix_fmt)
    clip = decode_clip(path, 3)
    assert clip.frames.shape == (3, 23, 37, 3)
    if pix_fmt != "yuv420p":  # lossless: exact frames
        assert frame_ids(clip.frames) == [1, 3, 5]
    ds = VideoTextDataset(read_rows(tmp_path, [(os.path.basename(path), "odd")]), clip=ClipOptions(num_frames=3, image_size=16))
    assert ds[0]["video"].shape == (3, 3, 16, 16) and torch.isfinite(ds[0]["video"]).all()


def test_odd_sized_yuv420p_cannot_be_written_by_x264(tmp_path):
    # Why the odd-size cases above use other formats: x264 refuses odd yuv420p sizes outright.
    with pytest.raises(av.FFmpegError):
        write_video(tmp_path / "bad.mp4", 2, width=37, height=23, codec="libx264", pix_fmt="yuv420p")


def test_resolution_change_midway(tmp_path):
    # Two transport streams of different sizes, concatenated (as some recorders and cutters produce):
    # every frame of the clip comes at the first converted frame's size.
    a = write_video(tmp_path / "a.ts", 6, 32, 32, pix_fmt="yuv420p", fmt="mpegts")
    b = write_video(tmp_path / "b.ts", 6, 48, 16, pix_fmt="yuv420p", fmt="mpegts", first=6)
    path = tmp_path / "ab.ts"
    path.write_bytes(Path(a).read_bytes() + Path(b).read_bytes())
    with av.open(str(path)) as c:
        assert {(f.width, f.height) for f in c.decode(video=0)} == {(32, 32), (48, 16)}
    clip = decode_clip(str(path), 6)
    assert clip.frames.shape == (6, 32, 32, 3) and clip.num_range_frames == 12
    assert frame_ids(clip.frames) == clip.indices == [1, 3, 5, 7, 9, 11]


@pytest.mark.parametrize("name, codec", [("long.mp4", "libx264"), ("long.mkv", "ffv1")])
def test_very_long_video_decodes_only_up_to_the_last_sampled_frame_and_converts_t(tmp_path, name, codec):
    # 2000 tiny frames: mp4 gives its frame count up front, mkv is counted by demuxing (no decoding). One
    # decoding pass stops at the last sampled frame, and only the T sampled frames are converted to RGB and
    # kept, so memory does not grow with the video's length.
    path = write_video(tmp_path / name, 2000, gop=50)
    start = time.perf_counter()
    clip = decode_clip(path, 8, "middle")
    elapsed = time.perf_counter() - start
    assert clip.num_range_frames == 2000
    assert clip.indices == [125, 375, 625, 875, 1125, 1375, 1625, 1875] == frame_ids(clip.frames)
    assert clip.num_converted == 8 and clip.num_decoded == 1876
    assert elapsed < 20, f"decoding 8 of 2000 16x16 frames took {elapsed:.1f} s"  # about 0.1 s here

    # A 2 s segment an hour's worth of frames in: seeking to the key frame before it bounds the decoding.
    seg = decode_clip(path, 8, "middle", start_sec=60.0, end_sec=62.0)  # frames 1500..1549 at 25 fps
    assert seg.num_range_frames == 50 and frame_ids(seg.frames) == [1500 + i for i in seg.indices]
    assert seg.num_converted == 8 and seg.num_decoded <= 50 + 50  # at most one GOP before the segment


def test_clip_shorter_than_t_repeats_frames_in_order(tmp_path):
    path = write_video(tmp_path / "three.mp4", 3)
    clip = decode_clip(path, 8, "middle")
    assert frame_ids(clip.frames) == clip.indices == [0, 0, 0, 1, 1, 2, 2, 2]
    assert clip.num_converted == 3  # each distinct frame converted once
    one = decode_clip(write_video(tmp_path / "one.mkv", 1, codec="ffv1"), 5, "middle")
    assert frame_ids(one.frames) == [0] * 5
    for seed in range(5):  # training jitter: still every frame, in order
        ids = frame_ids(decode_clip(path, 8, "random", generator=torch.Generator().manual_seed(seed)).frames)
        assert ids == sorted(ids) and set(ids) == {0, 1, 2}
    seg = decode_clip(write_video(tmp_path / "ten.mp4", 10, fps=10), 8, "middle", start_sec=0.3, end_sec=0.6)
    assert frame_ids(seg.frames) == [3, 3, 3, 4, 4, 5, 5, 5]  # a 3-frame segment, repeated in order


# --- data sets: skip (reported in the batch) or raise (file and row) ------------------------------------------

def read_rows(folder, rows) -> list:
    """Video-text records from a JSONL file of ``(video, caption)`` rows in ``folder`` (rows 1, 2, ...)."""
    path = Path(folder) / "ann.jsonl"
    path.write_text("".join(f'{{"video": "{v}", "caption": "{c}"}}\n' for v, c in rows), encoding="utf-8")
    return read_video_text_annotations(str(path))


@pytest.fixture
def mixed(tmp_path):
    """Six rows: good, missing, good, audio-only, empty, good; the bad ones are samples 1, 3 and 4."""
    write_video(tmp_path / "g0.mp4", 8)
    write_video(tmp_path / "g2.mp4", 8, first=100)
    write_video(tmp_path / "g5.mp4", 8, first=200)
    write_audio(tmp_path / "a3.m4a", "aac")
    write_empty(tmp_path / "e4.mkv", "ffv1")
    names = ["g0.mp4", "missing.mp4", "g2.mp4", "a3.m4a", "e4.mkv", "g5.mp4"]
    return read_rows(tmp_path, [(n, f"clip {i}") for i, n in enumerate(names)]), tmp_path


def test_raise_names_the_file_and_the_annotation_row(mixed):
    records, folder = mixed
    ann = folder / "ann.jsonl"
    # Missing files are found before any sample is read, all in one error.
    with pytest.raises(MissingFilesError, match=rf"^1 file\(s\) .*: {re.escape(records[1].video)} "
                                                rf"\({re.escape(str(ann))}, row 2\)$"):
        VideoTextDataset(records, clip=ClipOptions(num_frames=4, image_size=16), on_bad_video="raise")
    present = [r for i, r in enumerate(records) if i != 1]
    ds = VideoTextDataset(present, clip=ClipOptions(num_frames=4, image_size=16), on_bad_video="raise")
    assert ds[0]["index"] == 0
    for index, row, reason in [(2, 4, "no video stream"), (3, 5, "")]:  # unusable files fail when read
        with pytest.raises(VideoDecodeError) as e:
            ds[index]
        assert str(e.value).startswith(f"{present[index].video}: {reason}")
        assert str(e.value).endswith(f"(sample of {ann}, row {row})")
        assert e.value.path == present[index].video and e.value.origin == f"{ann}, row {row}"


def test_skip_leaves_a_hole_that_collate_drops_and_reports(mixed):
    """A skipped sample is left out of its batch, never replaced by another one: in a contrastive batch a
    duplicate would be a false negative. The batch shrinks and reports what it lost."""
    records, folder = mixed
    ds = VideoTextDataset(records, clip=ClipOptions(num_frames=4, image_size=16))
    samples = [ds[i] for i in range(6)]
    assert [s["index"] for s in samples] == [0, 1, 2, 3, 4, 5]
    assert [bool(s.get(HOLE)) for s in samples] == [False, True, False, True, True, False]
    assert all("video" not in s for s in samples if s.get(HOLE))
    ann = folder / "ann.jsonl"
    assert samples[1]["skipped"] == [{"index": 1, "path": records[1].video, "reason": "file not found",
                                      "origin": f"{ann}, row 2"}]
    assert samples[3]["skipped"][0]["reason"] == "no video stream"
    assert ds[4]["skipped"][0]["index"] == 4  # known bad: not decoded again, still reported
    assert all(s["video"].abs().sum() > 0 for s in samples if not s.get(HOLE))
    assert ds.num_skipped == 3 and ds.skipped_paths == [records[i].video for i in (1, 3, 4)]
    batch = collate_video_text(samples)
    assert batch["index"].tolist() == [0, 2, 5] and batch["video"].shape[0] == 3 and len(batch["text"]) == 3
    assert [r["index"] for r in batch["skipped"]] == [1, 3, 4]
    empty = collate_video_text([samples[1], samples[3]])  # every sample skipped: the reports alone
    assert set(empty) == {"skipped"} and [r["index"] for r in empty["skipped"]] == [1, 3]


def test_skip_reports_survive_dataloader_workers(mixed):
    # With worker processes the dataset copies in the workers count, the main process's copy sees nothing;
    # the batches carry every report, epoch after epoch (persistent workers remember known bad samples).
    records, _ = mixed
    ds = VideoTextDataset(records, clip=ClipOptions(num_frames=4, image_size=16))
    loader = DataLoader(ds, batch_size=2, shuffle=True, num_workers=2, persistent_workers=True,
                        collate_fn=collate_video_text, generator=torch.Generator().manual_seed(0))
    for _ in range(2):
        batches = list(loader)
        assert {r["index"] for b in batches for r in b["skipped"]} == {1, 3, 4}
        assert sorted(i for b in batches if "index" in b for i in b["index"].tolist()) == [0, 2, 5]  # each once
    assert ds.num_skipped == 0  # the main process's copy: why counts must travel with the batches


def test_all_bad_raises_instead_of_returning_zeros(tmp_path):
    write_audio(tmp_path / "a.m4a", "aac")
    ds = VideoTextDataset(read_rows(tmp_path, [("a.m4a", "x"), ("gone.mp4", "y")]), clip=ClipOptions(num_frames=2, image_size=8))
    assert ds[0][HOLE]
    with pytest.raises(RuntimeError, match="none of the 2 samples could be loaded.*a.m4a.*gone.mp4"):
        ds[1]


def test_classification_and_qa_datasets_report_rows_too(tmp_path):
    write_video(tmp_path / "ok.mp4", 4)
    labels = tmp_path / "labels.csv"
    labels.write_text("video,label\nok.mp4,a\nbroken.mp4,b\n", encoding="utf-8")
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 100)
    records = read_labelled_annotations(str(labels))
    ds = ClassificationDataset(records, ["a", "b"], clip=ClipOptions(num_frames=2, image_size=8))
    (report,) = ds[1]["skipped"]
    assert report["origin"] == f"{labels}, row 3" and report["path"].endswith("broken.mp4")
    with pytest.raises(VideoDecodeError, match=rf"broken.mp4: .*\(sample of {labels}, row 3\)"):
        ClassificationDataset(records, ["a", "b"], clip=ClipOptions(num_frames=2, image_size=8), on_bad_video="raise")[1]

    qa = tmp_path / "qa.jsonl"
    qa.write_text('{"video": "gone.mp4", "question": "q?", "answer": "a"}\n'
                  '{"video": "ok.mp4", "question": "q?", "answer": "b"}\n', encoding="utf-8")
    ds = QADataset(read_qa_annotations(str(qa)), clip=ClipOptions(num_frames=2, image_size=8))
    hole, sample = ds[0], ds[1]
    assert hole[HOLE] and hole["skipped"][0]["origin"] == f"{qa}, row 1" and sample["answer"] == "b"
