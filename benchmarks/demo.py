"""What ``make demo`` prints, as a table: TrajViT2 by the paper's recipe on the embedded synthetic data.

    python -m benchmarks.demo [--out results/demo.json]

The same two stages as ``make demo``, each through the real CLI (``benchmarks.common.fit_and_test``, in
``runs/benchmarks/demo/``): stage 1, segmenter pre-training (``configs/segmenter.yaml``), then stage 2, TrajViT2
co-trained from stage 1's last checkpoint (``configs/clip_cotrain.yaml``: contrastive + 0.5 focal + 1.0 Dice), each
tested from its ``last.ckpt`` on the synthetic test split. The configs' own seed (0), epochs and sizes; nothing is
overridden but the run folders and the checkpoint stage 2 starts from. Writes ``results/demo.csv``, one row per
stage: segmentation quality on the test split (object mIoU and background IoU as fractions, objects found in
percent, predicted and target trajectories per clip) and, for stage 2, text-to-video and video-to-text retrieval
(recall in percent, median and mean rank), with the test clips' count; and the JSON beside it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.common import (
    RESULTS,
    RETRIEVAL,
    RUNS,
    SEGMENTATION,
    environment,
    fit_and_test,
    stage_metrics,
    write_results,
)

STAGES = {"1: segmenter pre-training": "segmenter", "2: TrajViT2 co-trained from it": "clip_cotrain"}


def stage_row(stage: str, config: str, test: dict[str, float], test_clips: int) -> dict:
    seg = stage_metrics(test, SEGMENTATION, optional=("seg_background_iou",))
    row = {"stage": stage, "config": f"configs/{config}.yaml", "test_clips": test_clips,
           "object_miou": round(seg["seg_miou"], 4), "objects_found_pct": round(100 * seg["seg_found"], 2),
           "background_iou": round(seg["seg_background_iou"], 4) if "seg_background_iou" in seg else None,
           "trajectories_per_clip": round(seg["seg_pred_trajectories"], 3),
           "target_trajectories_per_clip": round(seg["seg_target_trajectories"], 3)}
    retrieval = stage_metrics(test, (), optional=RETRIEVAL)
    for name in RETRIEVAL:
        column = name.replace("_medr", "_median_rank").replace("_meanr", "_mean_rank")
        column = column if column.endswith("rank") else f"{column}_pct"
        row[column] = round(retrieval[name], 2) if name in retrieval else None
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "demo.json")
    args = parser.parse_args()
    from datamodules import SyntheticOptions

    test_clips = SyntheticOptions().test
    rows, runs, previous = [], {}, None
    for stage, config in STAGES.items():
        warm_start = [f"--model.tokenizer_checkpoint={previous}"] if previous else []
        run_dir = RUNS / "demo" / config
        runs[config] = fit_and_test([config], run_dir, warm_start)
        rows.append(stage_row(stage, config, runs[config]["test"], test_clips))
        print(rows[-1], flush=True)
        previous = run_dir / "checkpoints" / "last.ckpt"
    write_results("demo", {"env": environment(), "runs": runs}, out=args.out, table=rows)


if __name__ == "__main__":
    main()
