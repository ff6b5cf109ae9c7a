"""What the benchmark scripts share: machine facts, timing summaries, peak memory, tables and result files."""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"


def environment() -> dict:
    """What a number was measured on."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return {"torch": torch.__version__, "python": platform.python_version(), "device": str(device),
            "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}


def write_results(name: str, results: dict, plot=None, out: Path | None = None) -> None:
    """``results/<name>.json`` and, if ``plot(results, png_path)`` can draw (matplotlib installed), a PNG."""
    path = out or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1))
    drawn = False
    if plot is not None:
        try:
            import matplotlib

            matplotlib.use("Agg")
        except ImportError:
            print("no plot: matplotlib is missing (pip install -e '.[bench]')", file=sys.stderr)
        else:
            plot(results, path.with_suffix(".png"))
            drawn = True
    print(f"\nwrote {path}" + (f" and {path.with_suffix('.png')}" if drawn else ""))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def machine_load() -> dict:
    load = {"loadavg_1m": os.getloadavg()[0]}
    try:
        some = Path("/proc/pressure/cpu").read_text().split("\n")[0]
        load["cpu_pressure_avg10"] = float(some.split("avg10=")[1].split()[0])
    except (OSError, IndexError, ValueError):
        pass
    return load


def mem_available_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def current_rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark (VmHWM) to the current RSS (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux; never reset


def summarize(samples: list[float]) -> dict:
    return {"median_ms": 1e3 * statistics.median(samples), "min_ms": 1e3 * min(samples), "n": len(samples)}


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    for row in rows:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))


# ------------------------------------------------------------------------------------ A. attention forms


# ------------------------------------------------------------------------------------- the compared models
#: A tokenizer preset, frame size and the video transformer of TrajViT2's head at each scale: the CPU configs'
#: (configs/clip.yaml), and the paper's 224 px with ViT-B and ViT-L encoders.
SCALES = {
    "cpu": {"preset": "tiny", "lite_preset": "tiny_lite", "pixels": 64, "width": 192, "depth": 4, "heads": 4},
    "vit-b": {"preset": "base", "lite_preset": "lite", "pixels": 224, "width": 768, "depth": 12, "heads": 12},
    "vit-l": {"preset": "base", "lite_preset": "lite", "pixels": 224, "width": 1024, "depth": 24, "heads": 16},
}
KINDS = ("trajtok", "vit3d", "tome", "rlt", "token_learner")
LABELS = {"trajtok": "TrajViT2", "vit3d": "ViT3D", "tome": "ToMe", "rlt": "RLT", "token_learner": "fixed-K",
          "trajtok_lite": "TrajViT2 (lite)"}
#: TrajViT2 on the efficient layout (the scale's ``lite_preset``), as a row of its own where benchmarks compare
#: layouts (FLOPs, speed).
LITE = "trajtok_lite"


def tubelet_count(scale: str, frames: int) -> int:
    from trajtok.tokenizer import tokenizer_sizes

    tubelets = tokenizer_sizes("vit3d", SCALES[scale]["preset"])
    side = SCALES[scale]["pixels"] // tubelets["patch_size"]
    return -(-frames // tubelets["tubelet_frames"]) * side * side


def tome_r(tokens: int, merge_depth: int) -> int:
    """r that brings ``tokens`` to a quarter over ``merge_depth`` blocks (each block merges at most half)."""
    return -(-3 * tokens // (4 * merge_depth))


class VideoModel(torch.nn.Module):
    """The video side of TrajViT2 with any tokenizer: tokens, then the head's transformer to one embedding."""

    def __init__(self, tokenizer: torch.nn.Module, head: torch.nn.Module):
        super().__init__()
        self.tokenizer, self.head = tokenizer, head

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.head.encode_video(self.tokenizer(video))


def build_video_model(kind: str, scale: str, frames: int, device: torch.device | str = "cpu",
                      target: torch.device | None = None) -> VideoModel:
    """``kind``'s tokenizer (``LITE``: TrajTok at the scale's efficient preset) and a ClipHead at ``scale``. ToMe takes the first half of the transformer's blocks
    (merging to a quarter of the tubelets, r set for ``frames``); TrajTok's attention form is the one ``auto``
    picks on ``target`` (default: this machine's accelerator) even when built on ``meta``."""
    from heads import ClipHead
    from trajtok.tokenizer import create_tokenizer, tokenizer_sizes
    from trajtok.tokenizer.trajectory_encoder import pick_attention_form

    s = SCALES[scale]
    depth, overrides, preset_name = s["depth"], {}, s["preset"]
    if kind == LITE:
        kind, preset_name = "trajtok", s["lite_preset"]
    if kind == "trajtok":
        preset = tokenizer_sizes("trajtok", preset_name)
        patches = frames * (s["pixels"] // 4) ** 2
        target = target or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        overrides["attention"] = pick_attention_form("auto", target, preset["num_slots"], patches,
                                                     preset["heads"] * preset["head_dim"])
    else:
        overrides["dim"] = s["width"]
    if kind == "tome":
        merge_depth = depth // 2
        overrides.update(depth=merge_depth, heads=s["heads"], r=tome_r(tubelet_count(scale, frames), merge_depth))
        depth -= merge_depth
    with torch.device(device):
        tokenizer = create_tokenizer(preset_name, kind, **overrides)
        head = ClipHead(width=s["width"], depth=depth, heads=s["heads"])
        head.build(tokenizer.out_dim)
    return VideoModel(tokenizer, head)


def default_clips(frames: int, count: int = 64, pixels: int = 64, annotations: Path | None = None,
                  cache_dir: str | None = None) -> tuple[torch.Tensor, list[dict]]:
    """``count`` test clips of the embedded default data (its 64-frame variant, so that 8 to 64 frames sample
    the same scenes), or of an ``annotations`` file, ``frames`` frames each at ``pixels`` px, and their
    annotation rows (captions, objects), read through the training data path (decoding, resizing, normalising)."""
    from datamodules import (
        ClipOptions,
        LoaderOptions,
        SyntheticOptions,
        VideoTextDataModule,
    )

    real = {} if annotations is None else {"test_annotations": str(annotations)}
    data = VideoTextDataModule(
        clip=ClipOptions(num_frames=frames, image_size=pixels), loader=LoaderOptions(eval_batch_size=count),
        load_pseudo_labels=False, **real,
        synthetic=SyntheticOptions(cache_dir=cache_dir, train=256, val=32, test=count, num_frames=64),
    )
    data.prepare_data()
    data.setup("test")
    batch = next(iter(data.test_dataloader()))
    rows = [json.loads(line) for line in Path(data.annotation_path("test")).read_text().splitlines()]
    return batch["video"], [rows[i] for i in batch["index"].tolist()]


#: 24 real MSR-VTT clips, where this checkout sits beside the shared data (never part of the repository).
MSRVTT24 = ROOT.parent / "shared" / "data" / "msrvtt24" / "captions.jsonl"


# ------------------------------------------------------------------------------------- runs of the real CLI
_SCRIPT = Path(sys.executable).with_name("trajtok")
#: The installed command, or the same entry point from this checkout where the project is not installed.
TRAJTOK = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "trajtok.cli"]


def run_trajtok(args: list[str], cwd: Path = ROOT) -> str:
    """``trajtok *args`` as a user runs it; its stdout + stderr, or an error with the tail of stderr."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([*TRAJTOK, *args], cwd=cwd, capture_output=True, text=True, check=False, env=env)
    if result.returncode:
        raise RuntimeError(f"trajtok {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout + result.stderr


def run_parallel(jobs: list, workers: int = 1) -> list:
    """``[job() for job in jobs]``, up to ``workers`` at a time (each job runs its own ``trajtok`` processes, so
    threads suffice); results in the order of ``jobs``. One at a time on a small machine; more on a big one."""
    if workers <= 1:
        return [job() for job in jobs]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda job: job(), jobs))


def mean_and_se(values: list[float]) -> tuple[float, float]:
    """The mean and its standard error (sample standard deviation / sqrt(n); 0 for one value)."""
    mean = statistics.mean(values)
    return mean, (statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0)


def fmt_mean_se(values: list[float], digits: int = 2) -> str:
    mean, se = mean_and_se(values)
    return f"{mean:.{digits}f} ± {se:.{digits}f}" if len(values) > 1 else f"{mean:.{digits}f}"


def segmentation_metrics(output: str) -> dict[str, float]:
    """The module's printed ``Segmentation (test)`` lines as ``{"seg_miou": ..., "seg_found": ...}``."""
    head = re.search(r"object mIoU ([\d.]+)\s+objects found \(IoU >= 0.5\) ([\d.]+)%"
                     r"(?:\s+background IoU ([\d.]+))?", output)
    counts = re.search(r"trajectories per clip: predicted ([\d.]+), target ([\d.]+)", output)
    if not head or not counts:
        raise ValueError("no 'Segmentation (test)' lines in the output")
    metrics = {"seg_miou": float(head.group(1)), "seg_found": float(head.group(2)) / 100,
               "seg_pred_trajectories": float(counts.group(1)), "seg_target_trajectories": float(counts.group(2))}
    if head.group(3):
        metrics["seg_background_iou"] = float(head.group(3))
    return metrics


def retrieval_metrics(output: str) -> dict[str, float]:
    """The module's printed ``Retrieval (test)`` table as ``{"t2v_r1": ..., "v2t_medr": ...}``."""
    names = ("r1", "r5", "r10", "medr", "meanr")
    metrics = {}
    for direction, *values in re.findall(r"^(t2v|v2t)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$",
                                         output, flags=re.MULTILINE):
        metrics.update({f"{direction}_{name}": float(v) for name, v in zip(names, values)})
    if not metrics:
        raise ValueError("no 'Retrieval (test)' table in the output")
    return metrics


def logged_value(output: str, key: str) -> float | None:
    """A value from Lightning's printed metric table (``│ test/tokens │ 11.6 │``)."""
    match = re.search(rf"{re.escape(key)}\s*│\s*([-\d.e]+)", output)
    return float(match.group(1)) if match else None


def trainable_params(fit_output: str) -> int:
    """Lightning's model summary line, e.g. ``Trainable params: 787 K``."""
    match = re.search(r"Trainable params:?\s*([\d.]+)\s*([KMB]?)", fit_output)
    if not match:
        raise ValueError("no 'Trainable params' line in the fit output")
    scale = {"": 1, "K": 1e3, "M": 1e6, "B": 1e9}[match.group(2)]
    return int(float(match.group(1)) * scale)
