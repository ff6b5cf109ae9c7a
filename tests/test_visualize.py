"""trajtok visualize: the palette, the overlay, the contact sheet, and the command on real mp4 files."""

from __future__ import annotations

import subprocess
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from builders import tiny_tokenizer
from helpers import CONFIGS, MSRVTT24, SMALL_DATA, needs_msrvtt24, run_trajtok
from PIL import Image

from datamodules.synthetic import write_mp4
from trajtok.tokenizer import TrajTok
from trajtok.visualize import (
    boundary_mask,
    contact_sheet,
    overlay,
    trajectory_colours,
    visualize_clip,
)


def mp4_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def png_size(path: Path) -> tuple[int, int]:
    """(height, width) of a PNG file."""
    with Image.open(path) as image:
        image.load()
        return image.height, image.width


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory) -> Path:
    """A real 16-frame mp4: a red square moving right over a grey-blue gradient (even sizes for yuv420p)."""
    frames = np.zeros((16, 48, 64, 3), dtype=np.uint8)
    frames[..., 2] = np.linspace(60, 160, 64, dtype=np.uint8)[None, None, :]
    frames[..., 1] = 90
    for t in range(16):
        frames[t, 16:32, 2 + 3 * t : 18 + 3 * t] = (220, 30, 30)
    path = tmp_path_factory.mktemp("clip") / "square.mp4"
    write_mp4(str(path), frames, fps=8)
    return path


def tiny_trajtok(chunk_frames: int | None = None) -> TrajTok:
    return tiny_tokenizer(seed=0, num_slots=6, widths=(8, 16), depth=1, head_dim=8, chunk_frames=chunk_frames)


def test_palette_depends_only_on_the_id():
    colours = trajectory_colours(64)
    assert colours.shape == (64, 3) and colours.dtype == torch.uint8
    assert len({tuple(c) for c in colours.tolist()}) == 64  # different ids, different colours
    assert torch.equal(trajectory_colours(10), colours[:10])  # the table length changes nothing
    assert torch.equal(trajectory_colours(10, seed=3), trajectory_colours(10, seed=3))
    assert not torch.equal(trajectory_colours(10, seed=3), colours[:10])


def test_a_trajectory_keeps_its_colour_in_every_frame():
    # Trajectory 5 moves across a 4x4 grid over 4 frames; 2 (frame 0-1) and 9 (frame 2-3) fill the rest.
    labels = torch.full((4, 4, 4), 2, dtype=torch.long)
    labels[2:] = 9
    for t in range(4):
        labels[t, 1, t] = 5
    frames = torch.full((4, 16, 16, 3), 100, dtype=torch.uint8)
    painted = overlay(frames, labels, boundaries=False)
    big = labels.repeat_interleave(4, 1).repeat_interleave(4, 2)
    colour_of = {k: {tuple(painted[big == k][i].tolist()) for i in range(int((big == k).sum()))} for k in (2, 5, 9)}
    assert all(len(c) == 1 for c in colour_of.values())  # one colour per id, across all frames
    assert len({next(iter(c)) for c in colour_of.values()}) == 3  # and a different one per id


def test_overlay_blends_toward_the_trajectory_colour():
    frames = torch.full((2, 8, 12, 3), 100, dtype=torch.uint8)
    labels = torch.tensor([[[0, 3, 3], [-1, 3, 3]]]).expand(2, -1, -1)  # (2, 2, 3) grid -> 4x4-pixel cells
    colours = trajectory_colours(4)
    painted = overlay(frames, labels, alpha=0.5, boundaries=True)
    assert painted.shape == frames.shape and painted.dtype == torch.uint8
    expected = (0.5 * 100 + 0.5 * colours[3].double()).round().to(torch.uint8)
    assert torch.equal(painted[1, 1, 6], expected)  # inside trajectory 3
    assert torch.equal(painted[0, 6, 1], frames[0, 6, 1])  # id -1: no assignment, left as it is
    edge = painted[0, 1, 3]  # the last column of cell 0, next to trajectory 3: a boundary pixel
    interior = overlay(frames, labels, boundaries=False)[0, 1, 3]
    assert (edge.int() < interior.int()).all()
    assert boundary_mask(torch.tensor([[[0, 0, 1]]])).tolist() == [[[False, True, False]]]
    assert torch.equal(overlay(frames, labels, alpha=0.0, boundaries=False), frames)
    with pytest.raises(ValueError, match="uint8"):
        overlay(frames.float(), labels)


@pytest.mark.parametrize("num_frames, columns", [(12, 8), (3, 3)])
def test_contact_sheet_size_and_columns(num_frames, columns):
    frames = torch.arange(num_frames, dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 10, 14, 3).contiguous()
    overlays = 255 - frames
    sheet = contact_sheet(frames, overlays, max_columns=8, gap=2)
    assert sheet.shape == (2 * 10 + 2, columns * 14 + (columns - 1) * 2, 3)
    assert torch.equal(sheet[:10, :14], frames[0]) and torch.equal(sheet[12:, -14:], overlays[-1])
    assert (sheet[10:12] == 255).all() and (sheet[:, 14:16] == 255).all()  # white gaps


def test_visualize_clip_with_chunks_and_its_errors(clip_path, tmp_path):
    tokenizer = tiny_trajtok(chunk_frames=4)
    result = visualize_clip(tokenizer, clip_path, tmp_path, num_frames=8, image_size=32, display_size=48)
    assert result["frames"] == 8 and 1 <= result["trajectories"] <= 12 and result["valid_tokens"] >= 1
    frames = mp4_frames(Path(result["overlay"]))
    assert len(frames) == 8 and frames[0].shape == (48, 48, 3)
    assert png_size(Path(result["sheet"])) == (2 * 48 + 2, 8 * 48 + 7 * 2)
    with pytest.raises(ValueError, match=r"num_frames=6.*chunk_frames=4"):
        visualize_clip(tokenizer, clip_path, tmp_path, num_frames=6, image_size=32)
    with pytest.raises(ValueError, match="display_size=47"):
        visualize_clip(tokenizer, clip_path, tmp_path, num_frames=8, display_size=47)
    with pytest.raises(Exception, match="missing.mp4"):
        visualize_clip(tokenizer, tmp_path / "missing.mp4", tmp_path)


@needs_msrvtt24
def test_visualize_a_real_msrvtt24_clip(tmp_path):
    video = min((MSRVTT24 / "videos").glob("*.mp4"))
    result = visualize_clip(tiny_trajtok(), video, tmp_path, num_frames=8, image_size=32, display_size=64)
    assert result["frames"] == 8 and result["trajectories"] >= 1
    assert len(mp4_frames(Path(result["overlay"]))) == 8
    assert png_size(Path(result["sheet"])) == (2 * 64 + 2, 8 * 64 + 7 * 2)


def run_visualize(args: list[str], cwd: Path, cache: Path) -> subprocess.CompletedProcess:
    return run_trajtok(["visualize", "--config", str(CONFIGS / "segmenter.yaml"), *SMALL_DATA, *args], cwd, cache)


@pytest.mark.subprocess
@pytest.mark.slow
def test_cli_on_a_video_file_without_checkpoint_warns(clip_path, tmp_path, cache):
    out = tmp_path / "out"
    result = run_visualize(["--video", str(clip_path), "--out", str(out), "--num_frames", "6",
                            "--display_size", "64"], tmp_path, cache)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "no --ckpt_path" in result.stderr
    line = result.stdout.strip().splitlines()[-1]
    assert line.startswith(str(clip_path)) and "frames=6" in line and "valid_tokens=" in line
    frames = mp4_frames(out / "square_overlay.mp4")
    assert len(frames) == 6 and frames[0].shape == (64, 64, 3)
    assert png_size(out / "square_sheet.png") == (2 * 64 + 2, 6 * 64 + 5 * 2)
    assert not (tmp_path / "runs").exists()  # building the model from the config writes no run folder


@pytest.mark.subprocess
@pytest.mark.slow
def test_cli_on_the_test_split(tmp_path, cache):
    out = tmp_path / "out"
    result = run_visualize(["--split", "test", "--limit", "1", "--out", str(out), "--display_size", "32"],
                           tmp_path, cache)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and "frames=8" in lines[0]  # configs/segmenter.yaml: num_frames 8
    sheets, videos = list(out.glob("*_sheet.png")), list(out.glob("*_overlay.mp4"))
    assert len(sheets) == 1 and len(videos) == 1
    assert len(mp4_frames(videos[0])) == 8
    assert png_size(sheets[0]) == (2 * 32 + 2, 8 * 32 + 7 * 2)


@pytest.mark.subprocess
@pytest.mark.slow
def test_cli_errors_name_the_option(clip_path, tmp_path, cache):
    result = run_visualize(["--video", str(clip_path), "--out", str(tmp_path), "--num_frames", "6",
                            "--model.tokenizer.init_args.chunk_frames=4"], tmp_path, cache)
    assert result.returncode != 0
    assert "num_frames=6" in result.stderr and "chunk_frames=4" in result.stderr
    assert "Traceback" not in result.stderr
