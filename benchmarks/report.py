"""The tables of docs/results.md and README.md, rebuilt from the benchmarks' results files.

    python -m benchmarks.report            # rewrite the generated blocks of both files
    python -m benchmarks.report --check    # exit 1, naming the blocks, if a file differs from what results/ gives

A generated block sits between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->``; NAME is a key of ``BLOCKS``.
Its text is: the command that made the numbers (the ``command`` of ``results/<file>.json``, else the benchmark's
default command), the table rendered from ``results/<file>.csv``, and where the numbers were measured (the JSON's
``env``) or, for a table transcribed from an earlier run (the JSON's ``transcribed_from``), that it awaits a re-run.
A block whose CSV is missing says so. Nothing between the markers is written by hand: re-run the benchmark, then
this command (``tests/test_benchmark_report.py`` checks that the files hold what it renders).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import RESULTS, ROOT
from trajtok.files import write_atomic

#: The files whose generated blocks this command rebuilds.
DOCUMENTS = (ROOT / "docs" / "results.md", ROOT / "README.md")
BLOCK = re.compile(r"(<!-- results:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /results:(?P=name) -->)", re.DOTALL)

PEERS = ("trajtok", "vit3d", "tome", "rlt")
NAMES = {"trajtok": "TrajViT2", "trajtok_lite": "TrajViT2 `lite`", "trajtok_official": "released TrajViT-v2",
         "vit3d": "ViT3D", "tome": "ToMe", "rlt": "RLT", "rlt_real": "RLT (real clips)", "token_learner": "fixed-K"}


# ------------------------------------------------------------------------------------------------- reading
@dataclass
class Result:
    """One benchmark's table (``rows`` of ``<stem>.csv``, as strings) and its JSON's ``command`` and provenance."""

    stem: str
    rows: list[dict[str, str]]
    meta: dict

    @property
    def command(self) -> str:
        return self.meta["command"]


#: Benchmarks that write several tables beside one JSON: ``<name>_<part>.csv`` and ``<name>.json``.
SHARED_JSON = ("tokenizer_speed",)


def json_of(table: Path) -> Path | None:
    """The JSON a benchmark wrote with ``table``: ``<stem>.json``, or for a table of a benchmark of ``SHARED_JSON``
    (``tokenizer_speed_attention.csv``) that benchmark's JSON (``tokenizer_speed.json``); ``None`` if there is none.
    Any other table without a JSON of its own has none: a JSON that merely shares a prefix of its name
    (``quality.json`` for ``quality_byte.csv``) is another benchmark's or run's, with another command and machine."""
    own = table.with_suffix(".json")
    if own.exists():
        return own
    for name in SHARED_JSON:
        shared = table.with_name(f"{name}.json")
        if table.stem.startswith(f"{name}_") and shared.exists():
            return shared
    return None


def load(results: Path, stem: str, command: str) -> Result | None:
    """``results/<stem>.csv`` and what its JSON says of it, or ``None`` when the CSV is missing."""
    table = results / f"{stem}.csv"
    if not table.exists():
        return None
    with open(table, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    meta_path = json_of(table)
    meta = json.loads(meta_path.read_text()) if meta_path else {}
    keep = {k: meta[k] for k in ("command", "env", "transcribed_from") if k in meta}
    return Result(stem, rows, {"command": command, **keep})


# ------------------------------------------------------------------------------------------------ formatting
def number(value: str, digits: int) -> str:
    return "-" if value in ("", None) else f"{float(value):.{digits}f}"


def value(text: str) -> str:
    """A measured quantity at a readable precision: whole above 100, one decimal from 1, three digits below."""
    if text in ("", None):
        return "-"
    v = float(text)
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.1f}" if abs(v) >= 1 else f"{v:.3g}"


def count(text: str) -> str:
    """A mean count: whole where it is, else one decimal."""
    v = float(text)
    return f"{v:.0f}" if v.is_integer() else f"{v:.1f}"


def seeds(row: dict[str, str]) -> int:
    return len(row.get("seeds", "").split())


def pm(row: dict[str, str], column: str, digits: int = 2, scale: float = 1.0) -> str:
    """``<column>_mean ± <column>_se`` of a row measured over several seeds; the mean alone for one seed."""
    mean, se = row.get(f"{column}_mean", ""), row.get(f"{column}_se", "")
    if mean == "":
        return "-"
    text = f"{float(mean) * scale:.{digits}f}"
    return text + (f" ± {float(se) * scale:.{digits}f}" if se != "" and seeds(row) > 1 else "")


def markdown(header: list[str], lines: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    out += ["| " + " | ".join(cells) + " |" for cells in lines]
    return "\n".join(out)


def provenance(result: Result) -> str:
    """Where the numbers of ``result`` come from: the machine of its JSON's ``env``, or that they were transcribed."""
    if "transcribed_from" in result.meta:
        return "Transcribed from an earlier run, not yet re-run on the current code"
    env = result.meta.get("env")
    if not env:
        return "The machine is not recorded"
    if env.get("gpu"):
        return f"Measured on {env['gpu']}, torch {env['torch']}"
    return (f"Measured on {env['cpu_count']} CPU cores ({env['cpu']}), torch {env['torch']}, {env['threads']} "
            f"thread{'s' if env['threads'] != 1 else ''}")


def section(results: list[Result | None], sources: tuple[tuple[str, str], ...], body: Callable[..., str]) -> str:
    """The commands, ``body(*results)`` and the provenance of each result; or a note that the results are missing."""
    head = "\n".join(f"`{r.command if r else command}`" for r, (_, command) in zip(results, sources))
    missing = [f"results/{stem}.csv" for r, (stem, _) in zip(results, sources) if r is None]
    if missing:
        return f"{head}\n\nNo results yet ({', '.join(missing)} missing): run the command above.\n"
    notes: dict[str, list[str]] = {}
    for result in results:
        commands = notes.setdefault(provenance(result), [])
        if f"`{result.command.split()[2]}`" not in commands:
            commands.append(f"`{result.command.split()[2]}`")
    if len(results) == 1:
        text = f"{next(iter(notes))}."
    else:
        text = " ".join(f"{note}: {', '.join(commands)}." for note, commands in notes.items())
    return f"{head}\n\n{body(*results)}\n\n{text}\n"


# ---------------------------------------------------------------------------------------------------- blocks
def demo_tables(demo: Result) -> str:
    stages = demo.rows
    clips = stages[0]["test_clips"]
    target = number(stages[0]["target_trajectories_per_clip"], 2)
    segmentation = markdown(
        [f"stage (test split, {clips} clips)", "object mIoU", "objects found (IoU >= 0.5)", "background IoU",
         f"trajectories / clip (target {target})"],
        [[r["stage"], number(r["object_miou"], 3), f"{number(r['objects_found_pct'], 1)}%", number(r["background_iou"], 3),
          number(r["trajectories_per_clip"], 2)] for r in stages])
    last = stages[-1]
    chance = f"chance: R@1 {100 / int(clips):.1f}, R@5 {500 / int(clips):.1f}"
    retrieval = markdown(
        [f"retrieval ({chance})", "R@1", "R@5", "R@10", "median rank", "mean rank"],
        [[direction, *(number(last[f"{direction}_r{k}_pct"], 2) for k in (1, 5, 10)),
          number(last[f"{direction}_median_rank"], 1), number(last[f"{direction}_mean_rank"], 2)]
         for direction in ("t2v", "v2t")])
    return f"{segmentation}\n\n{retrieval}"


def demo_short(demo: Result) -> str:
    stages = demo.rows
    clips = stages[0]["test_clips"]
    segmentation = markdown(
        [f"stage (test split, {clips} clips)", "object mIoU", "objects found (IoU >= 0.5)",
         f"trajectories / clip (target {number(stages[0]['target_trajectories_per_clip'], 2)})"],
        [[r["stage"], number(r["object_miou"], 3), f"{number(r['objects_found_pct'], 1)}%",
          number(r["trajectories_per_clip"], 2)] for r in stages])
    last = stages[-1]
    retrieval = markdown(
        [f"retrieval (chance: R@1 {100 / int(clips):.1f}, R@5 {500 / int(clips):.1f})", "R@1", "R@5", "R@10"],
        [[name, *(number(last[f"{direction}_r{k}_pct"], 2) for k in (1, 5, 10))]
         for direction, name in (("t2v", "text to video"), ("v2t", "video to text"))])
    return f"{segmentation}\n\n{retrieval}"


def by(rows: list[dict[str, str]], **match: str) -> dict[str, str] | None:
    return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)


def tokens_ratio(tokens: Result, model: str, longer: str = "32", shorter: str = "8") -> str:
    a, b = (by(tokens.rows, model=model, objects="all", frames=t) for t in (longer, shorter))
    return f"{float(a['valid_tokens_per_clip']) / float(b['valid_tokens_per_clip']):.2g}x" if a and b else "-"


def summary_table(quality: Result, tokens: Result, flops: Result) -> str:
    lines = {"valid tokens per clip, 8 frames": [], "tokens at 32 frames / at 8, same scenes": [],
             "text-to-video R@1": [], "text-to-video R@5": [], "forward GFLOPs, 224 px, ViT-B, T = 32": []}
    for kind in PEERS:
        row = by(quality.rows, kind=kind) or {}
        tokens_8 = row.get("valid_tokens_per_clip_mean", "")
        lines["valid tokens per clip, 8 frames"].append(f"{float(tokens_8):.3g}" if tokens_8 else "-")
        lines["tokens at 32 frames / at 8, same scenes"].append(tokens_ratio(tokens, kind))
        lines["text-to-video R@1"].append(pm(row, "t2v_r1_pct", 1))
        lines["text-to-video R@5"].append(pm(row, "t2v_r5_pct", 1))
        counted = by(flops.rows, scale="vit-b", frames="32", model="rlt_real" if kind == "rlt" else kind)
        gflops = number(counted["forward_gflops"], 0) if counted else "-"
        if kind == "trajtok":
            lite = by(flops.rows, scale="vit-b", frames="32", model="trajtok_lite")
            gflops += f" (`lite`: {number(lite['forward_gflops'], 0)})" if lite else ""
        lines["forward GFLOPs, 224 px, ViT-B, T = 32"].append(gflops)
    return markdown(["", *(NAMES[k] for k in PEERS)], [[name, *cells] for name, cells in lines.items()])


def flops_224(flops: Result) -> str:
    kinds = ("trajtok", "trajtok_lite", "vit3d", "tome", "rlt_real", "token_learner")
    lines = []
    for scale, encoder in (("vit-b", "ViT-B"), ("vit-l", "ViT-L")):
        for frames in sorted({int(r["frames"]) for r in flops.rows if r["scale"] == scale}):
            row = {r["model"]: r for r in flops.rows if r["scale"] == scale and r["frames"] == str(frames)}
            cells = [encoder, str(frames)]
            for kind in kinds:
                r = row.get(kind)
                cells.append("-" if r is None else number(r["forward_gflops"], 0)
                             + (f" ({r['tokens_per_clip']})" if kind in ("vit3d", "tome", "rlt_real") else ""))
            lite = row["trajtok_lite"]
            share = float(lite["tokenizer_forward_gflops"]) / float(lite["forward_gflops"])
            cells += [f"{100 * share:.0f}%",
                      *(f"{float(lite['forward_gflops']) / float(row[k]['forward_gflops']):.2f}" for k in ("tome", "vit3d"))]
            lines.append(cells)
    return markdown(["encoder", "T", "TrajViT2 `base`", "TrajViT2 `lite`", "ViT3D (tokens)", "ToMe (tokens)",
                     "RLT, real clips (tokens)", "fixed-K", "`lite` tokenizer share", "`lite` / ToMe", "`lite` / ViT3D"],
                    lines)


def flops_cpu(flops: Result) -> str:
    kinds = ("trajtok", "trajtok_lite", "vit3d", "tome", "rlt", "token_learner")
    lines = []
    for frames in sorted({int(r["frames"]) for r in flops.rows if r["scale"] == "cpu"}):
        row = {r["model"]: r for r in flops.rows if r["scale"] == "cpu" and r["frames"] == str(frames)}
        lines.append([str(frames), *(number(row[k]["forward_gflops"], 1) + f" ({row[k]['tokens_per_clip']})"
                                      if k in row else "-" for k in kinds),
                      number(row["rlt"]["kept_tubelets_pct"], 0) + "%" if "rlt" in row else "-"])
    return markdown(["T", "TrajViT2 `tiny` (tokens)", "TrajViT2 `tiny_lite`", "ViT3D", "ToMe", "RLT", "fixed-K",
                     "tubelets RLT keeps"], lines)


def flops_released(flops: Result) -> str:
    lines = []
    for frames in sorted({int(r["frames"]) for r in flops.rows if r["model"] == "trajtok_official"}):
        row = {(r["scale"], r["model"]): r for r in flops.rows if r["frames"] == str(frames)}
        released = row[("vit-b", "trajtok_official")]
        total, tokenizer = float(released["forward_gflops"]), float(released["tokenizer_forward_gflops"])
        lines.append([str(frames), f"{total:.0f} ({released['tokens_per_clip']})",
                      f"{tokenizer:.0f} ({100 * tokenizer / total:.0f}%)", number(released["head_forward_gflops"], 1),
                      *(number(row[("vit-b", k)]["forward_gflops"], 0) for k in ("trajtok", "trajtok_lite", "vit3d", "tome")),
                      *(f"{total / float(row[(s, 'vit3d')]['forward_gflops']):.2f}" for s in ("vit-b", "vit-l"))])
    return markdown(["T", "released (tokens)", "its tokenizer (share)", "its head", "TrajViT2 `base`", "`lite`",
                     "ViT3D-B", "ToMe-B", "released / ViT3D-B", "released / ViT3D-L"], lines)


def speed_cpu_224(speed: Result) -> str:
    order = ("trajtok_official", "trajtok", "trajtok_lite", "vit3d", "tome", "rlt", "token_learner")
    timed = {r["model"] for r in speed.rows if r["timed"] == "True"}
    models = [m for m in order if m in timed]
    names = {**NAMES, "trajtok": "TrajViT2 `base`"}
    clips, memory = ["inference clips/s (x ViT3D)"], ["inference peak MiB of live tensors (RSS)"]
    for model in models:
        r = by(speed.rows, model=model)
        clips.append(f"{number(r['infer_clips_per_s'], 2)} ({number(r['infer_vs_vit3d'], 2)}x)")
        memory.append(f"{number(r['infer_peak_mib'], 0)} ({number(r['infer_peak_rss_mib'], 0)})")
    return markdown([(f"{by(speed.rows, model=models[0])['pixels']} px, T = {speed.rows[0]['frames']}, batch "
                     f"{speed.rows[0]['batch']}"), *(names[m] for m in models)], [clips, memory])


def speed_cpu(speed: Result) -> str:
    models = ("trajtok", "trajtok_lite", "vit3d", "tome", "rlt", "token_learner")
    rows = [r for r in speed.rows if r["scale"] == "cpu"]
    frames = sorted({int(r["frames"]) for r in rows})
    lines = []
    for step, label in (("infer", "inference clips/s"), ("train", "training clips/s")):
        for t in frames:
            cells = [f"{label}, T = {t}"]
            for model in models:
                r = by(rows, model=model, frames=str(t))
                if r is None or r[f"{step}_clips_per_s"] == "":
                    cells.append("-")
                    continue
                cells.append(value(r[f"{step}_clips_per_s"])
                             + ("" if model == "vit3d" else f" ({number(r[f'{step}_vs_vit3d'], 2)}x)"))
            lines.append(cells)
    lines += [[f"training peak MiB, live tensors (RSS), T = {t}",
               *(f"{number(r['train_peak_mib'], 0)} ({number(r['train_peak_rss_mib'], 0)})"
                 if (r := by(rows, model=m, frames=str(t))) else "-" for m in models)] for t in frames]
    names = {**NAMES, "trajtok_lite": "TrajViT2 `tiny_lite`"}
    return markdown(["CPU scale, 64 px, batch " + rows[0]["batch"], *(names[m] for m in models)], lines)


def tokenizer_attention(attention: Result) -> str:
    lines = []
    pairs = sorted({(int(r["K"]), int(r["frames"])) for r in attention.rows})
    for K, T in pairs:
        dense, segment = (by(attention.rows, K=str(K), frames=str(T), form=f) for f in ("dense", "segment"))
        lines.append([str(K), str(T), f"{value(dense['analytic_fwd_gflops'])} / {value(segment['analytic_fwd_gflops'])}",
                      value(dense["fwd_bwd_median_ms"]), value(segment["fwd_bwd_median_ms"]),
                      f"{float(dense['fwd_bwd_median_ms']) / float(segment['fwd_bwd_median_ms']):.1f}x"])
    grid = attention.rows[0]["grid"]
    return markdown(["K", "T", f"attention forward GFLOPs, dense / segment ({grid} patches per frame)",
                     "dense ms, forward + backward", "segment ms", "speed-up"], lines)


def tokenizer_whole(tokenizer: Result) -> str:
    lines = []
    for preset in dict.fromkeys(r["preset"] for r in tokenizer.rows):
        mine = [r for r in tokenizer.rows if r["preset"] == preset]
        cells = [f"`{preset}`, {mine[0]['pixels']} px"]
        for r in mine:
            gflop = value(r["fwd_bwd_gflops"])
            if r["timed"] != "True":
                cells.append(f"{gflop} / not timed")
            elif float(r["fwd_bwd_median_ms"]) >= 1000:
                cells.append(f"{gflop} / {float(r['fwd_bwd_median_ms']) / 1000:.1f} s / {value(r['fwd_bwd_peak_mib'])}")
            else:
                cells.append(f"{gflop} / {float(r['fwd_bwd_median_ms']):.0f} ms / {value(r['fwd_bwd_peak_mib'])}")
        lines.append(cells)
    frames = list(dict.fromkeys(r["frames"] for r in tokenizer.rows))
    return markdown(["forward + backward per clip: GFLOPs / time / peak MiB", *(f"T = {t}" for t in frames)], lines)


def quality_table(quality: Result) -> str:
    lines = []
    for row in quality.rows:
        name = row["tokenizer"] + (" (recipe)" if row["recipe"] == "cotrain" else "")
        lines.append([name, row["seeds"].replace(" ", ", "), pm(row, "valid_tokens_per_clip", 1),
                      *(pm(row, f"{m}_pct") for m in ("t2v_r1", "t2v_r5", "t2v_r10", "v2t_r1", "v2t_r5", "v2t_r10"))])
    return markdown(["tokenizer", "seeds", "valid tokens / clip", "t2v R@1", "t2v R@5", "t2v R@10", "v2t R@1",
                     "v2t R@5", "v2t R@10"], lines)


def quality_segmenter(quality: Result) -> str:
    lines = []
    for row in quality.rows:
        for stage, label in (("segmenter", "after segmenter pre-training"), ("cotrained", "after co-training")):
            if row.get(f"{stage}_object_miou_mean", "") != "":
                lines.append([f"{row['tokenizer']}, {label}", row["seeds"].replace(" ", ", "),
                              pm(row, f"{stage}_object_miou", 3), pm(row, f"{stage}_found_pct", 1),
                              pm(row, f"{stage}_trajectories_per_clip", 2)])
    return markdown(["test split", "seeds", "object mIoU", "objects found (%)", "trajectories / clip"], lines)


def quality_layouts(*results: Result) -> str:
    lines = []
    for result in results:
        for row in result.rows:
            layout = f"`{row['layout']}` layout" if row["layout"] else "paper's layout"
            lines.append([f"{row['tokenizer']}, {layout}, {row['frames']} frames", row["seeds"].replace(" ", ", "),
                          *(pm(row, f"{m}_pct") for m in ("t2v_r1", "t2v_r5", "v2t_r1", "v2t_r5")),
                          pm(row, "cotrained_object_miou", 3), pm(row, "test_contrastive_loss", 3)])
    return markdown(["contrastive stage", "seeds", "t2v R@1", "t2v R@5", "v2t R@1", "v2t R@5", "co-trained object mIoU",
                     "test contrastive loss"], lines)


def tokens_table(tokens: Result) -> str:
    frames = list(dict.fromkeys(r["frames"] for r in tokens.rows))
    lines = []
    for model in dict.fromkeys(r["model"] for r in tokens.rows):
        mine = {r["frames"]: r for r in tokens.rows if r["model"] == model and r["objects"] == "all"}
        lines.append([NAMES[model], *(count(mine[t]["valid_tokens_per_clip"]) if t in mine else "-" for t in frames)])
    clips = tokens.rows[0]["clips"]
    return markdown([f"valid tokens per clip ({clips} test clips)", *(f"T = {t}" for t in frames)], lines)


def tokens_by_objects(tokens: Result) -> str:
    frames = list(dict.fromkeys(r["frames"] for r in tokens.rows))
    lines = []
    for objects in dict.fromkeys(r["objects"] for r in tokens.rows if r["objects"] != "all"):
        mine = {r["frames"]: r for r in tokens.rows if r["objects"] == objects}
        lines.append([objects, next(iter(mine.values()))["clips"],
                      *(number(mine[t]["valid_tokens_per_clip"], 1) if t in mine else "-" for t in frames)])
    changes = [by(tokens.rows, model="trajtok", objects="all", frames=t) for t in frames[1:]]
    lines.append([f"each clip's count against T = {frames[0]}, mean change", "all",
                  "-", *(f"{float(r['mean_change_from_first_T_pct']):+.1f}%" if r and r["mean_change_from_first_T_pct"]
                         else "-" for r in changes)])
    lines.append(["clips within +-10% of their count at T = " + frames[0], "all", "-",
                  *(f"{float(r['clips_within_10pct_pct']):.0f}%" if r and r["clips_within_10pct_pct"] else "-"
                    for r in changes)])
    return markdown(["TrajViT2: objects in the scene", "clips", *(f"T = {t}" for t in frames)], lines)


def adapter_table(adapter: Result) -> str:
    lines = []
    for row in adapter.rows:
        params = int(row["trainable_params"]) if row["trainable_params"] else None
        shown = "-" if params is None else (f"{params / 1000:.0f} K" if params >= 10_000 else str(params))
        name = row["probe"] + (f" (segmenter {row['segmenter']})" if row["segmenter"] else "")
        lines.append([name, f"`{row['config']}`", shown, pm(row, "top1_pct", 1),
                      row["top1_pct_by_seed"].replace(" ", ", ")])
    first = adapter.rows[0]
    return markdown(["probe", "config", "trainable parameters",
                     f"test top-1 % (task {first['task']}, seeds {first['seeds'].replace(' ', ', ')})", "per seed"], lines)


def clip_length(row: dict[str, str]) -> str:
    """A VLM row's clip length: its frames, and its 8-frame chunks where there are several."""
    return f"{row['frames']} frames" + (f" ({int(row['frames']) // 8} chunks)" if int(row["frames"]) > 8 else "")


def vlm_table(vlm: Result) -> str:
    lines = [[clip_length(row), row["connector"], row["steps"] or "-", pm(row, "llm_video_tokens_per_clip", 1),
              pm(row, "mc_accuracy_pct"), row["mc_accuracy_pct_by_seed"].replace(" ", ", "), pm(row, "exact_match_pct")]
             for row in vlm.rows]
    return markdown(["clips", "connector", "training steps", "LLM video tokens / clip", "multiple-choice accuracy %",
                     "per seed", "exact match %"], lines)


def vlm_types_table(vlm: Result) -> str:
    """Multiple-choice accuracy overall and per question type (the types the table has columns for, in its order),
    each with the answer prior of the same questions in brackets: the test split's, the same for every seed."""
    types = [m["type"] for m in (re.fullmatch(r"mc_accuracy_(?P<type>\w+)_pct_mean", c) for c in vlm.rows[0]) if m]

    def cell(row: dict[str, str], suffix: str) -> str:
        return f"{pm(row, f'mc_accuracy{suffix}_pct', 1)} ({number(row.get(f'prior_accuracy{suffix}_pct_mean'), 1)})"

    lines = [[clip_length(row), row["connector"], row["steps"] or "-", pm(row, "llm_video_tokens_per_clip", 1),
              cell(row, ""), *(cell(row, f"_{t}") for t in types)] for row in vlm.rows]
    return markdown(["clips", "connector", "training steps", "LLM video tokens / clip", "all types % (prior)",
                     *(f"{t} % (prior)" for t in types)], lines)


def image_table(images: Result) -> str:
    lines = [[row["data"], f"`{row['config']}`", row["steps"], row["seeds"].replace(" ", ", "),
              *(pm(row, f"{m}_pct") for m in ("t2v_r1", "t2v_r5", "t2v_r10", "v2t_r1", "v2t_r5", "v2t_r10"))]
             for row in images.rows]
    return markdown(["training data", "config", "steps", "seeds", "t2v R@1", "t2v R@5", "t2v R@10", "v2t R@1",
                     "v2t R@5", "v2t R@10"], lines)


def gpu_table(gpu: Result) -> str:
    lines = []
    for frames in sorted({int(r["T"]) for r in gpu.rows}):
        mine = [r for r in gpu.rows if r["T"] == str(frames)]
        for model in dict.fromkeys(r["model"] for r in mine):
            cells = [str(frames), model]
            for mode in ("train", "infer"):
                row, ref = by(mine, model=model, mode=mode), by(mine, model="vit3d", mode=mode, status="ok")
                if row is None or row["status"] != "ok":
                    cells += ["-", row["status"] if row else "-", "-"]
                    continue
                ratio = f" ({float(row['clips_per_s']) / float(ref['clips_per_s']):.2f}x)" if ref else ""
                cells += [row["batch"], f"{float(row['clips_per_s']):.1f}{ratio}", number(row["peak_mib"], 0)]
            lines.append(cells)
    return markdown(["T", "model", "train batch", "train clips/s (x ViT3D)", "train peak MiB", "infer batch",
                     "infer clips/s (x ViT3D)", "infer peak MiB"], lines)


def tokenizer_crossover(crossover: Result) -> str:
    lines = [[row["dim"], f"{row['heads']}x{row['head_dim']}", row["K"], row["patches"],
              *(value(row[f"{form}_fwd_bwd_median_ms"]) for form in ("segment", "dense", "absorbed")),
              f"{float(row['dense_fwd_bwd_median_ms']) / float(row['segment_fwd_bwd_median_ms']):.2f}"
              if row["timed"] == "True" else "-"] for row in crossover.rows]
    return markdown(["D", "heads", "K", "patches", "segment ms", "dense ms", "absorbed (rotary-free) ms",
                     "dense / segment"], lines)


def motion_set_table(motion: Result) -> str:
    """The motion test set's statistics, one column per clip length: each value as written (counts whole, the rest
    as rounded by the benchmark), and its share of the clips where it counts clips."""
    frames = sorted({int(r["frames"]) for r in motion.rows})
    lines = []
    for statistic in dict.fromkeys(r["statistic"] for r in motion.rows):
        cells = [statistic]
        for t in frames:
            row = by(motion.rows, frames=str(t), statistic=statistic)
            if row is None:
                cells.append("-")
                continue
            cells.append(row["value"] + (f" ({row['percent']}%)" if row["percent"] else ""))
        lines.append(cells)
    return markdown(["test split", *(f"T = {t}" for t in frames)], lines)


def motion_breakdown_table(breakdown: Result) -> str:
    """A checkpoint's recall on the motion test set at each group size, all captions (beside the looks-only oracle)
    then each phenomenon's, with the share of top-1 mistakes made inside the caption's own group."""
    lines = []
    for row in breakdown.rows:
        everything = row["captions"] == "all"
        oracle = (f"{number(row['looks_oracle_r1_pct'], 1)} / {number(row['looks_oracle_r10_pct'], 1)}"
                  if everything else "")
        lines.append([f"{row['group_size']} ({row['mean_group']})" if everything else "",
                      row["captions"], row["count"],
                      *(number(row[f"t2v_r{k}_pct"], 2) if row[f"t2v_r{k}_pct"] != "nan" else "-" for k in (1, 5, 10)),
                      oracle, number(row["top1_mistakes_in_own_group_pct"], 1)
                      if row["top1_mistakes_in_own_group_pct"] != "nan" else "-"])
    return markdown(["group size (mean)", "captions", "count", "t2v R@1", "t2v R@5", "t2v R@10",
                     "looks-only oracle R@1 / R@10", "top-1 mistakes in own group (%)"], lines)


def tokenizer_crossover_ranges(ranges: Result) -> str:
    lines = []
    for row in ranges.rows:
        low, high = row["log2_work_min"], row["log2_work_max"]
        lines.append([row["encoder"], row["segment_form"], f"2^{low}" if low == high else f"2^{low} to 2^{high}",
                      row["configurations"] or "-",
                      f"{float(row['dense_over_segment_min']):.2f} to {float(row['dense_over_segment_max']):.2f}"])
    return markdown(["trajectory encoder", "segment form", "dense work W = K n N heads head_dim", "configurations",
                     "dense time / segment time"], lines)


#: What ``quality_ablation`` can show of a ``benchmarks.quality`` table: (header, column, digits).
ABLATION_COLUMNS = (("segmenter object mIoU", "segmenter_object_miou", 3),
                    ("segmenter objects found (%)", "segmenter_found_pct", 1),
                    ("segmenter trajectories / clip", "segmenter_trajectories_per_clip", 2),
                    ("t2v R@1", "t2v_r1_pct", 2), ("t2v R@5", "t2v_r5_pct", 2), ("t2v R@10", "t2v_r10_pct", 2),
                    ("v2t R@1", "v2t_r1_pct", 2), ("v2t R@5", "v2t_r5_pct", 2), ("v2t R@10", "v2t_r10_pct", 2),
                    ("test contrastive loss", "test_contrastive_loss", 3))


def quality_ablation(result: Result) -> str:
    """TrajViT2 by the recipe on several layouts (``benchmarks.quality --layout NAME``): a row per layout and seeds,
    the layout named by its overlay or by the TrajTok options it sets; the columns some row measured."""
    rows = result.rows
    shown = [c for c in ABLATION_COLUMNS if any(r.get(f"{c[1]}_mean", "") != "" for r in rows)]
    minutes = any(r.get("fit_minutes_mean", "") != "" for r in rows)
    lines = [[f"`{row['layout']}`" if row["layout"] else "paper's layout", row["seeds"].replace(" ", ", "),
              *(pm(row, column, digits) for _, column, digits in shown),
              *([number(row.get("fit_minutes_mean", ""), 1)] if minutes else [])] for row in rows]
    return markdown(["layout", "seeds", *(header for header, _, _ in shown), *(["fit minutes"] if minutes else [])],
                    lines)


@dataclass
class Block:
    """A generated block: the results it reads (``(stem, default command)``) and how it renders them."""

    sources: tuple[tuple[str, str], ...]
    body: Callable[..., str]

    def render(self, results: Path) -> str:
        return section([load(results, stem, command) for stem, command in self.sources], self.sources, self.body)


DEMO = ("demo", "python -m benchmarks.demo")
FLOPS = ("flops", "python -m benchmarks.flops")
QUALITY = ("quality_minilm", "python -m benchmarks.quality")
TOKENS = ("tokens", "python -m benchmarks.tokens")
MOTION_QUALITY = ("quality_minilm_motion_calibration_16f",
                  "python -m benchmarks.quality --kinds trajtok --seeds 0 --data motion_calibration --frames 16")
#: A layout ablation: each layout an overlay ``configs/layouts/NAME.yaml``, each seed set a run.
ABLATION = "python -m benchmarks.quality --kinds trajtok --seeds S --layout NAME"
BLOCKS: dict[str, Block] = {
    "demo": Block((DEMO,), demo_tables),
    "demo-short": Block((DEMO,), demo_short),
    "summary": Block((QUALITY, TOKENS, FLOPS), summary_table),
    "flops-224": Block((FLOPS,), flops_224),
    "flops-cpu": Block((FLOPS,), flops_cpu),
    "flops-released": Block((FLOPS,), flops_released),
    "speed-released-cpu": Block((("speed_224_cpu", ("python -m benchmarks.speed --scales vit-b --frames 8 --cpu-224 "
                                  "--steps infer --batch 4 --out results/speed_224_cpu.json")),), speed_cpu_224),
    "speed-cpu": Block((("speed", "python -m benchmarks.speed --scales cpu"),), speed_cpu),
    "tokenizer-attention": Block((("tokenizer_speed_attention", "python -m benchmarks.tokenizer_speed"),),
                                 tokenizer_attention),
    "tokenizer-whole": Block((("tokenizer_speed_tokenizer", "python -m benchmarks.tokenizer_speed"),), tokenizer_whole),
    "tokenizer-crossover": Block((("tokenizer_speed_crossover", "python -m benchmarks.tokenizer_speed"),),
                                 tokenizer_crossover),
    "tokenizer-crossover-ranges": Block((("tokenizer_speed_crossover_ranges", "python -m benchmarks.tokenizer_speed"),),
                                        tokenizer_crossover_ranges),
    "quality": Block((QUALITY,), quality_table),
    "quality-segmenter": Block((QUALITY,), quality_segmenter),
    "quality-byte": Block((("quality_byte", "python -m benchmarks.quality --text-encoder byte"),), quality_table),
    "quality-layouts": Block((("quality_minilm_16f", "python -m benchmarks.quality --kinds trajtok --frames 16"),
                              ("quality_minilm_lite_16f", ("python -m benchmarks.quality --kinds trajtok --frames 16 "
                               "--layout lite"))), quality_layouts),
    "quality-context-pooling": Block((("quality_minilm_context_pooling", ABLATION),), quality_ablation),
    "quality-layouts-tried": Block((("quality_minilm_layouts_tried", ABLATION),), quality_ablation),
    "quality-pretrained-encoder": Block((("quality_minilm_pretrained_encoder", ("python -m benchmarks.quality --kinds "
                                         "trajtok --layout pretrained_encoder")),), quality_ablation),
    "tokens": Block((TOKENS,), tokens_table),
    "tokens-by-objects": Block((TOKENS,), tokens_by_objects),
    "adapter-probes": Block((("adapter_probes", "python -m benchmarks.adapter_probes"),), adapter_table),
    "vlm-connectors": Block((("vlm_connectors", ("python -m benchmarks.vlm_connectors --segmenter-checkpoint "
                              "runs/segmenter/checkpoints/last.ckpt")),), vlm_table),
    "vlm-connectors-motion": Block((("vlm_connectors_motion", ("python -m benchmarks.vlm_connectors --data motion "
                                     "--segmenter-checkpoint runs/segmenter/checkpoints/last.ckpt")),), vlm_types_table),
    "image-cotraining": Block((("image_cotraining", "python -m benchmarks.image_cotraining"),), image_table),
    "gpu-layouts": Block((("gpu_layouts", "python -m benchmarks.gpu_layouts"),), gpu_table),
    "motion-set": Block((("motion_set", "python -m benchmarks.motion_set"),), motion_set_table),
    "quality-tome": Block((("quality_minilm_tome", ("python -m benchmarks.quality --kinds tome tome_merging tome_plain "
                            "--out results/quality_minilm_tome.json")),), quality_table),
    "quality-motion": Block((MOTION_QUALITY,), quality_table),
    "quality-motion-segmenter": Block((MOTION_QUALITY,), quality_segmenter),
    "motion-breakdown": Block((("motion_breakdown", ("python -m benchmarks.motion_breakdown --ckpt "
                                "runs/benchmarks/quality/trajtok-motion_calibration-16f-minilm-seed0/clip_cotrain/checkpoints/"
                                "last.ckpt --config configs/clip_cotrain.yaml --config configs/synthetic/motion_calibration.yaml "
                                "--frames 16 --group-sizes 1,1 2,4 3,8 6,16")),), motion_breakdown_table),
}


# ------------------------------------------------------------------------------------------------- rendering
def render(text: str, results: Path = RESULTS) -> str:
    """``text`` with every generated block rebuilt from ``results``; an unknown block name is an error."""
    def replace(match: re.Match) -> str:
        name = match["name"]
        if name not in BLOCKS:
            raise KeyError(f"unknown results block {name!r}; known: {', '.join(BLOCKS)}")
        return f"{match[1]}{BLOCKS[name].render(results)}{match[4]}"

    return BLOCK.sub(replace, text)


def blocks_in(text: str) -> dict[str, str]:
    """The generated blocks of ``text``, by name: their text between the markers."""
    return {m["name"]: m["body"] for m in BLOCK.finditer(text)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file differs")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    stale = []
    for document in DOCUMENTS:
        text = document.read_text(encoding="utf-8")
        new = render(text, args.results)
        if new == text:
            continue
        if args.check:
            old = blocks_in(text)
            stale += [f"{document.relative_to(ROOT)}: {name}" for name, body in blocks_in(new).items() if old.get(name) != body]
        else:
            write_atomic(document, new)
            print(f"rewrote {document.relative_to(ROOT)}")
    if stale:
        print("generated blocks differ from what results/ gives (run python -m benchmarks.report):\n  "
              + "\n  ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
