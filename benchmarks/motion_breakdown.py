"""What a trained video-text model finds on the motion test set, and what it misses. A benchmark.

    python -m benchmarks.motion_breakdown --ckpt RUN/checkpoints/last.ckpt --config configs/clip_cotrain.yaml \
        --config configs/synthetic/motion.yaml [--frames 16] [--group-sizes 2,4 3,8 6,16] [--out PATH]

The checkpoint is loaded strictly into the model its configs build (the configs it was fitted with), and for each
``--group-sizes`` pair the motion test split is planned and rendered with that ``synthetic.motion.group_size``,
everything else as the configs say. Every caption of every test clip is ranked against all test clips, as
``trajtok test`` does, and the ranks are summarised:

- text-to-video R@1/5/10 of all captions, beside the expected R@k of the oracle that reads only the objects'
  looks (``datamodules.synthetic_motion.expected_recall``): what no sense of time can beat;
- where each top-1 mistake lies: in the caption's own contrast group (the looks were right, the clip's course
  over time was not) or in another group (the looks were wrong too);
- R@1 of the captions that tell each phenomenon (identical-looking objects named by place, a turn, an object
  passing behind or in front of another, a camera pan, an object that stays still), so the captions a model
  misses can be named.

The group size is the set's main difficulty knob (a model blind to time reaches the oracle's R@1, the number of
groups over the number of clips), so the rows show where a trained model lands at each size. Writes
``results/motion_breakdown.csv`` (one row per group size and caption subset) and the JSON beside it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from unittest import mock

import torch

from benchmarks.common import RESULTS, environment, print_table, write_results
from datamodules.synthetic_motion import MotionClip, expected_recall, looks_key, plan_split

#: The caption subsets R@1 is reported for: a name and the test of a clip's plan that puts its captions in it.
PHENOMENA = {
    "identical-looking objects": lambda clip: any(clip.facts.places),
    "a turn": lambda clip: any(len(o.legs) == 2 for o in clip.objects),
    "passes behind": lambda clip: any(e.behind for e in clip.facts.interactions),
    "passes in front of": lambda clip: any(not e.behind for e in clip.facts.interactions),
    "a camera pan": lambda clip: clip.pan is not None,
    "an object stays still": lambda clip: any(not o.legs for o in clip.objects),
}


def build(configs: list[str], ckpt: Path, overrides: list[str]):
    """The module and datamodule the configs make, with the checkpoint's weights (all of them: strict)."""
    from trajtok.cli import TrajTokCLI, with_bases

    args = [arg for config in configs for arg in ("--config", config)]
    with mock.patch.object(sys, "argv", sys.argv[:1]):  # this benchmark's own options are not the CLI's
        cli = TrajTokCLI(args=with_bases([*args, "--model.tokenizer_checkpoint=null", *overrides]), run=False)
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    cli.model.load_state_dict(state, strict=True)
    return cli.model.eval(), cli.datamodule


@torch.inference_mode()
def caption_ranks(model, datamodule) -> tuple[torch.Tensor, list[int], list[str]]:
    """Text-to-video rank (0 = first) of every caption of the test split, the index of each caption's clip, and
    each clip's video file stem (its key), in the data set's order."""
    datamodule.setup("test")
    videos, video_index, texts, text_index = [], [], [], []
    for batch in datamodule.test_dataloader():
        videos.append(model.head.encode_video(model(batch["video"])))
        video_index.append(batch["index"])
        captions = [caption for clip in batch["captions"] for caption in clip]
        texts.append(model.head.encode_text(captions))
        text_index += [int(i) for i, clip in zip(batch["index"], batch["captions"], strict=True) for _ in clip]
    order = torch.cat(video_index).argsort()
    videos = torch.cat(videos)[order]  # row i: the data set's clip i
    similarity = torch.cat(texts) @ videos.T
    target = torch.tensor(text_index)
    own = similarity.gather(1, target[:, None])
    ranks = (similarity > own).sum(dim=1)
    top1 = similarity.argmax(dim=1)
    keys = [Path(record.video).stem for record in datamodule.datasets["test"].records]
    return torch.stack([ranks, top1], dim=1), text_index, keys


def summarise(ranks: torch.Tensor, text_index: list[int], keys: list[str], plan: list[MotionClip],
              group_size: tuple[int, int]) -> list[dict]:
    """The rows of one group size: all captions (with the oracle and where the top-1 mistakes lie), then each
    phenomenon's captions."""
    by_key = {clip.key: clip for clip in plan}
    clips = [by_key[keys[i]] for i in text_index]
    rank, top1 = ranks[:, 0], ranks[:, 1]
    groups = [by_key[key].group for key in keys]
    oracle = expected_recall([looks_key(c) for c in plan])
    wrong = rank > 0
    in_group = torch.tensor([groups[int(t)] == c.group for t, c in zip(top1, clips, strict=True)])
    sizes = [sum(g == c.group for g in groups) for c in plan]

    def recall(mask: torch.Tensor, k: int) -> float:
        return round(100.0 * float((rank[mask] < k).float().mean()), 2) if mask.any() else float("nan")

    common = {"group_size": f"{group_size[0]}-{group_size[1]}", "mean_group": round(sum(sizes) / len(sizes), 2)}
    everything = torch.ones_like(wrong)
    rows = [{**common, "captions": "all", "count": len(clips),
             **{f"t2v_r{k}_pct": recall(everything, k) for k in (1, 5, 10)},
             **{f"looks_oracle_r{k}_pct": round(oracle[k], 2) for k in (1, 5, 10)},
             "top1_mistakes_in_own_group_pct": round(100.0 * float(in_group[wrong].float().mean()), 1)
             if wrong.any() else float("nan")}]
    for name, test in PHENOMENA.items():
        mask = torch.tensor([test(c) for c in clips])
        rows.append({**common, "captions": name, "count": int(mask.sum()), "t2v_r1_pct": recall(mask, 1),
                     "t2v_r5_pct": recall(mask, 5), "t2v_r10_pct": recall(mask, 10),
                     "top1_mistakes_in_own_group_pct": round(100.0 * float(in_group[wrong & mask].float().mean()), 1)
                     if (wrong & mask).any() else float("nan")})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", type=Path, required=True, help="a checkpoint the configs' model was fitted to")
    parser.add_argument("--config", action="append", required=True, help="the configs it was fitted with, in order")
    parser.add_argument("--frames", type=int, default=None, help="frames the model reads (default: the configs')")
    parser.add_argument("--group-sizes", nargs="+", default=["3,8"],
                        help="synthetic.motion.group_size values, each 'least,most'")
    parser.add_argument("--out", type=Path, default=RESULTS / "motion_breakdown.json")
    args = parser.parse_args(argv)
    if not args.ckpt.is_file():
        parser.error(f"--ckpt {args.ckpt}: no such file")
    table = []
    for text in args.group_sizes:
        least, most = (int(v) for v in text.split(","))
        overrides = [f"--data.init_args.synthetic.motion.group_size=[{least}, {most}]",
                     "--data.init_args.load_pseudo_labels=false"]
        if args.frames:
            overrides.append(f"--data.init_args.clip.num_frames={args.frames}")
        with tempfile.TemporaryDirectory() as folder:
            model, datamodule = build(args.config, args.ckpt, [*overrides, f"--trainer.default_root_dir={folder}"])
            cfg = datamodule.synthetic_options.config()
            plan = plan_split("test", cfg.test, cfg)
            ranks, text_index, keys = caption_ranks(model, datamodule)
        rows = summarise(ranks, text_index, keys, plan, (least, most))
        table += rows
        print_table(f"motion test set, group size {least}-{most}", list(rows[0]),
                    [[str(row.get(column, "")) for column in rows[0]] for row in rows])
    write_results("motion_breakdown", {"env": environment(), "ckpt": str(args.ckpt), "configs": args.config,
                                       "frames": args.frames}, out=args.out, table=table)


if __name__ == "__main__":
    main()
