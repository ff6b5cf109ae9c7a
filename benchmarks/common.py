"""What the benchmark scripts share: machine facts, timing summaries, peak memory, tables and result files."""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import torch

from trajtok.files import write_atomic

ROOT = Path(__file__).resolve().parents[1]
#: The tables the benchmarks write (``<name>.csv``, ``<name>.json``), which ``benchmarks.report`` renders into the docs.
RESULTS = ROOT / "results"
#: The run folders of the benchmarks that train through the CLI (checkpoints and logs; never committed).
RUNS = ROOT / "runs" / "benchmarks"


def environment() -> dict:
    """What a number was measured on."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return {"torch": torch.__version__, "python": platform.python_version(), "device": str(device),
            "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}


def command_line() -> str:
    """How this process was started, as a user would type it: ``python -m benchmarks.<name> <args>``."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    program = f"python -m {spec.name}" if spec is not None and spec.name else f"python {Path(sys.argv[0]).name}"
    return " ".join([program, *map(shlex.quote, sys.argv[1:])])


def write_results(name: str, results: dict, plot=None, out: Path | None = None, table: list[dict] | None = None,
                  command: str | None = None) -> None:
    """``results/<name>.json`` (``results`` with the ``command`` that made it, default ``command_line()``), and
    beside it ``<name>.csv``, the benchmark's table (``table``: one row per measured configuration, columns named
    with their units, ``write_csv``), and, if ``plot(results, png_path)`` can draw (matplotlib installed), a PNG."""
    path = out or RESULTS / f"{name}.json"
    results = {"command": command or command_line(), **results}
    write_atomic(path, json.dumps(results, indent=1))  # a reader (benchmarks.report) never sees half a table
    written = [path]
    if table is not None:
        write_csv(table, path.with_suffix(".csv"))
        written.append(path.with_suffix(".csv"))
    if plot is not None:
        try:
            import matplotlib

            matplotlib.use("Agg")
        except ImportError:
            print("no plot: matplotlib is missing (pip install -e '.[bench]')", file=sys.stderr)
        else:
            plot(results, path.with_suffix(".png"))
            written.append(path.with_suffix(".png"))
    print("\nwrote " + ", ".join(str(p) for p in written))


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


def peak_tensor_bytes(fn) -> int:
    """The most bytes of CPU tensors alive at once while ``fn()`` runs, above those alive before it: the CPU
    counterpart of ``torch.cuda.max_memory_allocated``, read from the profiler's allocation events. Unlike the
    RSS it leaves out what the C allocator keeps or fragments, which varies by tens of MiB from run to run."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    live = peak = 0
    for event in sorted((e for e in prof.events() if e.self_cpu_memory_usage), key=lambda e: e.time_range.start):
        live += event.self_cpu_memory_usage  # allocations positive, frees negative
        peak = max(peak, live)
    return peak


def summarize(samples: list[float]) -> dict:
    return {"median_ms": 1e3 * statistics.median(samples), "min_ms": 1e3 * min(samples), "n": len(samples)}


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    for row in rows:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))


# ------------------------------------------------------------------------------------- the compared models
#: At each scale: TrajTok's preset and its efficient layout, the peers' preset (their tubelets and ToMe's merging
#: blocks, at the video transformer's width), the frame size, and the video transformer of TrajViT2's head: the
#: CPU configs' (configs/clip.yaml), and the paper's 224 px with ViT-B and ViT-L encoders.
SCALES = {
    "cpu": {"preset": "tiny", "lite_preset": "tiny_lite", "peer_preset": "tiny", "pixels": 64, "width": 192,
            "depth": 4, "heads": 4},
    "vit-b": {"preset": "base", "lite_preset": "lite", "peer_preset": "base", "pixels": 224, "width": 768,
              "depth": 12, "heads": 12},
    "vit-l": {"preset": "base", "lite_preset": "lite", "peer_preset": "large", "pixels": 224, "width": 1024,
              "depth": 24, "heads": 16},
}
KINDS = ("trajtok", "vit3d", "tome", "rlt", "token_learner")
LABELS = {"trajtok": "TrajViT2", "vit3d": "ViT3D", "tome": "ToMe", "rlt": "RLT", "token_learner": "fixed-K",
          "tome_plain": "ToMe (no proportional attention)",
          "tome_merging": "ToMe (proportional attention in merging blocks only)", "trajtok_lite": "TrajViT2 (lite)",
          "trajtok_official": "TrajViT2 (official)"}
#: TrajViT2 on the efficient layout (the scale's ``lite_preset``), as a row of its own where benchmarks compare
#: layouts (FLOPs, speed).
LITE = "trajtok_lite"
#: The authors' released TrajViT-v2 (``trajtok.release.RELEASED_LAYOUTS["trajvitv2"]``: a DINOv3 ConvNeXt-S pixel
#: encoder, D = 512, K = 128, dense masked attention in the trajectory encoder) with its own head's video
#: transformer (24 blocks at width 512): the same model at every 224 px scale, compared where layouts are.
OFFICIAL = "trajtok_official"


def layouts_at(scale: str) -> tuple[str, ...]:
    """The models compared at ``scale``: the peers and TrajViT2 on the paper's and the efficient layout, and at the
    224 px scales the released one (``OFFICIAL``: 224 px, 8-frame training clips)."""
    return (*KINDS, LITE, *((OFFICIAL,) if SCALES[scale]["pixels"] == 224 else ()))


def tubelet_count(scale: str, frames: int) -> int:
    from trajtok.tokenizer import tokenizer_sizes

    tubelets = tokenizer_sizes("vit3d", SCALES[scale]["peer_preset"])
    side = SCALES[scale]["pixels"] // tubelets["patch_size"]
    return -(-frames // tubelets["tubelet_frames"]) * side * side


class VideoModel(torch.nn.Module):
    """The video side of TrajViT2 with any tokenizer: tokens, then the head's transformer to one embedding."""

    def __init__(self, tokenizer: torch.nn.Module, head: torch.nn.Module):
        super().__init__()
        self.tokenizer, self.head = tokenizer, head

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.head.encode_video(self.tokenizer(video))


def build_video_model(kind: str, scale: str, frames: int, device: torch.device | str = "cpu",
                      target: torch.device | None = None) -> VideoModel:
    """``kind``'s tokenizer at the scale's preset (``LITE``: TrajTok at the scale's efficient layout) and a ClipHead
    at ``scale``, whose transformer loses the blocks a tokenizer runs itself (``video_transformer_depth``: ToMe's
    merging blocks). TrajTok's attention form is the one ``auto`` picks for ``frames`` on ``target`` (default:
    this machine's accelerator), even when built on ``meta`` to count FLOPs. ``OFFICIAL`` (224 px scales only) is the
    released model, tokenizer and head as released, whatever the scale's head."""
    from heads import ClipHead
    from trajtok.tokenizer import create_tokenizer, tokenizer_sizes
    from trajtok.tokenizer.trajtok import auto_attention_form

    if kind == OFFICIAL:
        if SCALES[scale]["pixels"] != 224:
            raise ValueError(f"the released layout is a 224 px model, not one of scale {scale!r}")
        return official_video_model(device)
    s = SCALES[scale]
    preset, overrides = s["peer_preset"], {}
    if kind in ("trajtok", LITE):
        kind, preset = "trajtok", s["lite_preset" if kind == LITE else "preset"]
        target = target or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        overrides["attention"] = auto_attention_form(tokenizer_sizes(kind, preset), frames, s["pixels"], target)
    with torch.device(device):
        tokenizer = create_tokenizer(preset, kind, **overrides)
        head = ClipHead(width=s["width"], depth=s["depth"] - getattr(tokenizer, "video_transformer_depth", 0),
                        heads=s["heads"])
        head.build(tokenizer.out_dim)
    return VideoModel(tokenizer, head)


def official_video_model(device: torch.device | str = "cpu", layout=None, text: bool = True) -> VideoModel:
    """The released TrajViT-v2's tokenizer and head, as ``trajtok.release.official_model`` describes them (random
    weights; transformers' DINOv3 ConvNeXt built from its config), for ``layout`` (default the released
    ``trajvitv2``). ``text=False`` gives the head the default byte-level text tower instead of the released
    9-layer BERT (for benchmarks whose loss does not read text)."""
    import copy

    from lightning.pytorch.cli import instantiate_module

    from trajtok.module import TrajTokModule
    from trajtok.release import RELEASED_LAYOUTS, official_model

    hparams = copy.deepcopy(official_model(layout or RELEASED_LAYOUTS["trajvitv2"]))
    if not text:
        hparams["head"]["init_args"].pop("text_encoder", None)
    with torch.device(device):
        module = instantiate_module(TrajTokModule, hparams)
    return VideoModel(module.tokenizer, module.head)


def write_csv(rows: list[dict], path: Path) -> None:
    """``rows`` as a CSV table: one column per key met in any row (in order of appearance), nested dicts flattened
    to ``outer.inner``; a missing or ``None`` value is an empty cell."""
    def flat(row: dict, prefix: str = "") -> dict:
        out = {}
        for key, value in row.items():
            if isinstance(value, dict):
                out.update(flat(value, f"{prefix}{key}."))
            else:
                out[f"{prefix}{key}"] = value
        return out

    flattened = [flat(row) for row in rows]
    columns = list(dict.fromkeys(key for row in flattened for key in row))
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(flattened)
    write_atomic(path, text.getvalue())


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


def config_args(configs: list[str | Path]) -> list[str]:
    """``--config`` options of ``configs``, composed in order: a path, or a name under ``configs/`` without
    ``.yaml`` (``"clip"``, ``"peers/vit3d"``)."""
    paths = [Path(c) if isinstance(c, Path) or str(c).endswith(".yaml") else ROOT / "configs" / f"{c}.yaml"
             for c in configs]
    return [arg for path in paths for arg in ("--config", str(path.resolve()))]


def metrics_files(run_dir: Path) -> dict[Path, float]:
    """Every metrics.csv under ``run_dir`` (the CSV logger's ``logs/<version>/``), with its modification time."""
    return {path: path.stat().st_mtime for path in run_dir.rglob("metrics.csv")}


def new_metrics_file(run_dir: Path, before: dict[Path, float]) -> Path:
    """The metrics.csv that a command run in ``run_dir`` wrote: the one created or changed since ``before``
    (``metrics_files`` then), the newest if several."""
    changed = {p: t for p, t in metrics_files(run_dir).items() if before.get(p) != t}
    if not changed:
        raise FileNotFoundError(f"no metrics.csv written under {run_dir}: does the run log with a CSVLogger?")
    return max(changed, key=changed.get)


def fit_and_test(configs: list[str | Path], run_dir: Path, overrides: list[str] = (), *, fit: list[str] = (),
                 test: list[str] = ()) -> dict:
    """One run of a benchmark, as a user makes it: a fresh ``run_dir`` (removed first, so that the test reads
    this fit's checkpoint), ``trajtok fit`` of ``configs`` (``config_args``) with ``overrides`` and the fit-only
    options ``fit``, then ``trajtok test`` of ``run_dir/checkpoints/last.ckpt`` with ``overrides`` and ``test``.
    The run's folder is named once, ``--trainer.default_root_dir=run_dir``: its logs and checkpoints derive from it.

    Returns ``{"fit": ..., "test": ..., "fit_minutes": ..., "test_minutes": ...}``: the last value of every metric
    each command logged (``logged_metrics`` of the metrics.csv it wrote; test metrics are ``test/<name>``), and each
    command's wall time at full precision (a caller rounds it once, where it shows it)."""
    run_dir = Path(run_dir).resolve()
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    common = [*config_args(configs), f"--trainer.default_root_dir={run_dir}", *overrides]
    out = {}
    for stage, extra in (("fit", list(fit)), ("test", [*test, f"--ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}"])):
        before, start = metrics_files(run_dir), time.perf_counter()
        run_trajtok([stage, *common, *extra], cwd=run_dir)
        out[f"{stage}_minutes"] = (time.perf_counter() - start) / 60  # rounded where shown, once
        out[stage] = logged_metrics(new_metrics_file(run_dir, before))
    return out


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


def mean_se_columns(column: str, values: list[float], digits: int = 4) -> dict[str, float]:
    """``<column>_mean`` and ``<column>_se`` (``mean_and_se``) of the values measured over seeds, for a table row."""
    mean, se = mean_and_se(values)
    return {f"{column}_mean": round(mean, digits), f"{column}_se": round(se, digits)}


def fmt_mean_se(values: list[float], digits: int = 2) -> str:
    mean, se = mean_and_se(values)
    return f"{mean:.{digits}f} ± {se:.{digits}f}" if len(values) > 1 else f"{mean:.{digits}f}"


#: What the module logs at the end of ``trajtok test`` (``test/<name>`` in metrics.csv), by head.
RETRIEVAL = ("t2v_r1", "t2v_r5", "t2v_r10", "t2v_medr", "t2v_meanr", "v2t_r1", "v2t_r5", "v2t_r10", "v2t_medr",
             "v2t_meanr")
SEGMENTATION = ("seg_miou", "seg_found", "seg_pred_trajectories", "seg_target_trajectories")


def logged_metrics(path: Path) -> dict[str, float]:
    """The last value logged in each column of a CSVLogger's metrics.csv (rows leave the other columns empty)."""
    values: dict[str, float] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            values.update({k: float(v) for k, v in row.items() if v not in ("", None)})
    return values


def stage_metrics(logged: dict[str, float], names: tuple[str, ...], stage: str = "test",
                  optional: tuple[str, ...] = ()) -> dict[str, float]:
    """``names`` (and those of ``optional`` that were logged) of ``stage`` from ``logged_metrics``, without the
    ``<stage>/`` prefix; an error naming what is missing."""
    missing = [name for name in names if f"{stage}/{name}" not in logged]
    if missing:
        raise ValueError(f"not logged: {', '.join(f'{stage}/{name}' for name in missing)}")
    return {name: logged[f"{stage}/{name}"] for name in (*names, *optional) if f"{stage}/{name}" in logged}


class LogTrainableParams(L.Callback):
    """Logs the number of trainable parameters (``trainable_params``) when training starts: after every freeze
    (``configure_model``, frozen feature models), so it counts what the optimiser updates."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        count = sum(p.numel() for p in pl_module.parameters() if p.requires_grad)
        for logger in trainer.loggers:
            logger.log_metrics({"trainable_params": count}, step=trainer.global_step)


#: A command-line option adding ``LogTrainableParams`` to a fit (run_trajtok puts this checkout on its path).
LOG_TRAINABLE_PARAMS = "--trainer.callbacks+=" + json.dumps({"class_path": "benchmarks.common.LogTrainableParams"})
