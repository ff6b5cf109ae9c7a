"""Valid tokens per clip against the number of objects and against T, on the default data. A benchmark.

    python -m benchmarks.tokens [--checkpoint PATH] [--frames 8 16 32 64] [--clips 64] [--out results/tokens.json]

TrajTok's claim is that its token count follows the content, not the duration. This reads the test clips of the
embedded default data (its 64-frame variant: 8 to 64 frames sample the same scenes) through a trained TrajTok
(the ``tokenizer.*`` weights of a TrajViT2 checkpoint, by default that of ``benchmarks/quality.py``'s first
seed or of ``make demo``, both the paper's recipe) and, for reference, through the peers (whose counts need no training: fixed, or RLT's rule).
Reports the mean count per T, the change of each clip's count between the shortest and the other T (the share
of clips within +-10%), and the mean count by number of objects in the scene. Writes ``results/tokens.csv``: one row
per tokenizer and T over all clips (``objects`` "all"; for TrajViT2 also the mean change of each clip's count from
the shortest T and the share of clips within +-10% of it), and one per number of objects and T for TrajViT2; and the
JSON beside it with every clip's count.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

from benchmarks.common import (
    KINDS,
    LABELS,
    ROOT,
    RUNS,
    default_clips,
    environment,
    print_table,
    write_results,
)
from trajtok.checkpoint import load_tokenizer_weights
from trajtok.tokenizer import create_tokenizer

CHECKPOINTS = (RUNS / "quality" / "trajtok-minilm-seed0" / "clip_cotrain" / "checkpoints" / "last.ckpt",
               ROOT / "runs" / "clip_cotrain" / "checkpoints" / "last.ckpt",
               ROOT / "runs" / "clip" / "checkpoints" / "last.ckpt")


def tokenizers(checkpoint: Path) -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    models = {kind: create_tokenizer("tiny", kind) for kind in KINDS}
    load_tokenizer_weights(models["trajtok"], str(checkpoint))
    return {kind: model.eval() for kind, model in models.items()}


def plot(results: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, (by_t, by_objects) = plt.subplots(1, 2, figsize=(11, 4.2))
    for kind in KINDS:
        means = [results["mean_tokens"][kind][str(T)] for T in results["frames"]]
        by_t.plot(results["frames"], means, "o-", label=LABELS[kind])
    by_t.set(xlabel="T (frames)", ylabel="valid tokens per clip (mean)", xscale="log", yscale="log",
             title="token count vs clip length, same scenes")
    by_t.set_xticks(results["frames"], [str(t) for t in results["frames"]])
    by_t.minorticks_off()
    by_t.legend(fontsize=8)
    for T in results["frames"]:
        counts = results["trajtok_by_objects"][str(T)]
        objects = sorted(counts, key=int)
        by_objects.plot([int(o) for o in objects], [counts[o] for o in objects], "o-", label=f"T={T}")
    by_objects.set(xlabel="objects in the scene", ylabel="TrajTok valid tokens (mean)",
                   title="TrajTok token count vs content")
    by_objects.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="a TrajViT2 checkpoint (configs/clip_cotrain.yaml or clip.yaml); default the first of: " +
                        ", ".join(str(p.relative_to(ROOT)) for p in CHECKPOINTS))
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    checkpoint = args.checkpoint or next((p for p in CHECKPOINTS if p.exists()), None)
    if checkpoint is None or not checkpoint.exists():
        parser.error(f"no trained TrajViT2 checkpoint at {args.checkpoint or CHECKPOINTS}: run "
                     "`python -m benchmarks.quality` or `make demo` first, or pass --checkpoint")

    models = tokenizers(checkpoint)
    counts: dict[str, dict[int, list[int]]] = {kind: {} for kind in KINDS}
    objects = None
    for T in args.frames:
        video, rows = default_clips(T, args.clips)
        objects = [len(r["objects"]) for r in rows]
        with torch.no_grad():
            for kind, model in models.items():
                counts[kind][T] = model(video).num_valid.tolist()
        print(f"  T={T} done", file=sys.stderr, flush=True)

    first = args.frames[0]
    trajtok = counts["trajtok"]
    change = {T: [b / a - 1 for a, b in zip(trajtok[first], trajtok[T])] for T in args.frames[1:]}
    by_objects = {T: {n: statistics.mean(c for c, o in zip(trajtok[T], objects) if o == n)
                      for n in sorted(set(objects))} for T in args.frames}
    results = {
        "env": environment(), "checkpoint": str(checkpoint), "frames": args.frames, "clips": args.clips,
        "objects": objects, "counts": {k: {str(T): c for T, c in v.items()} for k, v in counts.items()},
        "mean_tokens": {k: {str(T): statistics.mean(c) for T, c in v.items()} for k, v in counts.items()},
        "trajtok_change_from_first": {str(T): {"mean": statistics.mean(c),
                                               "within_10pct": sum(abs(x) <= 0.1 for x in c) / len(c)}
                                      for T, c in change.items()},
        "trajtok_by_objects": {str(T): {str(n): m for n, m in v.items()} for T, v in by_objects.items()},
    }

    print_table(f"valid tokens per clip (mean over {args.clips} test clips of the default data)",
                ["tokenizer", *(f"T={T}" for T in args.frames)],
                [[LABELS[k], *(f"{results['mean_tokens'][k][str(T)]:.1f}" for T in args.frames)] for k in KINDS])
    print_table(f"TrajTok: each clip's count at T vs at T={first}",
                ["T", "mean change", "clips within +-10%"],
                [[str(T), f"{100 * v['mean']:+.1f}%", f"{100 * v['within_10pct']:.0f}%"]
                 for T, v in results["trajtok_change_from_first"].items()])
    print_table("TrajTok: mean valid tokens by objects in the scene",
                ["objects", "clips", *(f"T={T}" for T in args.frames)],
                [[str(n), str(objects.count(n)), *(f"{by_objects[T][n]:.1f}" for T in args.frames)]
                 for n in sorted(set(objects))])
    table = []
    for kind in KINDS:
        for T in args.frames:
            row = {"tokenizer": LABELS[kind], "model": kind, "objects": "all", "clips": len(objects), "frames": T,
                   "valid_tokens_per_clip": round(results["mean_tokens"][kind][str(T)], 3)}
            if kind == "trajtok":
                change = results["trajtok_change_from_first"].get(str(T))
                row["mean_change_from_first_T_pct"] = round(100 * change["mean"], 2) if change else None
                row["clips_within_10pct_pct"] = round(100 * change["within_10pct"], 1) if change else None
            table.append(row)
    table += [{"tokenizer": LABELS["trajtok"], "model": "trajtok", "objects": str(n), "clips": objects.count(n),
               "frames": T, "valid_tokens_per_clip": round(by_objects[T][n], 3)}
              for n in sorted(set(objects)) for T in args.frames]
    write_results("tokens", results, plot, args.out, table=table)


if __name__ == "__main__":
    main()
