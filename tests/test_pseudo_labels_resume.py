"""``trajtok pseudo-label`` on real video files when things go wrong (issue 29, cases 1 and 2): a run killed (SIGKILL)
between a video's label files and its statistics row, or while its contact sheet is drawn, loses nothing on the
rerun; two videos of one stem (``same.mp4``, ``same.mkv``) get labels of their own; inputs whose label names would
still collide are an error before anything is written. The kills are callbacks of this module that the child
process imports (``--trainer.callbacks+=``), as ``tests/support/faults.py``'s are for training."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
from pathlib import Path

import lightning as L
import pytest
from helpers import ROOT, callback, run_trajtok

from datamodules.pseudo_label_files import load_pseudo_labels
from datamodules.video import read_all_frames
from trajtok.files import PARTIAL

# ----------------------------------------------------------------------------------------- faults (child side)


class KillWhilePainting(L.Callback):
    """SIGKILLs the process while the writer draws contact sheet number ``sheet`` (1-based): half of its PNG
    written, as a pre-emption would leave it. The kill is inside Pillow's save, so the writer's own ``write_png``
    (whole or not at all) runs as it does in use."""

    def __init__(self, sheet: int) -> None:
        from PIL import Image

        super().__init__()
        calls, save = [0], Image.Image.save

        def dying_save(image, fp, *args, **kwargs):
            calls[0] += 1
            if calls[0] == sheet:
                with open(fp, "wb") as f:
                    f.write(b"\x89PNG\r\n")
                os.kill(os.getpid(), signal.SIGKILL)
            save(image, fp, *args, **kwargs)

        Image.Image.save = dying_save


class KillAfterLabelFiles(L.Callback):
    """SIGKILLs the process right after the graph file (the second of a video's two label files) of video number
    ``video`` (1-based) is in place: the moment between a video's files and its record."""

    def __init__(self, video: int) -> None:
        from trajtok.pseudo_labels import writer

        super().__init__()
        calls, atomic_path = [0], writer.atomic_path

        @contextlib.contextmanager
        def dying_atomic_path(path):
            with atomic_path(path) as tmp:
                yield tmp
            if str(path).endswith("_graph.npz"):  # renamed into place: the file is whole
                calls[0] += 1
                if calls[0] == video:
                    os.kill(os.getpid(), signal.SIGKILL)

        writer.atomic_path = dying_atomic_path


# ----------------------------------------------------------------------------------------------- real videos


def write_video(path: Path, frames: int, height: int, width: int) -> None:
    """A real H.264 video of a bar sweeping right: Matroska for ``.mkv``, else MP4 (also without an extension)."""
    import av
    import numpy as np

    with av.open(str(path), "w", format="matroska" if path.suffix == ".mkv" else "mp4") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for t in range(frames):
            image = np.full((height, width, 3), 40, np.uint8)
            image[:, : (t * 5) % width + 1] = 220
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def label_args(folder: Path, out: Path, *extra: str) -> list[str]:
    """The documented command on a folder, with parts that need no model (each key frame split into halves, held
    still through its chunk); the config's writer draws the first 4 videos' contact sheets."""
    return ["pseudo-label", "--config", str(ROOT / "configs/pseudo_labels.yaml"),
            "--model.segmenter=pseudo_label_oracles.HalvesSegmenter",
            "--model.propagator=pseudo_label_oracles.StillPropagator",
            "--model.chunker=trajtok.pseudo_labels.FixedChunks",
            "--data.source=null", f"--data.folder={folder}", f"--data.out_dir={out}", "--data.num_workers=0",
            "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false", *extra]


def summary(out: Path) -> list[dict]:
    with open(out / "summary.csv") as f:
        return list(csv.DictReader(f))


def check_labels_match_their_videos(out: Path) -> list[dict]:
    """Every annotation row's labels cover its own video: as many frames, and its frame size."""
    rows = [json.loads(line) for line in (out / "pseudo_labels.jsonl").read_text().splitlines()]
    for row in rows:
        masks, graph, _ = load_pseudo_labels(str(out / row["mask"]), str(out / row["graph"]))
        frames = read_all_frames(str(out / row["video"]))
        assert masks.shape == tuple(frames.shape[:3]), row
        assert graph.shape[1] == len(frames), row
    return rows


@pytest.fixture(scope="module")
def six_videos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("videos")
    for i in range(6):
        write_video(folder / f"clip{i}.mp4", frames=4 + i, height=24, width=32 + 8 * i)
    return folder


# ----------------------------------------------------------------------------------------------------- case 1


@pytest.mark.subprocess
@pytest.mark.slow
@pytest.mark.parametrize("fault", [callback("test_pseudo_labels_resume.KillWhilePainting", sheet=2),
                                   callback("test_pseudo_labels_resume.KillAfterLabelFiles", video=2)],
                         ids=["while-drawing-a-contact-sheet", "between-label-files-and-record"])
def test_a_run_killed_after_a_videos_files_loses_nothing_on_the_rerun(six_videos, tmp_path, cache, fault):
    out = tmp_path / "labels"
    killed = run_trajtok(label_args(six_videos, out, fault), tmp_path, cache)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert (out / "clip1_graph.npz").is_file()  # the second video's files were written before the kill
    again = run_trajtok(label_args(six_videos, out), tmp_path, cache)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "6 of 6 videos labelled" in again.stderr + again.stdout
    rows = summary(out)
    assert sorted(r["name"] for r in rows) == [f"clip{i}" for i in range(6)]
    assert all(r["status"] == "labelled" and int(r["frames"]) == 4 + int(r["name"][-1]) for r in rows)
    assert len(check_labels_match_their_videos(out)) == 6
    from datamodules.videos_to_label import recorded_names

    assert recorded_names(str(out)) == {f"clip{i}" for i in range(6)}
    assert not list(out.glob(f"*{PARTIAL}*"))  # no label file half written (a killed sheet may leave its temporary)


# ----------------------------------------------------------------------------------------------------- case 2


@pytest.mark.subprocess
@pytest.mark.slow
def test_two_videos_of_one_stem_get_labels_of_their_own(tmp_path, cache):
    folder = tmp_path / "videos"
    folder.mkdir()
    write_video(folder / "same.mp4", frames=6, height=32, width=48)
    write_video(folder / "same.mkv", frames=4, height=24, width=40)  # a real Matroska file
    write_video(folder / "other.mp4", frames=5, height=24, width=32)
    out = tmp_path / "labels"
    result = run_trajtok(label_args(folder, out), tmp_path, cache)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "3 of 3 videos labelled" in result.stderr + result.stdout
    rows = check_labels_match_their_videos(out)
    assert sorted((r["video"], r["mask"]) for r in rows) == [
        ("../videos/other.mp4", "other_mask.npz"),  # a stem no other video has keeps TrajViT's name
        ("../videos/same.mkv", "same.mkv_mask.npz"),
        ("../videos/same.mp4", "same.mp4_mask.npz")]
    assert sorted((r["name"], r["frames"]) for r in summary(out)) == [("other", "5"), ("same.mkv", "4"),
                                                                     ("same.mp4", "6")]
    assert not (out / "same_mask.npz").exists()


@pytest.mark.subprocess
def test_inputs_whose_labels_would_still_collide_are_an_error_before_anything_is_written(tmp_path, cache):
    # The first second of a.mp4 and a video file named a.mp4_0-1s: named apart by TrajViT's names (a_0-1s, a),
    # which a_0-1s.mkv and a.mkv take too, so all four keep their extensions, and the first two meet.
    folder = tmp_path / "videos"
    folder.mkdir()
    videos = [("a.mp4", 0, 1), ("a.mp4_0-1s", None, None), ("a_0-1s.mkv", None, None), ("a.mkv", None, None)]
    with open(folder / "train.jsonl", "w") as f:
        for video, start, end in videos:
            write_video(folder / video, frames=10, height=16, width=16)
            bounds = {} if start is None else {"start": start, "end": end}
            f.write(json.dumps({"video": video, "caption": video, **bounds}) + "\n")
    out = tmp_path / "labels"
    args = label_args(folder, out)
    args[args.index("--data.source=null"): args.index(f"--data.folder={folder}") + 1] = [
        f"--data.source.init_args.train_annotations={folder / 'train.jsonl'}"]
    result = run_trajtok(args, tmp_path, cache)
    assert result.returncode == 2, result.stderr[-3000:]
    error = result.stderr.strip().splitlines()[-2]
    assert error == (f"trajtok pseudo-label: error: {folder / 'a.mp4'} (0 s to 1 s) and {folder / 'a.mp4_0-1s'} "
                     f"would both be labelled as {out / 'a.mp4_0-1s'}_mask.npz; rename one of them")
    assert not out.exists()


# --------------------------------------------------------------------------------------- names, in-process


def test_label_names_keep_trajvits_form_unless_two_inputs_share_it(tmp_path):
    from datamodules.videos_to_label import label_items

    root = str(tmp_path)

    def names(*entries):
        items = label_items([(os.path.join(root, v), s, e, {}) for v, s, e in entries], root, "out")
        return [item.name("out") for item in items]

    assert names(("a/x.mp4", None, None), ("b/x.mp4", None, None)) == ["a/x", "b/x"]
    assert names(("same.mp4", None, None), ("same.mkv", None, None)) == ["same.mp4", "same.mkv"]
    # A kept extension that meets another video's stem makes that one keep its own too.
    assert names(("same.mp4", None, None), ("same.mkv", None, None), ("same.mp4.avi", None, None)) == [
        "same.mp4", "same.mkv", "same.mp4.avi"]
    # A clip named like a whole video: both keep their extensions.
    assert names(("v.mp4", 0.0, 5.0), ("v_0-5s.mp4", None, None)) == ["v.mp4_0-5s", "v_0-5s.mp4"]
    assert names(("v.mp4", 2.5, None), ("v.mp4", None, 3.0)) == ["v_2.5-ends", "v_0-3s"]
    # %g would print both bounds as 1.00000: the exact form keeps them apart.
    assert names(("v.mp4", 1.000001, None), ("v.mp4", 1.0000011, None)) == ["v_1.000001-ends", "v_1.0000011-ends"]
    # Apart under TrajViT's names (v_0-5s, v): kept.
    assert names(("v.mp4", 0.0, 5.0), ("v.mp4_0-5s", None, None)) == ["v_0-5s", "v"]
    with pytest.raises(ValueError, match=r"would both be labelled as out/v.mp4_0-5s_mask.npz; rename one"):
        names(("v.mp4", 0.0, 5.0), ("v.mp4_0-5s", None, None), ("v_0-5s.mkv", None, None), ("v.mkv", None, None))
