"""The motion test set in numbers: what its test split holds, and how long it takes to generate. A benchmark.

    python -m benchmarks.motion_set [--frames 16 [64 ...]] [--test 1000] [--seed 0] [--no-write] [--out PATH]

For each clip length, plans the test split of the set ``configs/synthetic/motion.yaml`` makes (``scenario: motion``,
96 px frames, the scenario's default knobs; ``--frames 64`` is ``configs/synthetic/motion64.yaml``'s) and
summarises it with ``datamodules.synthetic_motion.split_statistics``: objects per clip, clips with identical-looking
objects, turns, occlusions with re-appearance, interactions, camera pans, caption clauses, group sizes, what the
contrasts change, and the expected text-to-video recall of oracles that read from a clip only its objects' looks,
only their colours, or its caption's words in any order (the floors a tokenizer that sees no time would reach).
Unless ``--no-write``, the split is then rendered and written (mp4, masks, graphs, annotations) into a temporary
folder, and both steps are timed on one process. Writes ``results/motion_set.csv`` (one row per clip length and
statistic) and the JSON beside it, with one contrast group's captions as an example. Nothing is trained.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks.common import RESULTS, environment, print_table, write_results
from datamodules.synthetic import SyntheticConfig, config_fields, video_codec
from datamodules.synthetic_motion import motion_captions, plan_split, split_statistics, write_split


def measure(frames: int, test: int, seed: int, write: bool) -> tuple[list[dict], dict]:
    """The statistics rows of one clip length's test split (with its timings), and an example group."""
    cfg = SyntheticConfig(seed=seed, test=test, num_frames=frames, scenario="motion")
    start = time.perf_counter()
    clips = plan_split("test", test, cfg)
    planned = time.perf_counter() - start
    rows = split_statistics(clips, cfg)
    rows.append({"statistic": "seconds to plan", "value": round(planned, 1), "percent": ""})
    if write:
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            write_split(folder, "test", clips, cfg, video_codec())
            rows.append({"statistic": "seconds to render and write", "value": round(time.perf_counter() - start, 1),
                         "percent": ""})
    first = [c for c in clips if c.group == clips[0].group]
    example = {"group": clips[0].group, "captions": [motion_captions(c.objects, c.pan, c.facts)[0] for c in first],
               "contrasts": [list(c.contrast) for c in first]}
    return [{"frames": frames, **row} for row in rows], {"config": config_fields(cfg), "example": example}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[16], help="clip lengths (16: motion.yaml's)")
    parser.add_argument("--test", type=int, default=1000, help="clips in the test split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true", help="plan and summarise only: no rendering, no timing")
    parser.add_argument("--out", type=Path, default=RESULTS / "motion_set.json")
    args = parser.parse_args(argv)
    table, sets = [], {}
    for frames in args.frames:
        rows, meta = measure(frames, args.test, args.seed, not args.no_write)
        table += rows
        sets[f"{frames}f"] = meta
        print_table(f"motion test set, {frames} frames", ["statistic", "value", "% of clips"],
                    [[r["statistic"], str(r["value"]), str(r["percent"])] for r in rows])
    write_results("motion_set", {"env": environment(), "sets": sets}, out=args.out, table=table)


if __name__ == "__main__":
    main()
