"""TrajVLM vs the patch-pooling connector on the synthetic QA set, short (8 frames) and long (64 frames) clips.

    python benchmarks/vlm_connectors.py --segmenter-checkpoint runs/segmenter/checkpoints/last.ckpt
                                        [--seed 0] [--epochs 1] [--out results/vlm_connectors.json]

Each run is the real CLI (``trajtok fit`` then ``trajtok test`` on the last checkpoint) of ``configs/vlm.yaml``
(TrajTok with the given pre-trained segmenter, frozen) and ``configs/vlm_patch.yaml`` (the same frozen features
average-pooled to 10 tokens per 8-frame chunk): same LM, connector, data, optimiser, steps and seed. Short clips
read the default set (16-frame videos, 8 frames sampled); long clips a 64-frame version of the synthetic set
(objects cross the same distance over 4x the frames), 256 / 32 / 64 clips, read at 64 frames = 8 chunks.
Reported: multiple-choice accuracy (the most likely option), exact match of greedy answers, and the LLM video
tokens per clip (valid tokens + one separator per chunk), read from the runs' CSV logs. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import run_trajtok

CONNECTORS = {"TrajVLM": "vlm", "patch pooling": "vlm_patch"}
LENGTHS = {
    "short (8 frames)": ["--data.init_args.num_frames=8"],
    "long (64 frames)": ["--data.init_args.num_frames=64", "--data.init_args.synthetic_frames=64",
                         "--data.init_args.synthetic_train=256", "--data.init_args.synthetic_val=32",
                         "--data.init_args.synthetic_test=64", "--data.init_args.batch_size=8"],
}
METRICS = ("mc_accuracy", "exact_match", "llm_video_tokens")


def logged(config: str, version: str) -> dict[str, float]:
    """The last logged value of each column of a run's CSVLogger file."""
    values: dict[str, float] = {}
    with open(ROOT / "runs" / config / "logs" / version / "metrics.csv", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            values.update({k: float(v) for k, v in row.items() if v not in ("", None)})
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--segmenter-checkpoint", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "results" / "vlm_connectors.json"))
    args = parser.parse_args()

    rows = []
    for length, data_args in LENGTHS.items():
        for connector, config in CONNECTORS.items():
            tag = f"bench-{length.split()[0]}-seed{args.seed}"
            common = ["--config", f"configs/{config}.yaml", f"--seed_everything={args.seed}", *data_args]
            fit = [*common, f"--trainer.max_epochs={args.epochs}", "--trainer.limit_val_batches=4",
                   f"--trainer.logger.init_args.version={tag}"]
            if connector == "TrajVLM":
                fit += [f"--model.tokenizer.init_args.segmenter_checkpoint={args.segmenter_checkpoint}",
                        "--model.tokenizer.init_args.freeze_segmenter=true"]
            # Test must read this fit's last.ckpt, never one left by an earlier run.
            shutil.rmtree(ROOT / "runs" / config / "checkpoints", ignore_errors=True)
            start = time.perf_counter()
            run_trajtok(["fit", *fit])
            minutes = (time.perf_counter() - start) / 60
            run_trajtok(["test", *common, f"--ckpt_path=runs/{config}/checkpoints/last.ckpt",
                 f"--trainer.logger.init_args.version={tag}-test"])
            train = logged(config, tag)
            test = logged(config, f"{tag}-test")
            row = {"clips": length, "connector": connector, "seed": args.seed, "epochs": args.epochs,
                   "steps": int(train["step"]) + 1, "fit_minutes": round(minutes, 1),
                   **{m: round(test[f"test/{m}"], 2) for m in METRICS}}
            print(row, flush=True)
            rows.append(row)

    print(f"\n{'clips':<18}{'connector':<15}{'MC acc':>8}{'exact':>8}{'LLM video tokens':>18}")
    for r in rows:
        print(f"{r['clips']:<18}{r['connector']:<15}{r['mc_accuracy']:>8.2f}{r['exact_match']:>8.2f}"
              f"{r['llm_video_tokens']:>18.1f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"segmenter_checkpoint": args.segmenter_checkpoint, "runs": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
