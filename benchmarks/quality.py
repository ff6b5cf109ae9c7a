"""Retrieval quality of TrajViT2 and its peers trained the same way on the default data. A benchmark.

    python -m benchmarks.quality [--epochs 5] [--seeds 0 1 2] [--kinds trajtok vit3d ...] [--jobs 1]
                                [--text-encoder minilm|byte] [--trajtok-recipe cotrain|scratch] [--layout lite]
                                [--frames F] [--data motion] [--out PATH]

Each run is the real CLI (``benchmarks.common.fit_and_test``, in its own folder under ``runs/benchmarks/quality/``,
so runs can go ``--jobs`` at a time): ``trajtok fit`` then ``trajtok test`` of the last checkpoint, text-to-video and
video-to-text R@1/5/10 on the 128 test clips, read back from the runs' metrics.csv. The peers fit
``configs/clip.yaml`` composed with ``configs/peers/<kind>.yaml``: same data, head, text encoder, optimiser,
epochs, batch size and seed; only the tokenizer differs (and ToMe's merging blocks replace half the head's).
TrajViT2 follows the paper's recipe (``--trajtok-recipe cotrain``, the default): segmenter pre-training
(``configs/segmenter.yaml``, its own seed), then ``configs/clip_cotrain.yaml`` warm-started from it, contrastive +
0.5 focal + 1.0 Dice, for the same epochs as the peers; ``scratch`` fits ``configs/clip.yaml`` alone. The
segmenter's test quality (object mIoU, trajectories found) is recorded for each seed.
``--data NAME`` composes the data overlay ``configs/synthetic/NAME.yaml`` (e.g. ``motion``, the motion test set)
into every run, both stages of TrajViT2's recipe included. Kind ``tome_plain`` is ToMe with
``proportional_attention=false`` (no ``log(size)`` bias in any block) and ``tome_merging`` with it in the merging
blocks only (the head's blocks attend plainly), beside ``tome`` with it in every block.
``--text-encoder byte`` swaps the configs' pretrained MiniLM for the byte-level encoder trained from scratch.
``--layout NAME`` composes ``configs/layouts/NAME.yaml`` into every TrajViT2 run (both stages of the recipe).
``--frames F`` trains and tests the contrastive stage on clips of F frames (the synthetic videos have 16); the
segmenter pre-trains on its config's 8, as objects are learnt per frame (a layout that changes only long clips,
such as ``lite``'s capped context, then starts from the paper layout's segmenter, seed for seed).
Reports the mean and standard error over seeds: ``results/quality_<text encoder>[_<layout>][_<F>f].csv``, one row
per tokenizer (recall in percent, segmentation quality as fractions, trainable parameters, fit minutes), and the
JSON beside it with every seed's run.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from benchmarks.common import (
    KINDS,
    LABELS,
    LOG_TRAINABLE_PARAMS,
    RESULTS,
    RETRIEVAL,
    ROOT,
    RUNS,
    SEGMENTATION,
    environment,
    fit_and_test,
    fmt_mean_se,
    mean_se_columns,
    print_table,
    run_parallel,
    stage_metrics,
    write_results,
)

TEXT_ENCODERS = {"minilm": "heads.MiniLMTextEncoder", "byte": "heads.ByteTextEncoder"}


#: Kinds that are a peer config with options: ``kind -> (configs/peers/<name>, extra options)``.
VARIANTS = {"tome_plain": ("tome", ["--model.tokenizer.init_args.proportional_attention=false"]),
            "tome_merging": ("tome", ["--model.tokenizer.init_args.proportional_attention=merging"])}
QUALITY_KINDS = (*KINDS, *VARIANTS)


def run_one(kind: str, seed: int, epochs: int, text_encoder: str, recipe: str, layout: str | None = None,
            frames: int | None = None, data: str | None = None) -> dict:
    """Fit and test one tokenizer at one seed in fresh folders; the run's numbers."""
    layout = layout if kind == "trajtok" else None
    folder = RUNS / "quality" / (f"{kind}{f'-{layout}' if layout else ''}{f'-{data}' if data else ''}"
                                 f"{f'-{frames}f' if frames else ''}-{text_encoder}-seed{seed}")
    data_overlay = [f"synthetic/{data}"] if data else []
    overlay = [f"layouts/{layout}"] if layout else []
    shutil.rmtree(folder, ignore_errors=True)
    seeded = [f"--seed_everything={seed}"]
    run = {"kind": kind, "seed": seed, "epochs": epochs, "text_encoder": text_encoder, "layout": layout, "frames": frames,
           "data": data}
    warm_start = []
    if kind == "trajtok" and recipe == "cotrain":
        stage1 = fit_and_test(["segmenter", *overlay, *data_overlay], folder / "segmenter", seeded)
        run["segmenter"] = stage_metrics(stage1["test"], SEGMENTATION, optional=("seg_background_iou",))
        run["segmenter_minutes"] = round(stage1["fit_minutes"] + stage1["test_minutes"], 1)
        configs = ["clip_cotrain", *overlay, *data_overlay]
        warm_start = [f"--model.tokenizer_checkpoint={folder / 'segmenter' / 'checkpoints' / 'last.ckpt'}"]
    else:
        peer, options = VARIANTS.get(kind, (kind, []))
        configs = ["clip", *(overlay if kind == "trajtok" else [f"peers/{peer}"]), *data_overlay]
        warm_start = options
    common = [*seeded, *warm_start, f"--model.head.init_args.text_encoder={TEXT_ENCODERS[text_encoder]}"]
    if frames:
        common.append(f"--data.init_args.clip.num_frames={frames}")
    done = fit_and_test(configs, folder / configs[0], common, fit=[f"--trainer.max_epochs={epochs}", LOG_TRAINABLE_PARAMS])
    run["fit_minutes"] = done["fit_minutes"]
    test = done["test"]
    run.update(trainable_params=int(done["fit"]["trainable_params"]), **stage_metrics(test, ("tokens", *RETRIEVAL)),
               **stage_metrics(test, (), optional=("contrastive", "loss")))
    if kind == "trajtok" and recipe == "cotrain":
        run["cotrained"] = stage_metrics(test, SEGMENTATION, optional=("seg_background_iou",))
    print(run, file=sys.stderr, flush=True)
    return run


def table_rows(runs: list[dict], kinds: list[str], recipe: str) -> list[dict]:
    """One row per tokenizer: its settings and the mean and standard error over seeds of what it measured."""
    rows = []
    for kind in kinds:
        mine = [r for r in runs if r["kind"] == kind]
        if not mine:
            continue
        first = mine[0]
        row = {"tokenizer": LABELS[kind], "kind": kind, "recipe": recipe if kind == "trajtok" else "contrastive",
               "layout": first["layout"] or "", "data": first.get("data") or "default",
               "text_encoder": first["text_encoder"], "frames": first["frames"] or 8,
               "epochs": first["epochs"], "seeds": " ".join(str(r["seed"]) for r in mine),
               "trainable_params": first["trainable_params"],
               **mean_se_columns("valid_tokens_per_clip", [r["tokens"] for r in mine])}
        for metric in ("t2v_r1", "t2v_r5", "t2v_r10", "v2t_r1", "v2t_r5", "v2t_r10"):
            row.update(mean_se_columns(f"{metric}_pct", [r[metric] for r in mine]))
        losses = [r.get("contrastive", r.get("loss")) for r in mine]
        if all(v is not None for v in losses):
            row.update(mean_se_columns("test_contrastive_loss", losses))
        for stage in ("segmenter", "cotrained"):
            if all(stage in r for r in mine):
                row.update(mean_se_columns(f"{stage}_object_miou", [r[stage]["seg_miou"] for r in mine]))
                row.update(mean_se_columns(f"{stage}_found_pct", [100 * r[stage]["seg_found"] for r in mine]))
                row.update(mean_se_columns(f"{stage}_trajectories_per_clip",
                                           [r[stage]["seg_pred_trajectories"] for r in mine]))
        row["fit_minutes_mean"] = round(sum(r["fit_minutes"] for r in mine) / len(mine), 1)
        rows.append(row)
    return rows


def plot(results: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for kind in results["kinds"]:
        mine = [r for r in results["runs"] if r["kind"] == kind]
        ax.scatter([r["tokens"] for r in mine], [r["t2v_r5"] for r in mine], label=LABELS[kind], s=40)
    ax.set(xlabel="valid tokens per clip (test)", ylabel="text-to-video R@5", xscale="log",
           title=f"retrieval after {results['epochs']} epochs on the default data ({results['text_encoder']} text)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(QUALITY_KINDS))
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (1 on a 2-core machine)")
    parser.add_argument("--text-encoder", choices=list(TEXT_ENCODERS), default="minilm")
    parser.add_argument("--trajtok-recipe", choices=["cotrain", "scratch"], default="cotrain")
    parser.add_argument("--layout", choices=sorted(p.stem for p in (ROOT / "configs" / "layouts").glob("*.yaml")),
                        help="a configs/layouts/ overlay for TrajViT2's runs (default: the configs' own layout)")
    parser.add_argument("--frames", type=int, default=None,
                        help="clip length of the contrastive stage, train and test (default: the configs' 8)")
    parser.add_argument("--data", choices=sorted(p.stem for p in (ROOT / "configs" / "synthetic").glob("*.yaml")),
                        help="a configs/synthetic/ data overlay for every run (default: the configs' own data)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    jobs = [lambda kind=kind, seed=seed: run_one(kind, seed, args.epochs, args.text_encoder, args.trajtok_recipe,
                                                 args.layout, args.frames, args.data)
            for seed in args.seeds for kind in args.kinds]
    runs = run_parallel(jobs, args.jobs)

    table = []
    for kind in args.kinds:
        mine = [r for r in runs if r["kind"] == kind]
        table.append([LABELS[kind], f"{mine[0]['trainable_params'] / 1e6:.2f}M",
                      fmt_mean_se([r["tokens"] for r in mine], 1),
                      *(fmt_mean_se([r[k] for r in mine]) for k in ("t2v_r1", "t2v_r5", "t2v_r10", "v2t_r1", "v2t_r5")),
                      fmt_mean_se([r["fit_minutes"] for r in mine], 1)])
    print_table(f"test retrieval after {args.epochs} epochs ({args.text_encoder} text encoder, TrajViT2 "
                f"{args.trajtok_recipe}{f', layout {args.layout}' if args.layout else ''}"
                f"{f', {args.frames} frames' if args.frames else ''}{f', data {args.data}' if args.data else ''}), "
                f"mean ± standard error over seeds {args.seeds}",
                ["tokenizer", "params", "tokens/clip", "t2v R@1", "t2v R@5", "t2v R@10", "v2t R@1", "v2t R@5",
                 "fit min"], table)
    segmenters = [r["segmenter"] for r in runs if "segmenter" in r]
    if segmenters:
        print_table("segmenter pre-training (configs/segmenter.yaml), test quality over the same seeds",
                    ["object mIoU", "found", "background IoU", "predicted / clip", "target / clip"],
                    [[fmt_mean_se([m[k] for m in segmenters], 3) for k in
                      ("seg_miou", "seg_found", "seg_background_iou", "seg_pred_trajectories", "seg_target_trajectories")]])
    write_results("quality", {"env": environment(), "epochs": args.epochs, "seeds": args.seeds,
                              "kinds": args.kinds, "text_encoder": args.text_encoder,
                              "trajtok_recipe": args.trajtok_recipe, "layout": args.layout, "frames": args.frames,
                              "data": args.data,
                              "runs": runs}, plot,
                  args.out or RESULTS / f"quality_{args.text_encoder}{f'_{args.layout}' if args.layout else ''}"
                                        f"{f'_{args.data}' if args.data else ''}"
                                        f"{f'_{args.frames}f' if args.frames else ''}.json",
                  table=table_rows(runs, args.kinds, args.trajtok_recipe))


if __name__ == "__main__":
    main()
