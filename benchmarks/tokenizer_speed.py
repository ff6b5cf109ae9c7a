"""Speed, FLOPs and memory of the TrajTok tokenizer on this machine. A benchmark, not a test.

    python -m benchmarks.tokenizer_speed [--quick] [--out results/tokenizer_speed.json]

Three parts, each printed as a table and written to the JSON (and to a PNG next to it if matplotlib is
importable, ``pip install -e '.[bench]'``):

A. attention: one trajectory-masked attention call, the segment form (CSR kernels on CPU, and the portable
   gather kernels) against the dense masked-SDPA oracle, at the base preset's layout (n=1, 8 heads of 64,
   D=512, K = 64 and 128) on a reduced feature grid (28x28 per frame; the base preset at 224 px has 56x56),
   T = 8, 32, 64 (--quick: K = 128, 14x14, T = 8, 32). FLOPs three ways: ``FlopCounterMode`` as shipped, ``FlopCounterMode``
   corrected (see ``trajtok.flops.CORRECTED_FLOPS``), and an analytic count of the attention matmuls.
B. tokenizer: the whole tokenizer, presets ``tiny`` (64 px) and ``base`` (224 px), T = 8, 16, 32, 64:
   FLOPs (corrected counter on meta tensors: exact shapes, no compute), forward and forward+backward time
   and peak memory, each timed configuration in a fresh subprocess. Configurations that would not fit the
   time budget (or memory) are listed as "not timed", with the estimate that ruled them out.
C. crossover: the trajectory encoder (depth 2, forward+backward, layout build included) with the segment vs
   the dense form over a grid of (K, N, width), and the segment form of a rotary-free encoder (its projections
   absorbed, ``segment_attention``): the data behind ``pick_attention_form``.

Writes ``results/tokenizer_speed.json`` and one CSV table per part beside it, one row per measured configuration:
``tokenizer_speed_attention.csv`` (K, T and form: FLOPs in GFLOPs, times in ms), ``tokenizer_speed_tokenizer.csv``
(preset and T: GFLOPs, ms, peak MiB) and ``tokenizer_speed_crossover.csv`` (width, K, N: ms of each form); and part
C by dense work, ``tokenizer_speed_crossover_ranges.csv`` (per power of two of W = K*n*N*heads*head_dim, the range of
the dense form's time over the segment form's: where it crosses 1 is ``pick_attention_form``'s threshold).

Timing: after warm-up, the forms/configurations are run interleaved (A, C) and the median (and min) over the
repeats is reported. The machine may be shared: the load average and CPU pressure before and after each
part are recorded, and medians taken while it was busy are noisy (the min is the better estimate then). With
2 threads on 2 busy cores every op waits for the descheduled thread, times inflate 10-100x and the segment
form (more, smaller ops) suffers most: use ``--threads 1`` on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import torch

from benchmarks.common import (
    ROOT,
    command_line,
    current_rss_bytes,
    environment,
    machine_load,
    mem_available_bytes,
    peak_rss_bytes,
    print_table,
    reset_peak_rss,
    summarize,
    sync,
    write_csv,
)
from trajtok.files import write_atomic
from trajtok.flops import count_flops, count_flops_by_module
from trajtok.tokenizer import create_tokenizer, tokenizer_sizes
from trajtok.tokenizer.attention import SegmentLayout, dense_masked_attention
from trajtok.tokenizer.segment_attention import segment_attention
from trajtok.tokenizer.trajectory_encoder import TrajectoryEncoder
from trajtok.tokenizer.trajtok import auto_attention_form


# --------------------------------------------------------------------------------------------- FLOP counting
def analytic_attention_flops(form: str, K: int, n: int, N: int, heads: int, head_dim: int) -> dict[str, int]:
    """FLOPs (2 x multiply-adds) of the attention matmuls of one call, batch 1, as implemented.

    dense: L = K*n queries against L + N keys; forward QK^T and PV; backward 5 matmuls (the flash kernel
    recomputes QK^T). segment: each query against its own n sub-tokens and the ~N/K patches of its segment,
    n*N + K*n*n dot products per head; forward 2, backward 4 (probabilities are saved, not recomputed).
    The forward ratio is exactly K for any n.
    """
    if form == "dense":
        unit = 2 * heads * (K * n) * (K * n + N) * head_dim
        return {"fwd": 2 * unit, "fwd_bwd": 7 * unit}
    unit = 2 * heads * (n * N + K * n * n) * head_dim
    return {"fwd": 2 * unit, "fwd_bwd": 6 * unit}


# ---------------------------------------------------------------------------------------------- utilities
def attention_inputs(K, n, N, heads, head_dim, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    lat = [torch.randn(1, K * n, heads, head_dim, generator=g) for _ in range(3)]
    ctx = [torch.randn(1, N, heads, head_dim, generator=g) for _ in range(2)]
    tensors = [t.to(device).requires_grad_() for t in lat + ctx]
    labels = torch.randint(K, (1, N), generator=g).to(device)
    return tensors, labels


def attention_forms(K, n, heads, device):
    def segment(sparse):
        def run(*tensors, labels):
            layout = SegmentLayout(labels, K, n, heads, sparse=sparse)  # built inside: the standalone cost
            return segment_attention(*tensors, labels=labels, num_subtokens=n, layout=layout)

        return run

    forms = {"dense": lambda *t, labels: dense_masked_attention(*t, labels=labels, num_subtokens=n)}
    if device.type == "cpu":
        forms["segment"] = segment(True)
        forms["segment_gather"] = segment(False)
    else:
        forms["segment"] = segment(False)
    return forms


def attention_step(forms, tensors, labels, device):
    def step(form: str, backward: bool) -> None:
        out = forms[form](*tensors, labels=labels)
        if backward:
            torch.autograd.grad(out.sum(), tensors)
        sync(device)

    return step


def bench_attention(args, device, budget_s: float) -> list[dict]:
    base = tokenizer_sizes("trajtok", "base")
    heads, head_dim, n = base["heads"], base["head_dim"], 1
    grid = 14 if args.quick else 28
    frames = (8, 32) if args.quick else (8, 32, 64)
    slots = (128,) if args.quick else (64, 128)
    repeats = 3 if args.quick else 7
    deadline = time.monotonic() + budget_s
    rows = []
    for K in slots:
        for T in frames:
            N = grid * grid * T
            row = {"K": K, "n": n, "T": T, "grid": f"{grid}x{grid}", "N": N, "heads": heads, "head_dim": head_dim,
                   "forms": {}}
            forms = attention_forms(K, n, heads, device)
            for form in forms:
                kind = "dense" if form == "dense" else "segment"
                row["forms"][form] = {"analytic_flops": analytic_attention_flops(kind, K, n, N, heads, head_dim)}
            rows.append(row)
            if time.monotonic() > deadline:
                row["timed"] = False
                row["not_timed_reason"] = f"the {budget_s:.0f} s budget of part A was spent"
                continue
            labels = attention_inputs(K, n, N, heads, head_dim, device)[1]
            step = attention_step(forms, *attention_inputs(K, n, N, heads, head_dim, device), device)
            # Two warm-up rounds, which also count the FLOPs (corrected, then stock), then interleaved repeats.
            samples = {form: {"fwd": [], "fwd_bwd": []} for form in forms}
            for r in range(repeats + 2):
                for form in forms:
                    for backward, key in ((False, "fwd"), (True, "fwd_bwd")):
                        if r < 2:
                            counter = "counted_flops" if r == 0 else "stock_counted_flops"
                            flops = count_flops(partial(step, form, backward), corrected=r == 0)
                            row["forms"][form].setdefault(counter, {})[key] = flops
                            continue
                        sync(device)
                        start = time.perf_counter()
                        step(form, backward)
                        samples[form][key].append(time.perf_counter() - start)
            for form in forms:
                row["forms"][form]["time"] = {k: summarize(v) for k, v in samples[form].items()}
            build = []
            for _ in range(repeats):
                sync(device)
                start = time.perf_counter()
                SegmentLayout(labels, K, n, heads)
                sync(device)
                build.append(time.perf_counter() - start)
            row["layout_build"] = summarize(build)
            row["timed"] = True
            print(f"  attention K={K} T={T} N={N} done", file=sys.stderr, flush=True)
    return rows


def report_attention(rows: list[dict]) -> None:
    header = ["K", "T", "N", "form", "analytic fwd", "analytic f+b", "counted f+b", "stock f+b",
              "fwd ms (min)", "f+b ms (min)"]
    table = []
    for row in rows:
        for form, r in row["forms"].items():
            cells = [str(row["K"]), str(row["T"]), str(row["N"]), form,
                     f"{r['analytic_flops']['fwd'] / 1e9:.3f}G", f"{r['analytic_flops']['fwd_bwd'] / 1e9:.3f}G"]
            if row["timed"]:
                t = r["time"]
                cells += [f"{r['counted_flops']['fwd_bwd'] / 1e9:.3f}G",
                          f"{r['stock_counted_flops']['fwd_bwd'] / 1e9:.3f}G",
                          f"{t['fwd']['median_ms']:.1f} ({t['fwd']['min_ms']:.1f})",
                          f"{t['fwd_bwd']['median_ms']:.1f} ({t['fwd_bwd']['min_ms']:.1f})"]
            else:
                cells += ["", "", "not timed", ""]
            table.append(cells)
    grid = rows[0]["grid"] if rows else "?"
    print_table(f"A. trajectory-masked attention, one call, base layout (n=1, 8x64 heads), {grid} grid per frame"
                " [FLOPs: analytic matmul FLOPs; counted = corrected FlopCounterMode; stock = as shipped]",
                header, table)
    summary = []
    for row in rows:
        if not row["timed"]:
            print(f"   not timed: K={row['K']} T={row['T']}: {row['not_timed_reason']}")
            continue
        d, s = row["forms"]["dense"], row["forms"]["segment"]
        summary.append([str(row["K"]), str(row["T"]),
                        f"{d['analytic_flops']['fwd'] / s['analytic_flops']['fwd']:.1f}",
                        f"{d['counted_flops']['fwd_bwd'] / max(s['counted_flops']['fwd_bwd'], 1):.1f}",
                        f"{d['time']['fwd']['median_ms'] / s['time']['fwd']['median_ms']:.2f}",
                        f"{d['time']['fwd_bwd']['median_ms'] / s['time']['fwd_bwd']['median_ms']:.2f}",
                        f"{d['time']['fwd_bwd']['min_ms'] / s['time']['fwd_bwd']['min_ms']:.2f}",
                        f"{row['layout_build']['median_ms']:.2f}"])
    print_table("A'. dense / segment ratios (> 1: segment is cheaper)",
                ["K", "T", "FLOPs fwd (analytic)", "FLOPs f+b (counted)", "time fwd", "time f+b", "time f+b (min)",
                 "layout build ms"], summary)


# ----------------------------------------------------------------------------------------- B. tokenizer
TOKENIZER_CONFIGS = (("tiny", 64), ("base", 224))


def auto_form(preset: str, pixels: int, frames: int, device: torch.device) -> str:
    """The trajectory encoder's attention form that ``auto`` picks for this preset on ``device`` (n = 1)."""
    return auto_attention_form(tokenizer_sizes("trajtok", preset), frames, pixels, device)


def tokenizer_flops(preset: str, pixels: int, frames: int, device: torch.device) -> dict:
    with torch.device("meta"):
        model = create_tokenizer(preset, attention=auto_form(preset, pixels, frames, device))
    video = torch.empty(1, frames, 3, pixels, pixels, device="meta")
    forward, per_module = count_flops_by_module(lambda: model(video))
    fwd_bwd = count_flops(lambda: model(video).tokens.sum().backward())
    return {"fwd": forward, "fwd_bwd": fwd_bwd, "fwd_by_module": per_module}


def tokenizer_worker(spec: dict) -> dict:
    """Runs in a fresh process: one configuration's timings and peak memory."""
    torch.manual_seed(0)
    device = torch.device(spec["device"])
    model = create_tokenizer(spec["preset"]).to(device)
    video = torch.randn(1, spec["frames"], 3, spec["pixels"], spec["pixels"], device=device)
    cuda = device.type == "cuda"

    def run(backward: bool) -> float:
        sync(device)
        start = time.perf_counter()
        out = model(video)
        if backward:
            out.tokens.sum().backward()
        sync(device)
        elapsed = time.perf_counter() - start
        model.zero_grad(set_to_none=True)
        return elapsed

    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        baseline, method = torch.cuda.memory_allocated(device), "torch.cuda.max_memory_allocated - allocated before"
    else:
        reset = reset_peak_rss()
        baseline = current_rss_bytes()
        method = ("peak RSS (VmHWM, reset via /proc/self/clear_refs) - RSS before the first forward, fresh process"
                  if reset else "peak RSS (ru_maxrss, not resettable) - RSS before the first forward, fresh process")
    warm_fwd = run(False)
    peak_fwd = (torch.cuda.max_memory_allocated(device) if cuda else peak_rss_bytes()) - baseline
    warm_fwd_bwd = run(True)
    peak_fwd_bwd = (torch.cuda.max_memory_allocated(device) if cuda else peak_rss_bytes()) - baseline
    samples = {"fwd": [], "fwd_bwd": []}
    for _ in range(spec["repeats"]):
        samples["fwd"].append(run(False))
        samples["fwd_bwd"].append(run(True))
    return {
        "time": {k: summarize(v) for k, v in samples.items()},
        "warmup_ms": {"fwd": 1e3 * warm_fwd, "fwd_bwd": 1e3 * warm_fwd_bwd},
        "peak_memory_bytes": {"fwd": peak_fwd, "fwd_bwd": peak_fwd_bwd},
        "memory_method": method,
    }


def bench_tokenizer(args, device, budget_s: float) -> list[dict]:
    frames = (8, 16, 32, 64)
    rows = []
    deadline = time.monotonic() + budget_s
    for preset, pixels in TOKENIZER_CONFIGS:
        previous = None  # (frames, wall seconds of its worker, peak bytes)
        for T in frames:
            row = {"preset": preset, "pixels": pixels, "T": T, "attention": auto_form(preset, pixels, T, device),
                   "flops": tokenizer_flops(preset, pixels, T, device)}
            repeats = 2 if preset == "base" else (3 if args.quick else 5)
            reason = None
            if args.quick and preset == "base":
                reason = "--quick: base is not timed"
            elif previous is not None:
                scale = T / previous[0]
                estimate = previous[1] * scale * (repeats + 2) / (previous[3] + 2)
                peak = previous[2] * scale
                available = mem_available_bytes()
                left = deadline - time.monotonic()
                if estimate > left:
                    reason = f"time: estimated {estimate:.0f} s > {max(left, 0):.0f} s left of the budget"
                elif device.type == "cpu" and available is not None and peak > 0.7 * available:
                    reason = f"memory: estimated peak {peak / 2**30:.1f} GiB > 70% of {available / 2**30:.1f} GiB"
            if reason is None:
                spec = {"preset": preset, "pixels": pixels, "frames": T, "repeats": repeats, "device": str(device)}
                start = time.monotonic()
                command = [sys.executable, "-m", __spec__.name, "--threads", str(torch.get_num_threads()),
                           "--worker", json.dumps(spec)]
                proc = subprocess.run(command, capture_output=True, text=True, check=False)
                wall = time.monotonic() - start
                if proc.returncode != 0:
                    row["timed"] = False
                    row["not_timed_reason"] = f"worker failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}"
                else:
                    row.update(json.loads(proc.stdout.strip().splitlines()[-1]))
                    row["timed"] = True
                    row["worker_wall_s"] = wall
                    previous = (T, wall, row["peak_memory_bytes"]["fwd_bwd"], repeats)
            else:
                row["timed"] = False
                row["not_timed_reason"] = reason
            rows.append(row)
            print(f"  tokenizer {preset} T={T} {'timed' if row['timed'] else 'not timed'}", file=sys.stderr, flush=True)
    return rows


def report_tokenizer(rows: list[dict]) -> None:
    header = ["preset", "px", "T", "attention", "GFLOP fwd", "GFLOP f+b", "fwd ms (min)", "f+b ms (min)", "peak MiB fwd",
              "peak MiB f+b", "ms f+b / frame"]
    table = []
    for row in rows:
        f = row["flops"]
        cells = [row["preset"], str(row["pixels"]), str(row["T"]), row["attention"], f"{f['fwd'] / 1e9:.1f}",
                 f"{f['fwd_bwd'] / 1e9:.1f}"]
        if row["timed"]:
            t, m = row["time"], row["peak_memory_bytes"]
            cells += [f"{t['fwd']['median_ms']:.0f} ({t['fwd']['min_ms']:.0f})",
                      f"{t['fwd_bwd']['median_ms']:.0f} ({t['fwd_bwd']['min_ms']:.0f})",
                      f"{m['fwd'] / 2**20:.0f}", f"{m['fwd_bwd'] / 2**20:.0f}",
                      f"{t['fwd_bwd']['median_ms'] / row['T']:.1f}"]
        else:
            cells += ["not timed"] + [""] * 4
        table.append(cells)
    print_table("B. whole tokenizer, batch 1 (FLOPs: corrected FlopCounterMode on meta tensors; times: median (min);"
                " peak memory: see memory_method in the JSON)", header, table)
    for row in rows:
        if not row["timed"]:
            print(f"   not timed: {row['preset']} T={row['T']}: {row['not_timed_reason']}")
    breakdown = [[row["preset"], str(row["T"])] + [f"{row['flops']['fwd_by_module'].get(m, 0) / 1e9:.1f}"
                                                    for m in ("pixel_encoder", "segmenter", "encoder")]
                 for row in rows]
    print_table("B'. forward GFLOP by part", ["preset", "T", "pixel encoder", "segmenter", "trajectory encoder"],
                breakdown)


# ------------------------------------------------------------------------------------------- C. crossover
def bench_crossover(args, device, budget_s: float) -> list[dict]:
    widths = ((128, 4, 32),) if args.quick else ((128, 4, 32), (512, 8, 64))
    if args.quick:
        sizes = [(K, N) for K in (32, 128) for N in (256, 4096)]
    else:
        sizes = [(K, N) for K in (8, 32, 128) for N in (64, 256, 1024, 4096)] + [(128, 16384)]
    repeats = 3 if args.quick else 5
    deadline = time.monotonic() + budget_s
    rows = []
    for dim, heads, head_dim in widths:
        for K, N in sizes:
            row = {"dim": dim, "heads": heads, "head_dim": head_dim, "K": K, "N": N, "work": K * N * heads * head_dim}
            rows.append(row)
            if time.monotonic() > deadline:
                row["timed"] = False
                continue
            torch.manual_seed(0)
            encoder = TrajectoryEncoder(dim, K, 1, 2, heads, head_dim).to(device)
            rotary_free = TrajectoryEncoder(dim, K, 1, 2, heads, head_dim, attention="segment", rotary="none").to(device)
            grid = (max(N // 64, 1), 8, 8) if N >= 64 else (1, 1, N)
            patch_feats = torch.randn(1, N, dim, device=device, requires_grad=True)
            logits = torch.randn(1, N, K, device=device, requires_grad=True)
            labels = logits.argmax(-1)
            samples = {"segment": [], "dense": [], "absorbed": []}
            for r in range(repeats + 2):
                for form, times in samples.items():
                    encoder.attention = form
                    sync(device)
                    start = time.perf_counter()
                    out = (rotary_free if form == "absorbed" else encoder)(patch_feats, logits, labels, grid, 1)
                    torch.autograd.grad(out.sum(), (patch_feats, logits))
                    sync(device)
                    if r >= 2:
                        times.append(time.perf_counter() - start)
            row["time_fwd_bwd"] = {form: summarize(v) for form, v in samples.items()}
            row["timed"] = True
        print(f"  crossover width {dim} done", file=sys.stderr, flush=True)
    return rows


def report_crossover(rows: list[dict]) -> None:
    table = []
    skipped = [row for row in rows if not row["timed"]]
    for row in sorted((row for row in rows if row["timed"]), key=lambda r: (r["dim"], r["work"])):
        s, d, a = (row["time_fwd_bwd"][form] for form in ("segment", "dense", "absorbed"))
        table.append([str(row["dim"]), f"{row['heads']}x{row['head_dim']}", str(row["K"]), str(row["N"]),
                      f"2^{row['work'].bit_length() - 1}", f"{s['median_ms']:.1f} ({s['min_ms']:.1f})",
                      f"{d['median_ms']:.1f} ({d['min_ms']:.1f})", f"{d['median_ms'] / s['median_ms']:.2f}",
                      f"{d['min_ms'] / s['min_ms']:.2f}", f"{a['median_ms']:.1f}", f"{d['median_ms'] / a['median_ms']:.2f}"])
    print_table("C. trajectory encoder (depth 2, n=1) forward+backward, segment vs dense, and the segment form of a "
                "rotary-free encoder (absorbed projections); work = K*n*N*heads*head_dim",
                ["D", "heads", "K", "N", "work", "segment ms (min)", "dense ms (min)", "dense/segment",
                 "(min)", "absorbed ms", "dense/absorbed"], table)
    for row in skipped:
        print(f"   not timed (part C budget spent): D={row['dim']} K={row['K']} N={row['N']}")


# ---------------------------------------------------------------------------------------------------- tables
def _ms(summary: dict | None, key: str) -> float | None:
    return round(summary[key], 3) if summary else None


def attention_table(rows: list[dict]) -> list[dict]:
    """Part A as a table: one row per (K, T, form)."""
    table = []
    for row in rows:
        for form, r in row["forms"].items():
            t = r.get("time", {})
            table.append({"K": row["K"], "n": row["n"], "frames": row["T"], "grid": row["grid"], "patches": row["N"],
                          "form": form, "timed": row["timed"],
                          "analytic_fwd_gflops": r["analytic_flops"]["fwd"] / 1e9,
                          "analytic_fwd_bwd_gflops": r["analytic_flops"]["fwd_bwd"] / 1e9,
                          "counted_fwd_bwd_gflops": r["counted_flops"]["fwd_bwd"] / 1e9 if "counted_flops" in r else None,
                          "fwd_median_ms": _ms(t.get("fwd"), "median_ms"), "fwd_bwd_median_ms": _ms(t.get("fwd_bwd"), "median_ms"),
                          "fwd_bwd_min_ms": _ms(t.get("fwd_bwd"), "min_ms")})
    return table


def tokenizer_table(rows: list[dict]) -> list[dict]:
    """Part B as a table: one row per (preset, T)."""
    table = []
    for row in rows:
        t, m = row.get("time", {}), row.get("peak_memory_bytes", {})
        table.append({"preset": row["preset"], "pixels": row["pixels"], "frames": row["T"], "attention": row["attention"],
                      "fwd_gflops": row["flops"]["fwd"] / 1e9, "fwd_bwd_gflops": row["flops"]["fwd_bwd"] / 1e9,
                      **{f"{part}_fwd_gflops": row["flops"]["fwd_by_module"].get(part, 0) / 1e9
                         for part in ("pixel_encoder", "segmenter", "encoder")},
                      "timed": row["timed"], "fwd_median_ms": _ms(t.get("fwd"), "median_ms"),
                      "fwd_bwd_median_ms": _ms(t.get("fwd_bwd"), "median_ms"),
                      "fwd_peak_mib": round(m["fwd"] / 2**20, 1) if m else None,
                      "fwd_bwd_peak_mib": round(m["fwd_bwd"] / 2**20, 1) if m else None,
                      "not_timed_reason": row.get("not_timed_reason", "")})
    return table


def crossover_table(rows: list[dict]) -> list[dict]:
    """Part C as a table: one row per (width, K, N)."""
    return [{"dim": row["dim"], "heads": row["heads"], "head_dim": row["head_dim"], "K": row["K"], "patches": row["N"],
             "timed": row["timed"], **{f"{form}_fwd_bwd_median_ms": _ms(row.get("time_fwd_bwd", {}).get(form), "median_ms")
                                       for form in ("segment", "dense", "absorbed")}} for row in rows]


#: Part C's comparisons, by encoder: the dense form against the segment form of the same (rotary) encoder, the
#: choice ``DENSE_MAX_WORK`` makes, and against a rotary-free encoder's segment form (``absorbed``), the choice
#: ``ABSORBED_DENSE_MAX_WORK`` makes.
CROSSOVER_FORMS = {"rotary": "segment", "rotary-free": "absorbed"}


def crossover_ranges_table(rows: list[dict]) -> list[dict]:
    """Part C by dense work: per encoder and power of two of W (rounded down), the timed configurations of that W and
    the least and greatest ratio of the dense form's median time to the segment form's."""
    table = []
    for encoder, form in CROSSOVER_FORMS.items():
        ratios: dict[int, list[float]] = {}
        for row in rows:
            if row["timed"]:
                times = row["time_fwd_bwd"]
                ratios.setdefault(row["work"].bit_length() - 1, []).append(
                    times["dense"]["median_ms"] / times[form]["median_ms"])
        table += [{"encoder": encoder, "segment_form": form, "log2_work_min": log2, "log2_work_max": log2,
                   "configurations": len(ratios[log2]), "dense_over_segment_min": round(min(ratios[log2]), 3),
                   "dense_over_segment_max": round(max(ratios[log2]), 3)} for log2 in sorted(ratios)]
    return table


# ---------------------------------------------------------------------------------------------------- plot
def plot(results: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, 4, figsize=(21, 4.5))
    if results.get("attention"):
        ax = axes[0]
        for K in sorted({r["K"] for r in results["attention"]}):
            rows = [r for r in results["attention"] if r["K"] == K and r["timed"]]
            for form, style in (("dense", "o-"), ("segment", "s-"), ("segment_gather", "^--")):
                if rows and form in rows[0]["forms"]:
                    ax.plot([r["T"] for r in rows], [r["forms"][form]["time"]["fwd_bwd"]["median_ms"] for r in rows],
                            style, label=f"{form} K={K}")
        ax.set(xlabel="T (frames)", ylabel="fwd+bwd ms (median)",
               title=f"A. one attention call, {results['attention'][0]['grid']} per frame")
        ax.legend(fontsize=7)
    if results.get("tokenizer"):
        for ax, key, ylabel in ((axes[1], "time", "fwd+bwd ms (median)"), (axes[2], "flops", "GFLOP fwd+bwd")):
            for preset in dict(TOKENIZER_CONFIGS):
                rows = [r for r in results["tokenizer"] if r["preset"] == preset and (key == "flops" or r["timed"])]
                values = [r["time"]["fwd_bwd"]["median_ms"] if key == "time" else r["flops"]["fwd_bwd"] / 1e9
                          for r in rows]
                if rows:
                    ax.plot([r["T"] for r in rows], values, "o-", label=preset)
            ax.set(xlabel="T (frames)", ylabel=ylabel, xscale="log", yscale="log", title=f"B. whole tokenizer, {key}")
            ax.legend()
    if results.get("crossover"):
        ax = axes[3]
        for dim in sorted({r["dim"] for r in results["crossover"]}):
            rows = sorted((r for r in results["crossover"] if r["dim"] == dim and r["timed"]), key=lambda r: r["work"])
            ax.plot([r["work"] for r in rows], [r["time_fwd_bwd"]["dense"]["median_ms"] /
                                               r["time_fwd_bwd"]["segment"]["median_ms"] for r in rows],
                    "o", label=f"D={dim}")
        ax.axhline(1.0, color="gray", lw=0.8)
        ax.set(xlabel="K*n*N*heads*head_dim", ylabel="dense / segment time", xscale="log",
               title="C. trajectory encoder fwd+bwd")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


# ---------------------------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a reduced run, under a minute on 2 CPU cores")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "tokenizer_speed.json")
    parser.add_argument("--budget", type=float, nargs=3, default=None, metavar=("A", "B", "C"),
                        help="seconds of timing for parts A, B, C (default 100 150 100, --quick 15 20 10); "
                             "what does not fit is reported as 'not timed'")
    parser.add_argument("--parts", default="ABC", help="which parts to run, e.g. 'AB'")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's, the number of cores); on a shared machine "
                             "1 thread is far less disturbed by other processes than 2")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(tokenizer_worker(json.loads(args.worker))))
        return

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    results = {
        "command": command_line(),
        "env": {**environment(), "quick": args.quick},
        "load": {"start": machine_load()},
        "notes": [
            ("FLOPs are 2 x multiply-adds of matmul-like ops (conv, mm, bmm, SDPA, sparse mm); elementwise ops, "
             "norms, softmax, gathers and scatters are not counted by FlopCounterMode."),
            ("Stock FlopCounterMode (torch 2.13) counts SDPA on CPU as 0 (no formula for the CPU flash kernels), "
             "sampled_addmm as 0, a CSR @ dense matmul as the dense matmul of that shape, and the weight gradient "
             "of a grouped (depthwise) convolution `groups` times over; 'counted' corrects these (CORRECTED_FLOPS)."),
            ("Corrected counts of the segment form omit the two backward 'spread' products (a gather and a "
             "multiply each, 2 of its 6 analytic matmul units); tokenizer FLOPs are counted on meta tensors, with "
             "the attention form that 'auto' picks on this device; there the segment form runs its gather "
             "kernels, whose segment sums (index_add_) are not counted either."),
        ],
    }
    budget = args.budget or ((15.0, 20.0, 10.0) if args.quick else (100.0, 150.0, 100.0))
    results["env"]["budget_s"] = dict(zip("ABC", budget))
    started = time.monotonic()
    if "A" in args.parts:
        results["attention"] = bench_attention(args, device, budget[0])
        results["load"]["after_A"] = machine_load()
    if "B" in args.parts:
        results["tokenizer"] = bench_tokenizer(args, device, budget[1])
        results["load"]["after_B"] = machine_load()
    if "C" in args.parts:
        results["crossover"] = bench_crossover(args, device, budget[2])
        results["load"]["after_C"] = machine_load()
    results["wall_s"] = time.monotonic() - started

    env = results["env"]
    print(f"torch {env['torch']} on {env['device']} ({env['cpu']}, {env['threads']} threads); "
          f"load {results['load']}")
    if "attention" in results:
        report_attention(results["attention"])
    if "tokenizer" in results:
        report_tokenizer(results["tokenizer"])
    if "crossover" in results:
        report_crossover(results["crossover"])
    write_atomic(args.out, json.dumps(results, indent=1))
    tables = {"attention": ("attention", attention_table), "tokenizer": ("tokenizer", tokenizer_table),
              "crossover": ("crossover", crossover_table), "crossover_ranges": ("crossover", crossover_ranges_table)}
    for name, (part, table) in tables.items():
        if part in results:
            write_csv(table(results[part]), args.out.with_name(f"{args.out.stem}_{name}.csv"))
    png = args.out.with_suffix(".png")
    plotted = plot(results, png)
    print(f"\nwrote {args.out}" + (f" and {png}" if plotted else " (no plot: matplotlib missing or parts skipped)")
          + f" in {results['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
