"""Seeing trajectories: a tokenizer's label map painted over the clip it was computed on.

Every tokenizer returns ``labels (B, T, h, w)``, the global trajectory id of each feature-grid patch. Painting
each id in its own colour over the frames shows what the tokenizer grouped into one token: a trajectory keeps
its colour in every frame (and chunk) it appears in, so tracking, splits and merges are visible at a glance.

The functions are small and pure (tensors in, tensors out) except ``write_png`` and ``visualize_clip``, which
write files. ``visualize_command`` is ``trajtok visualize``, the command-line front end.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from datamodules.base import SPLIT_STAGES
from datamodules.synthetic import write_mp4
from datamodules.transforms import (
    Box,
    center_box,
    eval_clip_transform,
    resized_crop,
    to_float_tchw,
)
from datamodules.video import BadSampleError, decode_clip
from trajtok.checkpoint import read_checkpoint
from trajtok.conversion import build_module, load_model_weights
from trajtok.files import atomic_path
from trajtok.release import (
    DEFAULT_TEXT_VOCAB,
    is_release,
    official_model,
    read_layout,
    release_state,
)
from trajtok.tokens import TrajectoryTokens

# Hue step of the palette: consecutive ids land far apart on the colour wheel and no two ids ever share a hue.
GOLDEN = 0.6180339887498949
# Saturation and value cycle with periods 2 and 3, so ids whose golden-ratio hues happen to be close (ids 13, 21,
# 34 apart) still differ in brightness or saturation.
SATURATIONS = (0.9, 0.6)
VALUES = (1.0, 0.78, 0.9)
# Mask boundaries are drawn at this fraction of the blended colour's brightness.
BOUNDARY_DARKEN = 0.35


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """Float ``(..., 3)`` HSV in [0, 1] to RGB in [0, 1] (the standard piecewise-linear formula, vectorised)."""
    h, s, v = hsv.unbind(-1)
    n = torch.tensor([5.0, 3.0, 1.0], dtype=hsv.dtype, device=hsv.device)
    k = (n + h[..., None] * 6) % 6
    ramp = torch.clamp(torch.minimum(k, 4 - k), 0, 1)
    return v[..., None] - v[..., None] * s[..., None] * ramp


def trajectory_colours(num_ids: int, seed: int = 0) -> torch.Tensor:
    """A stable palette: uint8 ``(num_ids, 3)`` RGB, row i the colour of trajectory id i.

    The colour of an id depends only on the id and ``seed`` (not on ``num_ids``, the frame or the chunk), so a
    trajectory is painted the same wherever it appears. Hues step by the golden ratio (well separated for any
    number of ids); ``seed`` rotates the whole wheel.
    """
    if num_ids < 0:
        raise ValueError(f"num_ids={num_ids} must be >= 0")
    ids = torch.arange(num_ids, dtype=torch.float64)
    offset = (seed * 0.7548776662466927) % 1.0  # a second irrational step, so seeds do not repeat the wheel
    hue = (offset + ids * GOLDEN) % 1.0
    index = torch.arange(num_ids)
    saturation = torch.tensor(SATURATIONS, dtype=torch.float64)[index % len(SATURATIONS)]
    value = torch.tensor(VALUES, dtype=torch.float64)[index % len(VALUES)]
    rgb = hsv_to_rgb(torch.stack([hue, saturation, value], dim=-1))
    return (rgb * 255).round().to(torch.uint8)


def upsample_labels(labels: torch.Tensor, size: tuple[int, int, int]) -> torch.Tensor:
    """Long ``(t, h, w)`` label map to ``size = (T, H, W)`` by nearest neighbour in time and space (ids are
    labels, not intensities: they must never be blended). A grid coarser in time (tubelet feature models)
    repeats each label frame over the frames it covers."""
    if tuple(labels.shape) == tuple(size):
        return labels.long()
    up = F.interpolate(labels[None, None].double(), size=size, mode="nearest-exact")
    return up[0, 0].long()


def boundary_mask(labels: torch.Tensor) -> torch.Tensor:
    """Bool ``(T, H, W)``: pixels whose right or lower neighbour has another label (one-pixel lines)."""
    edge = torch.zeros_like(labels, dtype=torch.bool)
    edge[:, :, :-1] |= labels[:, :, :-1] != labels[:, :, 1:]
    edge[:, :-1, :] |= labels[:, :-1, :] != labels[:, 1:, :]
    return edge


def _check_frames(frames: torch.Tensor, name: str = "frames") -> None:
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{name} must be uint8 (T, H, W, 3), got {frames.dtype} {tuple(frames.shape)}")


def overlay(
    frames: torch.Tensor,
    labels: torch.Tensor,
    alpha: float = 0.5,
    boundaries: bool = True,
    colours: torch.Tensor | None = None,
) -> torch.Tensor:
    """Paint trajectories over a clip: uint8 ``(T, H, W, 3)``.

    ``labels (t, h, w)`` (any grid, usually the 1/4-resolution one) is upsampled to the frames by nearest
    neighbour; each pixel with id ``k >= 0`` becomes ``(1 - alpha) * pixel + alpha * colour[k]``, pixels with
    id ``-1`` (no assignment) stay as they are. ``boundaries`` darkens the pixels where the id changes, so
    neighbouring trajectories of similar colour stay apart. ``colours`` defaults to ``trajectory_colours``.
    """
    _check_frames(frames)
    if labels.ndim != 3 or labels.dtype.is_floating_point:
        raise ValueError(f"labels must be an integer (T, h, w) map, got {labels.dtype} {tuple(labels.shape)}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha={alpha} must be in [0, 1]")
    ids = upsample_labels(labels.to(frames.device), tuple(frames.shape[:3]))
    if colours is None:
        colours = trajectory_colours(int(ids.max()) + 1 if ids.numel() else 0)
    if ids.numel() and int(ids.max()) >= colours.shape[0]:
        raise ValueError(f"label id {int(ids.max())} has no colour: the palette has {colours.shape[0]}")
    out = frames.float()
    painted = colours.to(frames.device).float()[ids.clamp(min=0)]
    out = torch.where((ids >= 0)[..., None], (1 - alpha) * out + alpha * painted, out)
    if boundaries:
        out = torch.where(boundary_mask(ids)[..., None], out * BOUNDARY_DARKEN, out)
    return out.round().clamp(0, 255).to(torch.uint8)


def sheet_columns(num_frames: int, max_columns: int) -> torch.Tensor:
    """The frame indices a contact sheet shows: all frames, or ``max_columns`` of them evenly spaced from the
    first to the last."""
    if max_columns < 1:
        raise ValueError(f"max_columns={max_columns} must be positive")
    if num_frames <= max_columns:
        return torch.arange(num_frames)
    return torch.linspace(0, num_frames - 1, max_columns, dtype=torch.float64).round().long()


def contact_sheet(frames: torch.Tensor, overlays: torch.Tensor, max_columns: int = 8, gap: int = 2) -> torch.Tensor:
    """One uint8 image: the frames in the top row, their overlays below, one column per shown frame.

    With ``n = min(T, max_columns)`` columns (evenly subsampled frames when ``T > max_columns``) of ``H x W``
    tiles separated by white gaps of ``gap`` pixels, the sheet is ``(2 * H + gap, n * W + (n - 1) * gap, 3)``.
    """
    _check_frames(frames)
    _check_frames(overlays, "overlays")
    if frames.shape != overlays.shape:
        raise ValueError(f"frames {tuple(frames.shape)} and overlays {tuple(overlays.shape)} differ in shape")
    if gap < 0:
        raise ValueError(f"gap={gap} must be >= 0")
    columns = sheet_columns(frames.shape[0], max_columns)
    n, (h, w) = len(columns), frames.shape[1:3]
    sheet = torch.full((2 * h + gap, n * w + (n - 1) * gap, 3), 255, dtype=torch.uint8)
    for j, t in enumerate(columns.tolist()):
        left = j * (w + gap)
        sheet[:h, left : left + w] = frames[t]
        sheet[h + gap :, left : left + w] = overlays[t]
    return sheet


def write_png(path: str | os.PathLike, image: torch.Tensor) -> None:
    """Write a uint8 ``(H, W, 3)`` RGB image as a (losslessly compressed, optimised) PNG."""
    from PIL import Image  # Pillow: a dependency in pyproject.toml for this writer

    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must be uint8 (H, W, 3), got {image.dtype} {tuple(image.shape)}")
    with atomic_path(path) as tmp:
        Image.fromarray(image.cpu().numpy()).save(tmp, format="PNG", optimize=True)


def display_frames(clip: torch.Tensor, size: int) -> torch.Tensor:
    """The region of uint8 ``clip (T, H, W, 3)`` that the evaluation transform feeds the model (resize the
    shorter side, centre crop), at ``size`` pixels: the same box as ``eval_clip_transform``, so labels line up,
    but resampled from the source frames rather than upsampled from the small model input."""
    _, h, w, _ = clip.shape
    box = center_box(h, w, size, size)
    crop = clip[:, box.top : box.top + box.height, box.left : box.left + box.width]
    out = resized_crop(to_float_tchw(crop), Box(0, 0, box.height, box.width), (size, size))
    return (out * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def _tokenizer_of(model: nn.Module) -> nn.Module:
    return getattr(model, "tokenizer", model)


def tokenize(model: nn.Module, video: torch.Tensor) -> TrajectoryTokens:
    """Run ``model`` (a tokenizer, or a ``TrajTokModule``, whose forward is its tokenizer's) on one normalised
    clip ``(T, 3, S, S)`` in eval mode under ``no_grad``; the model's training flag is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            tokens = model(video[None])
    finally:
        model.train(was_training)
    if not isinstance(tokens, TrajectoryTokens):
        raise TypeError(f"{type(model).__name__} returned {type(tokens).__name__}, not TrajectoryTokens")
    return tokens


def visualize_clip(
    model: nn.Module,
    video_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    num_frames: int = 16,
    image_size: int = 64,
    device: str | torch.device = "cpu",
    display_size: int = 256,
    fps: int = 4,
    max_columns: int = 8,
    start_sec: float | None = None,
    end_sec: float | None = None,
    stem: str | None = None,
) -> dict[str, Any]:
    """Tokenise one video and write what the tokenizer grouped.

    The clip is sampled and normalised exactly as the datamodules do for evaluation (``num_frames`` middle
    frames of equal parts, shorter side resized and centre-cropped to ``image_size``, ImageNet mean / std);
    ``model`` runs on it in eval mode under ``no_grad`` on ``device``. Written into ``out_dir``:
    ``<stem>_overlay.mp4`` (the ``num_frames`` overlaid frames at ``display_size`` pixels, ``fps`` frames per
    second) and ``<stem>_sheet.png`` (``contact_sheet`` of frames over overlays). ``stem`` defaults to the video's
    file name without extension.

    Returns a dict: ``video``, ``overlay``, ``sheet`` (paths), ``frames``, ``trajectories`` (distinct ids in the
    label map) and ``valid_tokens`` (``TrajectoryTokens.num_valid``: trajectories times sub-tokens).
    Raises ``ValueError`` naming the video and the option when the tokenizer cannot take the clip (e.g. a frame
    count that does not split into ``chunk_frames``), ``VideoDecodeError`` for unreadable files.
    """
    video_path = os.fspath(video_path)
    if num_frames < 1:
        raise ValueError(f"num_frames={num_frames} must be positive")
    if image_size < 4:
        raise ValueError(f"image_size={image_size}: the label grid is 1/4 of the input, so it must be >= 4")
    if display_size < 2 or display_size % 2:
        raise ValueError(f"display_size={display_size} must be a positive even number (the mp4 is yuv420p)")
    tokenizer = _tokenizer_of(model)
    if hasattr(tokenizer, "num_chunks"):
        try:
            tokenizer.num_chunks(num_frames)
        except ValueError as e:
            raise ValueError(f"num_frames={num_frames} does not suit the tokenizer: {e}") from e

    clip = decode_clip(video_path, num_frames, "middle", start_sec, end_sec)
    video, _ = eval_clip_transform(clip.frames, image_size)
    try:
        tokens = tokenize(model.to(device), video.to(device))
    except (ValueError, RuntimeError) as e:
        raise ValueError(
            f"{video_path}: the tokenizer cannot take a clip of num_frames={num_frames} at image_size={image_size}: "
            f"{e}"
        ) from e
    labels = tokens.labels[0].cpu()
    if labels.ndim != 3:
        raise ValueError(f"{type(tokenizer).__name__} returned labels of shape {tuple(tokens.labels.shape)}, "
                         "not (B, T, h, w)")

    frames = display_frames(clip.frames, display_size)
    painted = overlay(frames, labels)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = stem or Path(video_path).stem
    overlay_path, sheet_path = out_dir / f"{stem}_overlay.mp4", out_dir / f"{stem}_sheet.png"
    with atomic_path(overlay_path) as tmp:
        write_mp4(tmp, painted.numpy(), fps)
    write_png(sheet_path, contact_sheet(frames, painted, max_columns))
    ids = labels[labels >= 0]
    return {
        "video": video_path,
        "overlay": os.fspath(overlay_path),
        "sheet": os.fspath(sheet_path),
        "frames": int(frames.shape[0]),
        "trajectories": int(torch.unique(ids).numel()),
        "valid_tokens": int(tokens.num_valid[0]),
    }


def visualize_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trajtok visualize",
        description="Paint the trajectories a model's tokenizer finds over video clips: <stem>_overlay.mp4 and "
        "<stem>_sheet.png per clip. Options not listed here (--model.*, --data.*, ...) override the config.",
        allow_abbrev=False,
    )
    parser.add_argument("--config", required=True, action="append",
                        help="the yaml the model was trained with (as for fit; repeat it to compose, e.g. with "
                             "configs/layouts/lite.yaml)")
    parser.add_argument("--ckpt_path", help="a Lightning checkpoint of that config, or a released TrajTok model.pth "
                        "(its model replaces the config's); without it the weights are the "
                        "config's initialisation")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--video", nargs="+", metavar="FILE", help="video files to visualise")
    source.add_argument("--split", choices=tuple(SPLIT_STAGES), help="visualise the clips of the config's data split")
    parser.add_argument("--limit", type=int, help="with --split: the first N clips (default: all)")
    parser.add_argument("--out", required=True, help="folder for the outputs (created)")
    parser.add_argument("--num_frames", type=int, help="frames sampled per clip (default: the data's num_frames)")
    parser.add_argument("--image_size", type=int, help="model input side (default: the data's image_size)")
    parser.add_argument("--display_size", type=int, default=256, help="side of the written frames (default 256)")
    parser.add_argument("--max_columns", type=int, default=8, help="frames shown in the contact sheet (default 8)")
    parser.add_argument("--fps", type=int, default=4, help="frame rate of the overlay mp4 (default 4)")
    parser.add_argument("--device", default="auto", help="torch device (default: cuda if available, else cpu)")
    return parser


def split_clips(datamodule, split: str, limit: int | None) -> list[tuple[str, float | None, float | None]]:
    """``(video, start_sec, end_sec)`` of the first ``limit`` distinct clips of a split of a clip datamodule
    (QA data repeats a clip per question; it is shown once)."""
    if not hasattr(datamodule, "annotation_path") or not hasattr(datamodule, "datasets"):
        raise ValueError(f"--split: {type(datamodule).__name__} does not expose annotated splits; use --video")
    if datamodule.annotation_path(split) is None:
        raise ValueError(f"--split {split}: the config's data has no {split} split (set {split}_annotations)")
    datamodule.setup(SPLIT_STAGES[split])
    clips = list(dict.fromkeys((r.video, r.start_sec, r.end_sec) for r in datamodule.datasets[split].records))
    return clips if limit is None else clips[:limit]


def unique_stems(paths: list[str]) -> list[str]:
    """Output stems: each file's name without extension, numbered where two clips would share one."""
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    seen: dict[str, int] = {}
    out = []
    for stem in stems:
        seen[stem] = seen.get(stem, 0) + 1
        out.append(stem if stems.count(stem) == 1 else f"{stem}_{seen[stem]}")
    return out


def visualize_command(argv: list[str]) -> None:
    """``trajtok visualize``: build the model (and data) from a fit config with ``TrajTokCLI(run=False)``, load
    the checkpoint strictly, and write an overlay video and a contact sheet per clip. One line per clip on stdout:
    path, frames, trajectories, valid tokens and the files written."""
    from trajtok.cli import (  # the command sits on the CLI, which imports this lazily
        TrajTokCLI,
        warn_replaced,
    )

    parser = visualize_parser()
    opts, overrides = parser.parse_known_args(argv)
    if opts.limit is not None and (opts.split is None or opts.limit < 1):
        parser.error("--limit needs --split and a positive N")
    # Fail on missing files before the (slow) model build.
    if opts.ckpt_path and not os.path.isfile(opts.ckpt_path):
        parser.error(f"--ckpt_path {opts.ckpt_path}: no such file")
    missing = [path for path in opts.video or () if not os.path.isfile(path)]
    if missing:
        parser.error(f"--video: no such file: {', '.join(missing)}")
    checkpoint = read_checkpoint(opts.ckpt_path) if opts.ckpt_path else None
    # The same parser as fit: unknown override keys fail here, named by jsonargparse.
    with warnings.catch_warnings():
        # Lightning warns when args are given while sys.argv has others: here they are ours, parsed above.
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        cli = TrajTokCLI(args=[*(a for c in opts.config for a in ("--config", c)), *overrides], run=False)
    model, datamodule = cli.model, cli.datamodule
    if checkpoint is not None and is_release(checkpoint):
        # The released model replaces the config's, as --ckpt_path does for the other commands.
        layout = read_layout(release_state(checkpoint, opts.ckpt_path), opts.ckpt_path)
        hparams = official_model(layout, TrajTokCLI._config_text_vocab(cli.config) or DEFAULT_TEXT_VOCAB)
        before = {part: cli.config["model"][part] for part in hparams}
        replaced = cli.config.clone()
        for part in hparams:
            replaced["model"][part] = None
        warn_replaced(before, cli.parser.parse_object({"model": hparams}, replaced)["model"], opts.ckpt_path)
        model = build_module(hparams)
    if opts.ckpt_path:
        load_model_weights(model, opts.ckpt_path, checkpoint)
    else:
        warnings.warn(
            f"no --ckpt_path: visualising the untrained initialisation of {' + '.join(opts.config)}; the trajectories mean "
            "nothing until the model is trained",
            UserWarning,
            stacklevel=1,
        )
    clip = getattr(datamodule, "clip", None)  # a JointDataModule answers with its videos'
    num_frames = opts.num_frames or getattr(clip, "num_frames", None) or 16
    image_size = opts.image_size or getattr(clip, "image_size", None)
    if image_size is None:
        parser.error(f"{type(datamodule).__name__} has no image_size: give --image_size")
    device = ("cuda" if torch.cuda.is_available() else "cpu") if opts.device == "auto" else opts.device
    if opts.video:
        clips = [(path, None, None) for path in opts.video]
        skip_bad = False
    else:
        clips = split_clips(datamodule, opts.split, opts.limit)
        skip_bad = getattr(datamodule, "on_bad_video", "raise") == "skip"
    done = 0
    for (path, start, end), stem in zip(clips, unique_stems([c[0] for c in clips])):
        try:
            result = visualize_clip(
                model, path, opts.out, num_frames=num_frames, image_size=image_size, device=device,
                display_size=opts.display_size, fps=opts.fps, max_columns=opts.max_columns,
                start_sec=start, end_sec=end, stem=stem,
            )
        except BadSampleError as e:
            if not skip_bad:
                raise
            print(f"skipping {e}", file=sys.stderr)
            continue
        done += 1
        print(f"{path}\tframes={result['frames']}\ttrajectories={result['trajectories']}\t"
              f"valid_tokens={result['valid_tokens']}\t{result['overlay']}\t{result['sheet']}", flush=True)
    if not done:
        raise ValueError("no clip could be visualised")
