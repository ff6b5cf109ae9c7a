"""Retrieval quality of TrajViT2 and its peers trained the same way on the default data. A benchmark.

    python benchmarks/quality.py [--epochs 2] [--seeds 0] [--kinds trajtok vit3d ...] [--out results/quality.json]

Each run is the real CLI, in its own folder under ``results/quality/``: ``trajtok fit`` on ``configs/clip.yaml``
(TrajViT2) or on it composed with ``configs/peers/<kind>.yaml`` (same data, head, text encoder, optimiser,
epochs, batch size and seed; only the tokenizer differs, and ToMe's merging blocks replace half the head's),
then ``trajtok test`` on the last checkpoint: text-to-video and video-to-text R@1/5/10 on the 128 test clips.
The default, 2 epochs, is a short CPU budget (about 2 minutes a run on 2 cores); ``--epochs 5`` is the demo's.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (
    KINDS,
    LABELS,
    RESULTS,
    ROOT,
    environment,
    logged_value,
    print_table,
    retrieval_metrics,
    run_trajtok,
    trainable_params,
    write_results,
)


def configs(kind: str) -> list[str]:
    paths = [ROOT / "configs" / "clip.yaml"] + ([] if kind == "trajtok" else [ROOT / "configs" / "peers" / f"{kind}.yaml"])
    return [arg for path in paths for arg in ("--config", str(path))]


def plot(results: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for kind in results["kinds"]:
        mine = [r for r in results["runs"] if r["kind"] == kind]
        ax.scatter([r["tokens"] for r in mine], [r["t2v_r5"] for r in mine], label=LABELS[kind], s=40)
    ax.set(xlabel="valid tokens per clip (test)", ylabel="text-to-video R@5", xscale="log",
           title=f"retrieval after {results['epochs']} epochs on the default data")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    runs = []
    for seed in args.seeds:
        for kind in args.kinds:
            folder = RESULTS / "quality" / f"{kind}-seed{seed}"
            shutil.rmtree(folder, ignore_errors=True)  # test must read this fit's checkpoint
            folder.mkdir(parents=True)
            common = [*configs(kind), f"--seed_everything={seed}"]
            start = time.perf_counter()
            fit = run_trajtok(["fit", *common, f"--trainer.max_epochs={args.epochs}"], cwd=folder)
            minutes = (time.perf_counter() - start) / 60
            test = run_trajtok(["test", *common, "--ckpt_path=runs/clip/checkpoints/last.ckpt"], cwd=folder)
            run = {"kind": kind, "seed": seed, "epochs": args.epochs, "fit_minutes": round(minutes, 1),
                   "trainable_params": trainable_params(fit), "tokens": logged_value(test, "test/tokens"),
                   **retrieval_metrics(test)}
            print(run, file=sys.stderr, flush=True)
            runs.append(run)

    table = []
    for kind in args.kinds:
        mine = [r for r in runs if r["kind"] == kind]

        def mean(key: str, mine=mine) -> float:
            return statistics.mean(r[key] for r in mine)

        table.append([LABELS[kind], f"{mine[0]['trainable_params'] / 1e6:.2f}M", f"{mean('tokens'):.1f}",
                      *(f"{mean(k):.2f}" for k in ("t2v_r1", "t2v_r5", "v2t_r1", "v2t_r5")),
                      f"{mean('fit_minutes'):.1f}"])
    print_table(f"test retrieval after {args.epochs} epochs, mean over seeds {args.seeds}",
                ["tokenizer", "params", "tokens/clip", "t2v R@1", "t2v R@5", "v2t R@1", "v2t R@5", "fit min"], table)
    write_results("quality", {"env": environment(), "epochs": args.epochs, "seeds": args.seeds,
                              "kinds": args.kinds, "runs": runs}, plot, args.out)


if __name__ == "__main__":
    main()
