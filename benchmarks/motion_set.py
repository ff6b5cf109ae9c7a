"""The motion test set in numbers: what its test split holds, and how long it takes to generate. A benchmark.

    python -m benchmarks.motion_set [--frames 16 [64 ...]] [--test 1000] [--seed 0] [--no-write] [--out PATH]

For each clip length, plans the test split of the set ``configs/synthetic/motion.yaml`` makes (``scenario: motion``,
96 px frames, the scenario's default knobs; ``--frames 64`` is ``configs/synthetic/motion64.yaml``'s) and
summarises it with ``datamodules.synthetic_motion.split_statistics``: objects per clip, clips with identical-looking
objects, turns, occlusions with re-appearance, interactions, camera pans, caption clauses, group sizes, what the
contrasts change, and the expected text-to-video recall of oracles that read from a clip only its objects' looks,
only their colours, or its caption's words in any order (the floors a tokenizer that sees no time would reach).
Then the split's questions (``datamodules.qa_motion``, what ``QADataModule`` serves for the set) are derived and
counted per type, with the accuracy of answering without the video: each type's most frequent answer (the answer
prior), the same per wording, picking an option at random, and the answer prior of the candidate questions before
their answers were balanced. Unless ``--no-write``, the split is then rendered and written (mp4, masks, graphs,
annotations) into a temporary folder; each step is timed on one process. Writes ``results/motion_set.csv`` (one row
per clip length and statistic) and the JSON beside it, with one contrast group's captions and one question of each
type as examples. Nothing is trained.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks.common import RESULTS, environment, print_table, write_results
from datamodules.qa_motion import TYPES, Candidate, answer_priors, clip_candidates, question_rows, split_questions
from datamodules.synthetic import SyntheticConfig, config_fields, video_codec
from datamodules.synthetic_motion import MotionClip, motion_captions, plan_split, split_statistics, write_split


def measure(frames: int, test: int, seed: int, write: bool) -> tuple[list[dict], dict]:
    """The statistics rows of one clip length's test split and its questions (then the timings), and examples: a
    contrast group's captions, a question of each type."""
    cfg = SyntheticConfig(seed=seed, test=test, num_frames=frames, scenario="motion")
    start = time.perf_counter()
    clips = plan_split("test", test, cfg)
    planned = time.perf_counter() - start
    start = time.perf_counter()
    questions = split_questions(clips, cfg, "test")
    derived = time.perf_counter() - start
    rows = [*split_statistics(clips, cfg), *question_statistics(clips, questions, cfg)]
    rows.append({"statistic": "seconds to plan", "value": round(planned, 1), "percent": ""})
    rows.append({"statistic": "seconds to derive the questions", "value": round(derived, 1), "percent": ""})
    if write:
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            write_split(folder, "test", clips, cfg, video_codec())
            rows.append({"statistic": "seconds to render and write", "value": round(time.perf_counter() - start, 1),
                         "percent": ""})
    first = [c for c in clips if c.group == clips[0].group]
    example = {"group": clips[0].group, "captions": [motion_captions(c.objects, c.pan, c.facts)[0] for c in first],
               "contrasts": [list(c.contrast) for c in first]}
    examples: dict[str, dict] = {}
    for row in question_rows(questions):
        examples.setdefault(row["type"], row)  # each type's first question
    return [{"frames": frames, **row} for row in rows], {"config": config_fields(cfg), "example": example,
                                                         "questions": [examples[t] for t in TYPES if t in examples]}


def question_statistics(
    clips: list[MotionClip], questions: list[tuple[MotionClip, Candidate]], cfg: SyntheticConfig
) -> list[dict]:
    """The statistics rows of a split's balanced ``questions``: per type, how many and the answer prior (percent);
    then for all types, how many, the answer prior, per wording too, chance, and the answer prior of every candidate
    question before balancing."""
    balanced = answer_priors([q for _, q in questions])
    unbalanced = answer_priors([q for clip in clips for q in clip_candidates(clip, cfg)])
    rows = []
    for row in balanced[:-1]:
        options = len(row["options"].split("; ")[0].split(" / "))
        rows.append({"statistic": f"QA questions: {row['type']} ({options} options)", "value": row["questions"]})
        rows.append({"statistic": f"QA answer prior: {row['type']} (%)", "value": round(row["prior_pct"], 1)})
    overall, before = balanced[-1], unbalanced[-1]
    rows += [{"statistic": statistic, "value": value} for statistic, value in (
        ("QA questions: all types", overall["questions"]),
        ("QA answer prior: all types (%)", round(overall["prior_pct"], 1)),
        ("QA answer prior per wording: all types (%)", round(overall["wording_prior_pct"], 1)),
        ("QA chance: all types (%)", round(overall["chance_pct"], 1)),
        ("QA candidate questions before balancing", before["questions"]),
        ("QA answer prior before balancing: all types (%)", round(before["prior_pct"], 1)))]
    return [{**row, "percent": ""} for row in rows]


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
