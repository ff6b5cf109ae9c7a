"""Training and inference throughput and peak GPU memory of TrajTok's layouts against ViT3D and ToMe at 224 px, in
one run of under 8 minutes on one GPU. A benchmark, not a test.

    python -m benchmarks.gpu_layouts                         # one GPU (H100 class): T = 8, 16, 32, bf16 autocast
    python -m benchmarks.gpu_layouts --device cpu --tiny     # the smoke run of CI: tiny sizes, T = 2, one step

The models, each the video side of a CLIP model (tokenizer + the head's video transformer + projection to the
embedding), random weights:

* ``official``: the authors' released TrajViT-v2 (``trajtok.release.official_model``: transformers' DINOv3
  ConvNeXt-S pixel encoder, D = 512, K = 128, dense masked attention in the trajectory encoder) with its own head's
  video transformer (24 blocks at width 512, 16 heads);
* ``base`` and ``lite``: TrajViT2 on the paper's layout and on the efficient one (``trajtok.tokenizer`` presets);
* ``vit3d`` and ``tome``: the peers at their 224 px paper sizes (``base`` presets: 16 px x 2-frame tubelets);

``base``, ``lite`` and the peers with the ViT-B video transformer of ``benchmarks.common.SCALES["vit-b"]`` (width
768, 12 blocks; ToMe merges in the first 6), as ``benchmarks.flops`` counts them. ``--tiny`` takes the CPU scale's
sizes instead (64 px, ``tiny`` presets, width 192) and a released layout shrunk to match.

What is measured, for T = 8, 16 and 32 frames at 224 px, all under ``torch.autocast(dtype=torch.bfloat16)``
(weights in float32, as in mixed-precision training), on random N(0, 1) clips (the data pipeline's normalised
range; none of these models' cost depends on the content):

* training: forward, backward and an AdamW step over the tokenizer and the head's video side; the loss is a
  symmetric InfoNCE of the clip embeddings against fixed random unit targets (the text tower, the same for every
  model, is left out);
* inference: the forward pass under ``torch.no_grad``.

Each (model, T, mode) starts at a batch of ``--train-frames`` (``--infer-frames``) frames, i.e. 256 / T clips for
training and 512 / T for inference, halves it on out-of-memory (the batches that failed are recorded), runs
``--warmup`` steps, then times ``--steps`` steps between CUDA events with the device synchronised around them:
clips/s = batch x steps / seconds. Peak memory is ``torch.cuda.max_memory_allocated`` over the timed steps, reset
after the warm-up: weights, AdamW state, gradients and activations, absolute; beside it what was allocated before
them. Measurements run T by T (every model at T = 8 first), and the run keeps a time budget (``--budget``, 420 s
from the start of ``main``, which leaves the imports and the step under way room before 7.5 minutes): a
measurement whose estimate (the same model's at the previous T, scaled by T) would overrun it is not started and is
listed with the reason, a warm-up or timing loop past it stops after the step under way, and the results are
written after every measurement, so a run that is cut short still leaves what it measured.

Writes ``results/gpu_layouts.json`` (environment, settings, one row per measurement) and ``results/gpu_layouts.csv``
(the same rows) and prints the table; ``python -m benchmarks.report`` renders the CSV in docs/results.md, with the
GPU named from the JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.common import (
    LABELS,
    LITE,
    OFFICIAL,
    RESULTS,
    SCALES,
    build_video_model,
    command_line,
    environment,
    official_video_model,
    print_table,
    write_csv,
)
from trajtok.files import write_atomic

#: Short name -> the kind ``benchmarks.common`` builds.
MODELS = {"official": OFFICIAL, "base": "trajtok", "lite": LITE, "vit3d": "vit3d", "tome": "tome"}
MODES = ("train", "infer")


def tiny_release_layout():
    """The released TrajViT-v2's layout at CPU-test sizes (the same options, narrow and shallow)."""
    from trajtok.release import RELEASED_LAYOUTS

    return dataclasses.replace(
        RELEASED_LAYOUTS["trajvitv2"], dim=64, num_slots=8, depth=1, head_dim=8, assign_dim=8,
        backbone_depths=(1, 1, 1, 1), backbone_widths=(16, 32, 64, 128), token_dim=64, transformer_width=64,
        transformer_depth=2, embed_dim=32)


def build(name: str, frames: int, device: torch.device, tiny: bool) -> torch.nn.Module:
    """Model ``name`` (a key of ``MODELS``) built on ``device``, seeded."""
    torch.manual_seed(0)
    kind = MODELS[name]
    if kind == OFFICIAL:
        return official_video_model(device, tiny_release_layout() if tiny else None, text=False)
    return build_video_model(kind, "cpu" if tiny else "vit-b", frames, device=device, target=device)


def contrastive(embeddings: torch.Tensor, targets: torch.Tensor, scale: float = 1 / 0.07) -> torch.Tensor:
    """Symmetric InfoNCE of ``(B, E)`` unit embeddings against ``(B, E)`` unit targets, row i with row i."""
    logits = scale * embeddings.float() @ targets.T
    labels = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def is_oom(error: BaseException) -> bool:
    if isinstance(error, torch.OutOfMemoryError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and any(
        s in text for s in ("out of memory", "CUDNN_STATUS_ALLOC_FAILED", "CUBLAS_STATUS_ALLOC_FAILED"))


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


class OverBudget(Exception):
    """The time budget ran out before a measurement had a timed step."""


class Measure:
    """One model's training step or inference at one batch: warm-up, then timed steps."""

    def __init__(self, model: torch.nn.Module, mode: str, batch: int, frames: int, pixels: int,
                 device: torch.device, amp: bool):
        self.model, self.mode, self.device, self.amp = model, mode, device, amp
        generator = torch.Generator(device).manual_seed(1)
        self.video = torch.randn(batch, frames, 3, pixels, pixels, generator=generator, device=device)
        width = model.head.video_proj.out_features
        self.targets = F.normalize(torch.randn(batch, width, generator=generator, device=device), dim=-1)
        self.optimizer = None
        if mode == "train":
            # The video side only: the head's text tower (unused here) gets no gradient and no AdamW state.
            params = [p for n, p in model.named_parameters() if not n.startswith("head.text_")]
            self.optimizer = torch.optim.AdamW(params, lr=1e-4)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    def step(self) -> None:
        if self.mode == "infer":
            with torch.no_grad(), self.autocast():
                self.model(self.video)
            return
        with self.autocast():
            embeddings = self.model(self.video)
        contrastive(embeddings, self.targets).backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def run(self, warmup: int, steps: int, deadline: float) -> dict:
        self.model.train(self.mode == "train")
        for _ in range(warmup):
            if time.monotonic() > deadline:
                raise OverBudget("the time budget ran out in the warm-up")
            self.step()
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            before = torch.cuda.memory_allocated(self.device)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
        begin = time.perf_counter()
        done = 0
        while done < steps and (done == 0 or time.monotonic() < deadline):
            self.step()
            done += 1
        if cuda:
            end.record()
            torch.cuda.synchronize(self.device)
            seconds = start.elapsed_time(end) / 1e3
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            seconds, peak, before = time.perf_counter() - begin, None, None
        batch = len(self.video)
        return {"steps": done, "seconds": seconds, "clips_per_s": batch * done / seconds,
                "peak_mib": None if peak is None else peak / 2**20,
                "allocated_before_mib": None if before is None else before / 2**20}


def measure(model: torch.nn.Module, mode: str, frames: int, args, device: torch.device, deadline: float) -> dict:
    """One (model, T, mode): from the starting batch, halving on out-of-memory; the row to record."""
    start_batch = max(1, (args.train_frames if mode == "train" else args.infer_frames) // frames)
    row = {"mode": mode, "start_batch": start_batch, "oom_batches": []}
    batch = start_batch
    while batch >= 1:
        failed = None
        try:
            result = Measure(model, mode, batch, frames, args.pixels, device, args.amp).run(
                args.warmup, args.steps, deadline)
        except OverBudget as error:
            return {**row, "status": "budget", "reason": str(error)}
        except (RuntimeError, torch.OutOfMemoryError) as error:
            if not is_oom(error):
                raise
            failed = str(error).splitlines()[0][:160]
        model.zero_grad(set_to_none=True)
        free(device)
        if failed is None:
            return {**row, "status": "ok", "batch": batch, **result}
        row["oom_batches"].append(batch)
        row["last_oom"] = failed
        batch //= 2
    return {**row, "status": "oom", "reason": "out of memory at batch 1"}


def table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """One line per (T, model): each mode's batch, clips/s (ratio to ViT3D at that T) and peak memory."""
    header = ["T", "model"]
    for mode in MODES:
        header += [f"{mode} batch", f"{mode} clips/s (x ViT3D)", f"{mode} peak GiB"]
    lines = []
    for frames in sorted({r["T"] for r in rows}):
        mine = [r for r in rows if r["T"] == frames]
        for name in MODELS:
            cells = [str(frames), name]
            for mode in MODES:
                row = next((r for r in mine if r["model"] == name and r["mode"] == mode), None)
                if row is None:
                    cells += ["", "", ""]
                elif row["status"] != "ok":
                    cells += ["", row["status"], ""]
                else:
                    ref = next((r for r in mine if r["model"] == "vit3d" and r["mode"] == mode
                                and r["status"] == "ok"), None)
                    ratio = f" ({row['clips_per_s'] / ref['clips_per_s']:.2f}x)" if ref else ""
                    peak = "" if row["peak_mib"] is None else f"{row['peak_mib'] / 1024:.1f}"
                    cells += [str(row["batch"]), f"{row['clips_per_s']:.1f}{ratio}", peak]
            if any(cells[2:]):
                lines.append(cells)
    return header, lines


def write(results: dict, path: Path) -> None:
    import json

    write_atomic(path, json.dumps(results, indent=1))
    write_csv(results["rows"], path.with_suffix(".csv"))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (with --tiny: the smoke run)")
    parser.add_argument("--tiny", action="store_true", help="CPU-test sizes: 64 px, tiny presets, T = 2, one step")
    parser.add_argument("--frames", type=int, nargs="+", default=None, help="default 8 16 32 (--tiny: 2)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--train-frames", type=int, default=None,
                        help="frames per training batch to start from (batch = this // T; default 256, --tiny 4)")
    parser.add_argument("--infer-frames", type=int, default=None,
                        help="frames per inference batch to start from (default 512, --tiny 4)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 2, --tiny 0)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 5, --tiny 1)")
    parser.add_argument("--budget", type=float, default=420.0,
                        help="seconds for the measurements (default 7 min: the run ends before 7.5)")
    parser.add_argument("--no-amp", dest="amp", action="store_false", help="float32 instead of bf16 autocast")
    parser.add_argument("--out", type=Path, default=RESULTS / "gpu_layouts.json")
    args = parser.parse_args(argv)
    began = time.monotonic()
    deadline = began + args.budget
    tiny = {"frames": [2], "train_frames": 4, "infer_frames": 4, "warmup": 0, "steps": 1}
    full = {"frames": [8, 16, 32], "train_frames": 256, "infer_frames": 512, "warmup": 2, "steps": 5}
    for key, value in (tiny if args.tiny else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.pixels = SCALES["cpu" if args.tiny else "vit-b"]["pixels"]
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device here: run it on a GPU, or the smoke run with --device cpu --tiny")

    results = {"command": command_line() if argv is None else " ".join(["python -m benchmarks.gpu_layouts", *argv]),
               "env": environment() | {"device": str(device)}, "settings": {
        k: v for k, v in vars(args).items() if k != "out"} | {"out": str(args.out)},
        "notes": ["clips/s: batch x steps / seconds of the timed steps (CUDA events on a GPU)",
                  "peak_mib: torch.cuda.max_memory_allocated over the timed steps (weights, optimizer state, activations)",
                  "allocated_before_mib: what was allocated when the timed steps began",
                  "train: forward + backward + AdamW (tokenizer + head video side), InfoNCE against fixed targets",
                  "official: the released layout with its own 24-block width-512 head",
                  "base, lite, vit3d, tome: the vit-b scale's ViT-B head (ToMe merging in its first 6 blocks)"],
        "rows": []}
    if device.type == "cuda":
        results["env"]["gpu"] = torch.cuda.get_device_name(device)
    rows = results["rows"]
    durations: dict[tuple[str, str], tuple[int, float]] = {}  # (model, mode) -> (T, seconds it took)
    for frames in args.frames:
        for name in args.models:
            base = {"model": name, "label": LABELS[MODELS[name]], "T": frames, "pixels": args.pixels}
            left = deadline - time.monotonic()
            estimate = sum(seconds * frames / t for t, seconds in
                           (durations[(name, m)] for m in MODES if (name, m) in durations))
            if left <= 0 or estimate > left:
                reason = ("the time budget is spent" if left <= 0
                          else f"estimated {estimate:.0f} s > {left:.0f} s left of the budget")
                rows += [{**base, "mode": mode, "status": "budget", "reason": reason} for mode in MODES]
                print(f"  T={frames} {name}: skipped, {reason}", file=sys.stderr, flush=True)
                continue
            try:
                model = build(name, frames, device, args.tiny).to(device)
            except (RuntimeError, torch.OutOfMemoryError) as error:
                if not is_oom(error):
                    raise
                rows += [{**base, "mode": mode, "status": "oom", "reason": "building the model"} for mode in MODES]
                free(device)
                continue
            for mode in ("infer", "train"):
                start = time.monotonic()
                row = {**base, **measure(model, mode, frames, args, device, deadline)}
                durations[(name, mode)] = (frames, time.monotonic() - start)
                rows.append(row)
                shown = (f"batch {row['batch']}, {row['clips_per_s']:.1f} clips/s"
                         + (f", peak {row['peak_mib'] / 1024:.2f} GiB" if row["peak_mib"] is not None else "")
                         if row["status"] == "ok" else row["status"])
                print(f"  T={frames} {name} {mode}: {shown} ({durations[(name, mode)][1]:.0f} s)",
                      file=sys.stderr, flush=True)
                results["elapsed_s"] = time.monotonic() - began
                write(results, args.out)
            del model
            free(device)
    results["elapsed_s"] = time.monotonic() - began
    write(results, args.out)
    header, lines = table(rows)
    where = results["env"].get("gpu") or str(device)
    print_table(f"{args.pixels} px, bf16 autocast" if args.amp else f"{args.pixels} px, float32", header, lines)
    print(f"\n{where}; {math.ceil(results['elapsed_s'])} s; wrote {args.out} and {args.out.with_suffix('.csv')}")
    return results


if __name__ == "__main__":
    main()
