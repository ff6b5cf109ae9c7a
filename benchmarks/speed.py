"""Inference and training-step throughput and peak memory of TrajViT2 and its peers. A benchmark, not a test.

    python -m benchmarks.speed [--frames 8 16 32 64] [--scales cpu] [--batch 4] [--budget 300] [--threads N]
        [--models trajtok vit3d ...] [--steps infer train] [--cpu-224]

The video models of ``benchmarks/flops.py`` (tokenizer + the head's video transformer; TrajViT2 on the paper's
layout and on the efficient one, ``TrajViT2 (lite)``), fed test clips of the default data, timed with CUDA events on a GPU and the wall clock on CPU. Inference: a forward pass without
gradients. Training step: the CLIP loss against the clips' captions (text tower included, the same for all),
backward and an AdamW step. For each (scale, T) the models
run interleaved, round after round, after a warm-up round, and the median time is reported as clips/s with
the ratio to ViT3D. Peak memory: on a GPU ``torch.cuda.max_memory_allocated`` around one model's steps; on
CPU, in a fresh process, the same quantity from the profiler's allocation events (``peak_tensor_bytes``), and
beside it the peak RSS less the RSS before (which adds what the C allocator keeps: +-30 MiB run to run).

Writes ``results/speed.csv`` (``--out`` names another): one row per scale, T and model, with clips/s and the ratio to
ViT3D of each step timed and the peak memory in MiB (live tensors, and on CPU the peak RSS), and the JSON beside it.

Sizes that do not fit are listed as such with the reason: the paper's 224 px scales are timed only on a GPU (on
CPU a ViT-L step at T = 64 takes minutes) unless ``--cpu-224`` asks for them, and a configuration whose estimated
time (from the previous T) would overrun ``--budget`` is not timed.

At the 224 px scales the authors' released layout joins them (``TrajViT2 (official)``: ``trajtok.release``'s
``official_model`` with random weights, its own head's 24-block width-512 video transformer; its training step
contrasts with its own text tower, the released 9-layer BERT, where the others use the default byte-level one).
``--models`` times a subset (ViT3D is the reference of the ratios) and ``--steps infer`` inference alone, e.g. the
224 px layouts on CPU at T = 8:

    python -m benchmarks.speed --scales vit-b --frames 8 --cpu-224 --steps infer --batch 1 --repeats 3 \
        --models trajtok_official trajtok trajtok_lite vit3d
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks.common import (
    KINDS,
    LABELS,
    LITE,
    OFFICIAL,
    SCALES,
    build_video_model,
    current_rss_bytes,
    default_clips,
    environment,
    layouts_at,
    machine_load,
    peak_rss_bytes,
    peak_tensor_bytes,
    print_table,
    reset_peak_rss,
    summarize,
    sync,
    write_results,
)

#: The peers and TrajViT2 on both layouts (and, at the 224 px scales, the released one: ``layouts_at``).
MODELS = (*KINDS, LITE)
STEPS = ("infer", "train")


class Runner:
    """One model's inference and training step on fixed inputs."""

    def __init__(self, kind: str, scale: str, video: torch.Tensor, captions: list[str], device: torch.device):
        torch.manual_seed(0)
        self.model = build_video_model(kind, scale, video.shape[1]).to(device)
        self.video, self.captions, self.device = video.to(device), captions, device
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4)

    def infer(self) -> float:
        self.model.eval()
        with torch.no_grad():
            return elapsed(lambda: self.model(self.video), self.device)

    def train_step(self) -> float:
        self.model.train()

        def step() -> None:
            tokens = self.model.tokenizer(self.video)
            self.model.head.losses(tokens, {"text": self.captions})["contrastive"].backward()
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)

        return elapsed(step, self.device)


def elapsed(fn, device: torch.device) -> float:
    """Seconds ``fn()`` takes: between CUDA events on a GPU, by the wall clock on CPU."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        sync(device)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    begin = time.perf_counter()
    fn()
    return time.perf_counter() - begin


def inputs(scale: str, frames: int, batch: int) -> tuple[torch.Tensor, list[str]]:
    video, rows = default_clips(frames, count=batch, pixels=SCALES[scale]["pixels"])
    return video, [r["caption"][0] for r in rows]


def peak_memory(kind: str, scale: str, frames: int, batch: int, device: torch.device,
                steps: tuple[str, ...] = STEPS) -> dict:
    """Peak memory of inference and of a training step (bytes above what was allocated before them)."""
    video, captions = inputs(scale, frames, batch)
    if device.type == "cuda":
        runner = Runner(kind, scale, video, captions, device)
        peaks = {}
        for name, step in (("infer", runner.infer), ("train", runner.train_step)):
            if name not in steps:
                continue
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
            step()
            peaks[name] = torch.cuda.max_memory_allocated(device) - before
        return {**peaks, "method": "torch.cuda.max_memory_allocated - allocated before"}
    spec = json.dumps({"kind": kind, "scale": scale, "frames": frames, "batch": batch, "steps": list(steps)})
    command = [sys.executable, "-m", __spec__.name, "--threads", str(torch.get_num_threads()),
               "--memory-worker", spec]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        return {"error": done.stderr.strip()[-300:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def memory_worker(spec: dict) -> dict:
    """In a fresh process: RSS high-water mark of inference, then of a training step, above the RSS before."""
    video, captions = inputs(spec["scale"], spec["frames"], spec["batch"])
    train = "train" in spec.get("steps", STEPS)
    runner = Runner(spec["kind"], spec["scale"], video, captions, torch.device("cpu"))
    resettable = reset_peak_rss()
    before = current_rss_bytes()
    runner.infer()
    rss = {"infer": peak_rss_bytes() - before}
    if train:
        runner.train_step()
        rss["train"] = peak_rss_bytes() - before
    rss["method"] = "peak RSS (VmHWM) - RSS before, fresh process" + ("" if resettable else " (not reset)")
    runner = Runner(spec["kind"], spec["scale"], video, captions, torch.device("cpu"))  # a first step again
    return {"infer": peak_tensor_bytes(runner.infer), **({"train": peak_tensor_bytes(runner.train_step)} if train else {}),
            "method": "peak bytes of live tensors above those before (profiler allocation events)", "rss": rss}


def models_at(scale: str, selected: list[str] | None) -> tuple[str, ...]:
    """The models timed at ``scale``: ``layouts_at(scale)``, or those of them in ``selected``."""
    return tuple(kind for kind in layouts_at(scale) if selected is None or kind in selected)


def bench(scale: str, frames: int, args, device: torch.device) -> list[dict]:
    video, captions = inputs(scale, frames, args.batch)
    models = models_at(scale, args.models)
    steps = {"infer": Runner.infer, "train": Runner.train_step}
    steps = {name: step for name, step in steps.items() if name in args.steps}
    runners = {kind: Runner(kind, scale, video, captions, device) for kind in models}
    times = {kind: {name: [] for name in steps} for kind in models}
    for round_ in range(args.repeats + 1):  # round 0 is the warm-up
        for kind, runner in runners.items():
            for name, step in steps.items():
                seconds = step(runner)
                if round_:
                    times[kind][name].append(seconds)
    del runners
    rows = []
    for kind in models:
        row = {"scale": scale, "T": frames, "kind": kind, "batch": args.batch, "timed": True,
               "time": {k: summarize(v) for k, v in times[kind].items()},
               "memory": peak_memory(kind, scale, frames, args.batch, device, tuple(steps))}
        for step in steps:
            row[f"{step}_clips_per_s"] = args.batch / (row["time"][step]["median_ms"] / 1e3)
        rows.append(row)
    vit3d = next((r for r in rows if r["kind"] == "vit3d"), None)
    for row in rows:
        for step in steps:
            if vit3d is not None:
                row[f"{step}_vs_vit3d"] = row[f"{step}_clips_per_s"] / vit3d[f"{step}_clips_per_s"]
    return rows


def not_timed(scale: str, frames: int, reason: str, models: tuple[str, ...] = MODELS) -> list[dict]:
    return [{"scale": scale, "T": frames, "kind": kind, "timed": False, "reason": reason} for kind in models]


def table_rows(rows: list[dict]) -> list[dict]:
    """The CSV table of ``rows`` (the JSON's): one per scale, T and model; clips/s, the ratio to ViT3D and the peak
    memory (MiB) of each step timed, or why it was not timed."""
    table = []
    for r in rows:
        row = {"scale": r["scale"], "pixels": SCALES[r["scale"]]["pixels"], "frames": r["T"], "model": r["kind"],
               "label": LABELS[r["kind"]], "batch": r.get("batch"), "timed": r["timed"]}
        memory = r.get("memory", {})
        for step in STEPS:
            row[f"{step}_clips_per_s"] = round(r[f"{step}_clips_per_s"], 3) if f"{step}_clips_per_s" in r else None
            row[f"{step}_vs_vit3d"] = round(r[f"{step}_vs_vit3d"], 3) if f"{step}_vs_vit3d" in r else None
        for step in STEPS:
            row[f"{step}_peak_mib"] = round(memory[step] / 2**20, 1) if step in memory else None
            rss = memory.get("rss", {})
            row[f"{step}_peak_rss_mib"] = round(rss[step] / 2**20, 1) if step in rss else None
        row["not_timed_reason"] = r.get("reason", "")
        table.append(row)
    return table


def plot(results: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    timed = [r for r in results["rows"] if r["timed"]]
    scales = sorted({r["scale"] for r in timed}, key=list(SCALES).index)
    fig, axes = plt.subplots(len(scales), 3, figsize=(15, 4.2 * len(scales)), squeeze=False)
    for row_axes, scale in zip(axes, scales):
        for ax, key, label in ((row_axes[0], "infer_clips_per_s", "inference clips/s"),
                               (row_axes[1], "train_clips_per_s", "training clips/s"),
                               (row_axes[2], "memory", "training peak memory (MiB)")):
            for kind in layouts_at(scale):
                mine = [r for r in timed if r["scale"] == scale and r["kind"] == kind and (key == "memory" or key in r)]
                if not mine:
                    continue
                values = [r["memory"].get("train", float("nan")) / 2**20 if key == "memory" else r[key] for r in mine]
                ax.plot([r["T"] for r in mine], values, "o-", label=LABELS[kind])
            ax.set(xlabel="T (frames)", ylabel=label, xscale="log", yscale="log", title=f"{scale}: {label}")
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--scales", nargs="+", default=list(SCALES), choices=list(SCALES))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--budget", type=float, default=300.0, help="seconds of timing per scale")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default torch's)")
    parser.add_argument("--models", nargs="+", default=None, choices=[*MODELS, OFFICIAL],
                        help="time these models only (default: every model of the scale)")
    parser.add_argument("--steps", nargs="+", default=list(STEPS), choices=STEPS,
                        help="inference, training step or both")
    parser.add_argument("--cpu-224", action="store_true", help="time the 224 px scales on CPU too")
    parser.add_argument("--memory-worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_worker:
        print(json.dumps(memory_worker(json.loads(args.memory_worker))))
        return

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows, load = [], {"start": machine_load()}
    for scale in args.scales:
        deadline, previous = time.monotonic() + args.budget, None  # previous: (T, seconds it took)
        models = models_at(scale, args.models)
        for frames in args.frames if models else ():
            if device.type == "cpu" and scale != "cpu" and not args.cpu_224:
                rows += not_timed(scale, frames, "224 px models are timed on a GPU only (none here)", models)
                continue
            left = deadline - time.monotonic()
            # Cost grows at least linearly in T (quadratically for ViT3D's attention): a floor on the estimate.
            estimate = previous[1] * frames / previous[0] if previous else 0.0
            if estimate > left:
                rows += not_timed(scale, frames, f"estimated {estimate:.0f} s > {max(left, 0):.0f} s left of --budget",
                                  models)
                continue
            start = time.monotonic()
            try:
                rows += bench(scale, frames, args, device)
            except torch.OutOfMemoryError as error:
                rows += not_timed(scale, frames, f"out of memory: {str(error)[:120]}", models)
            previous = (frames, time.monotonic() - start)
            print(f"  {scale} T={frames}: {previous[1]:.0f} s", file=sys.stderr, flush=True)
    load["end"] = machine_load()

    for scale in args.scales:
        models = models_at(scale, args.models)
        if not models:
            continue
        header = ["T", *(f"{LABELS[k]}" for k in models)]
        for step, title in (("infer", "inference"), ("train", "training step")):
            if step not in args.steps:
                continue
            table = []
            for frames in args.frames:
                by_kind = {r["kind"]: r for r in rows if r["scale"] == scale and r["T"] == frames}
                first = by_kind[models[0]]
                if not first["timed"]:
                    table.append([str(frames), f"not timed: {first['reason']}"] + [""] * (len(models) - 1))
                    continue
                table.append([str(frames)] + [f"{by_kind[k][f'{step}_clips_per_s']:.1f}"
                                              + (f" ({by_kind[k][f'{step}_vs_vit3d']:.2f}x)"
                                                 if f"{step}_vs_vit3d" in by_kind[k] else "") for k in models])
            print_table(f"{scale}, batch {args.batch}: {title} clips/s, median of {args.repeats} (ratio to ViT3D)",
                        header, table)
        table = [[str(r["T"])] for r in rows if r["scale"] == scale and r["kind"] == models[0] and r["timed"]]
        for cells in table:
            for kind in models:
                row = next(r for r in rows if r["scale"] == scale and r["T"] == int(cells[0]) and r["kind"] == kind)
                memory, rss = row["memory"], row["memory"].get("rss", {})
                if "infer" not in memory:
                    cells.append("error")
                    continue
                step = "train" if "train" in memory else "infer"
                cells.append(" / ".join(f"{memory[s] / 2**20:.0f}" for s in ("infer", "train") if s in memory)
                             + (f" (RSS {rss[step] / 2**20:.0f})" if rss else ""))
        if table:
            steps = " / ".join(s for s, name in (("inference", "infer"), ("training step", "train")) if name in args.steps)
            print_table(f"{scale}: peak memory MiB, {steps} (live tensors; on CPU also the last one's peak RSS)",
                        header, table)
    write_results("speed", {"env": environment(), "load": load, "batch": args.batch, "repeats": args.repeats,
                            "steps": args.steps, "rows": rows}, plot, args.out, table=table_rows(rows))


if __name__ == "__main__":
    main()
