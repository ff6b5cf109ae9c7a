"""Questions about the motion test set (``datamodules.qa_motion``): answers balanced per type, stratum and split,
each answer one of its options and what the rendered masks show, identity questions only about identical-looking
objects, served by ``QADataModule`` through the CLI's option; and the default QA set unchanged."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter, defaultdict
from dataclasses import replace

import numpy as np
import pytest
from helpers import CONFIGS

from datamodules import qa_motion as qm
from datamodules import synthetic_motion as sm
from datamodules.options import SyntheticOptions
from datamodules.qa import QADataModule, synthetic_qa_path, synthetic_questions
from datamodules.synthetic import DIRECTIONS, SPLITS, MotionOptions, SyntheticConfig, ensure_synthetic, plan_split

CFG = SyntheticConfig(scenario="motion", val=120, test=240, frame_size=64, num_frames=16)


@pytest.fixture(scope="module")
def planned():
    """The planned val and test splits of ``CFG``, and each split's balanced questions with their clips."""
    clips = {split: sm.plan_split(split, getattr(CFG, split), CFG) for split in ("val", "test")}
    return clips, {split: qm.split_questions(clips[split], CFG, split) for split in clips}


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


# ----------------------------------------------------------------------------------------- the default QA set


def test_the_default_qa_set_is_what_it_was_before_motion_questions(cache):
    """The default set's questions, every split, and the files the datamodule writes for a small set, hash as the code
    before the motion questions made them (hashes taken from that code)."""
    cfg = SyntheticConfig()
    for split, expected in (("train", "38797d5840af192a"), ("val", "97e086292309434a"), ("test", "526ea073f7527030")):
        rows = []
        for spec in plan_split(split, getattr(cfg, split), cfg):
            objects = [{"shape": o.shape, "colour": o.colour, "size": o.size, "motion": o.motion} for o in spec.objects]
            video = f"videos/{spec.key}.mp4"
            rows += [{"video": video, **q} for q in synthetic_questions(objects, video)]
        assert digest("".join(json.dumps(r) + "\n" for r in rows).encode()) == expected, split
    small = SyntheticOptions(cache_dir=str(cache), seed=3, train=6, val=2, test=2, frame_size=32, num_frames=8)
    dm = QADataModule(synthetic=small)
    dm.prepare_data()
    folder = ensure_synthetic(small.cache_dir, small.config())
    for split, expected in (("train", "12c0ee341944dc0a"), ("val", "baa8aa43a6f07cd6"), ("test", "003653abb944efd6")):
        assert dm.annotation_path(split) == synthetic_qa_path(folder, split)
        with open(dm.annotation_path(split), "rb") as f:
            assert digest(f.read()) == expected, split


# -------------------------------------------------------------------------------------------------- balance


def test_answers_are_balanced_per_type_option_set_and_split(planned):
    _, questions = planned
    for split, pairs in questions.items():
        rows = qm.question_rows(pairs)
        assert {r["type"] for r in rows} == set(qm.TYPES), split  # every type is asked
        groups = defaultdict(Counter)
        for r in rows:
            groups[r["type"], frozenset(r["options"])][r["answer"]] += 1
        for (kind, options), answers in groups.items():
            # Every option is an answer, equally often: the best constant answer is right 1 / k of the time.
            assert set(answers) == options and len(set(answers.values())) == 1, (split, kind, answers)
            assert max(answers.values()) / sum(answers.values()) == 1 / len(options)
        strata = defaultdict(Counter)  # also per wording: the question's words, its objects' looks left out
        for _, q in pairs:
            strata[q.stratum][q.answer] += 1
        assert all(set(a) == set(s[1]) and len(set(a.values())) == 1 for s, a in strata.items())
        for row in qm.answer_priors([q for _, q in pairs]):
            assert row["prior_pct"] == pytest.approx(row["chance_pct"]) == pytest.approx(row["wording_prior_pct"])


def test_every_answer_is_one_of_its_options_whose_order_is_drawn_per_question(planned):
    _, questions = planned
    rows = qm.question_rows(questions["test"])
    assert rows == qm.question_rows(questions["test"])  # seeded: the same every time
    positions = Counter()
    for r in rows:
        assert r["answer"] in r["options"] and len(set(r["options"])) == len(r["options"]) >= 2
        assert set(r) == {"video", "question", "answer", "options", "type"}
        if len(r["options"]) == 4:
            positions[r["options"].index(r["answer"])] += 1
    assert set(positions) == {0, 1, 2, 3} and max(positions.values()) < 0.4 * sum(positions.values())


def test_balancing_cuts_each_answer_to_the_rarest_and_drops_a_stratum_missing_one():
    def q(answer, wording="w", options=("a", "b")):
        return qm.Candidate("first", f"q {wording}", answer, options, wording)

    candidates = [q("a"), q("a"), q("b"), q("a"), q("a", "v"), q("a", "u"), q("b", "u")]
    kept = qm.balance(candidates, "seed")
    assert [candidates[i].answer for i in kept].count("a") == 2 and 4 not in kept and {5, 6} <= set(kept)
    assert kept == qm.balance(candidates, "seed") and kept == sorted(kept)
    # The excess is dropped at random: over seeds, each of the three "a" of stratum "w" is sometimes the one kept.
    assert {next(i for i in qm.balance(candidates, str(s)) if i in (0, 1, 3)) for s in range(30)} == {0, 1, 3}


def test_a_motion_told_of_one_of_two_twins_fits_only_that_one():
    assert qm.tells_apart(("right",), ("left",)) and qm.tells_apart((), ("up",)) and qm.tells_apart(("up",), ())
    assert qm.tells_apart(("right", "up"), ("up", "right")) and qm.tells_apart(("right", "up"), ("right",))
    assert not qm.tells_apart(("right",), ("up", "right")) and not qm.tells_apart(("right",), ("right", "down"))
    assert not qm.tells_apart(("left",), ("left",)) and not qm.tells_apart((), ())


def test_identity_questions_ask_only_about_identical_looking_objects(planned):
    clips, questions = planned
    asked = Counter()
    for clip, q in questions["test"]:
        if q.type != "identity":
            continue
        a, b = sm.twins(clip.facts)
        assert clip.objects[a].look == clip.objects[b].look
        assert Counter(o.look for o in clip.objects)[clip.objects[a].look] == 2
        size, colour, shape = clip.objects[a].look
        assert q.question.startswith(f"which of the two {size} {colour} {shape}s ")
        asked[clip.key] += 1
    assert asked
    for clip in clips["test"]:
        if not any(clip.facts.places):
            assert not qm.identity_candidates(clip)
            assert len({o.look for o in clip.objects}) == len(clip.objects)


# ------------------------------------------------------------------------------------- what the renders show


def rendered(clip):
    """Each object's visible mask bool ``(M, T, S, S)`` from the rendered segment masks and graph, its whole outline
    (``(M, T, S, S)``, before anything covers it), and the frames."""
    frames, masks, graph = sm.render_motion_clip(clip, CFG)
    seen = np.stack([[(masks[t] == graph[j, t]) & (graph[j, t] > 0) for t in range(CFG.num_frames)]
                     for j in range(len(clip.objects))])
    return seen, np.stack(sm.object_masks(clip.objects, clip.pan, CFG)), frames


def scene_centres(clip, seen, whole):
    """``(M, T, 2)`` centroids (x, y) of each object's rendered mask in frames where it is seen whole, NaN elsewhere,
    moved by the camera's window, so that a still object stays put and a moving one moves as in the scene."""
    ys, xs = np.mgrid[0:CFG.frame_size, 0:CFG.frame_size]
    full = (seen == whole).all(axis=(2, 3)) & seen.any(axis=(2, 3))
    area = np.maximum(seen.sum(axis=(2, 3)), 1)
    centres = np.stack([(seen * xs).sum(axis=(2, 3)) / area, (seen * ys).sum(axis=(2, 3)) / area], axis=-1)
    centres = centres + sm.camera_path(clip.pan, CFG)[None]
    return np.where(full[..., None], centres, np.nan)


def heading(centres, start, stop):
    """The direction of the largest move between frames ``start`` and ``stop``, or None (not seen whole there)."""
    step = centres[stop] - centres[start]
    if np.isnan(step).any():
        return None
    axis = int(abs(step[1]) > abs(step[0]))
    return next(d for d, v in DIRECTIONS.items() if v[axis] == np.sign(step[axis]))


def named(clip):
    """Each object's name in questions, to its index."""
    return {qm.naming(o, place)[0]: j for j, (o, place) in enumerate(zip(clip.objects, clip.facts.places))}


def by_type(questions, kind, limit=40):
    return [(clip, q) for clip, q in questions["test"] if q.type == kind][:limit]


def test_first_and_last_directions_are_how_the_masks_move(planned):
    _, questions = planned
    # Each leg of a turn lasts at least three tenths of the clip: over that many frames at either end the masks
    # move along one leg only.
    span = round(0.3 * (CFG.num_frames - 1))
    checked = 0
    for clip, q in by_type(questions, "first") + by_type(questions, "last"):
        j = next(j for name, j in named(clip).items() if f"does {name} move" in q.question)
        centres = scene_centres(clip, *rendered(clip)[:2])[j]
        t = CFG.num_frames - 1
        seen = heading(centres, 0, span) if q.type == "first" else heading(centres, t - span, t)
        if seen is None:
            continue
        assert seen == q.answer, (clip.key, q.question)
        checked += 1
    assert checked >= 40


def test_the_count_is_of_the_masks_that_move_in_the_scene(planned):
    _, questions = planned
    checked = 0
    for clip, q in by_type(questions, "count"):
        centres = scene_centres(clip, *rendered(clip)[:2])
        moved = []
        for track in centres:
            known = track[~np.isnan(track).any(axis=1)]
            if len(known) < CFG.num_frames // 2:
                break
            moved.append(np.ptp(known, axis=0).max() > 3)  # pixels; a still object's mask stays exactly put
        else:
            assert qm.COUNT_WORDS[sum(moved)] == q.answer, clip.key
            checked += 1
    assert checked >= 20


def test_a_pass_behind_hides_the_mask_and_a_pass_in_front_covers_the_other(planned):
    _, questions = planned
    answers = Counter()
    for clip, q in by_type(questions, "occlusion"):
        names = named(clip)
        passer = next(j for name, j in names.items() if q.question.startswith(f"does {name} pass"))
        occluder = next(j for name, j in names.items() if q.question.endswith(f"in front of {name}?"))
        seen, whole, _ = rendered(clip)
        inside = ~(whole[passer] & ~whole[occluder]).any(axis=(1, 2))  # the passer's outline within the occluder's
        assert inside.any() and not inside[0] and not inside[-1] and seen[passer][[0, -1]].any()
        if q.answer == "behind":  # hidden while inside: its mask vanishes
            assert not seen[passer][inside].any(), clip.key
        else:  # seen whole while inside, on top of the occluder, whose mask loses those pixels
            assert (seen[passer][inside] == whole[passer][inside]).all(), clip.key
            assert not (seen[occluder][inside] & whole[passer][inside]).any(), clip.key
        answers[q.answer] += 1
    assert answers["behind"] >= 5 and answers["in front"] >= 5


def shifted_match(frames, background, dx, dy):
    """The share of background pixels of the last frame equal to the first frame's moved by ``(dx, dy)`` pixels."""
    s = CFG.frame_size
    dst = (slice(max(dy, 0), s + min(dy, 0)), slice(max(dx, 0), s + min(dx, 0)))
    src = (slice(max(-dy, 0), s + min(-dy, 0)), slice(max(-dx, 0), s + min(-dx, 0)))
    both = background[-1][dst] & background[0][src]
    return (frames[-1][dst][both] == frames[0][src][both]).all(axis=-1).mean()


def test_the_camera_answer_is_how_the_background_moves(planned):
    _, questions = planned
    answers = Counter()
    travel = int(np.abs(np.diff(sm.camera_path("right", CFG)[[0, -1]], axis=0)).max())  # pixels over a panning clip
    for clip, q in by_type(questions, "camera", limit=60):
        frames, masks, graph = sm.render_motion_clip(clip, CFG)
        background = masks == graph[-1][:, None, None]  # the background is the graph's last row
        if q.answer == qm.STILL_CAMERA:
            assert shifted_match(frames, background, 0, 0) == 1.0, clip.key
        else:
            # The view's content slides against the pan: the last frame's background is the first's moved back, and
            # no other way.
            for direction, (x, y) in DIRECTIONS.items():
                match = shifted_match(frames, background, -int(x) * travel, -int(y) * travel)
                assert (match == 1.0) == (direction == q.answer), (clip.key, q.answer, direction)
            assert shifted_match(frames, background, 0, 0) < 1.0
        answers[q.answer] += 1
    assert len(answers) == len(qm.CAMERA_OPTIONS)


def test_the_identity_answer_starts_on_its_side_and_moves_as_told(planned):
    _, questions = planned
    checked = 0
    for clip, q in by_type(questions, "identity"):
        a, b = sm.twins(clip.facts)
        answer = next(j for j in (a, b) if q.answer == f"the one {clip.facts.places[j]}")
        other = b if answer == a else a
        seen, whole, _ = rendered(clip)
        start = scene_centres(clip, seen, whole)[:, 0] - sm.camera_path(clip.pan, CFG)[0]
        axis = 0 if q.answer in ("the one on the left", "the one on the right") else 1
        low = q.answer in ("the one on the left", "the one at the top")
        if np.isnan(start[[a, b], axis]).any():
            continue
        assert (start[answer, axis] < start[other, axis]) == low, clip.key
        told = q.question.split(f"{' '.join(clip.objects[a].look)}s ")[1].split(":")[0]
        assert told == sm.motion_words(clip.objects[answer], 0) != sm.motion_words(clip.objects[other], 0)
        checked += 1
    assert checked >= 10


# ------------------------------------------------------------------------------------------------ serving


def test_a_small_set_and_its_questions_generate_fast(tmp_path):
    options = SyntheticOptions(cache_dir=str(tmp_path), scenario="motion", train=16, val=8, test=16, frame_size=64)
    start = time.perf_counter()
    dm = QADataModule(synthetic=options)
    dm.prepare_data()
    assert time.perf_counter() - start < 5
    folder = ensure_synthetic(options.cache_dir, options.config())
    for split in SPLITS:
        path = dm.annotation_path(split)
        assert path == qm.motion_qa_path(folder, split) == os.path.join(folder, f"{split}_qa-v{qm.QA_VERSION}.jsonl")
        with open(path, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f]
        clips = sm.plan_split(split, getattr(options, split), options.config())
        assert rows == qm.question_rows(qm.split_questions(clips, options.config(), split))
    written = os.path.getmtime(qm.motion_qa_path(folder, "test"))
    dm.prepare_data()  # present: not derived again
    assert os.path.getmtime(qm.motion_qa_path(folder, "test")) == written


def test_questions_of_another_plan_than_the_videos_are_refused(tmp_path):
    options = SyntheticOptions(cache_dir=str(tmp_path), scenario="motion", train=8, val=8, test=8, frame_size=64)
    folder = ensure_synthetic(options.cache_dir, options.config())
    with pytest.raises(ValueError, match="the train split's clips are not those that synthetic.* plans"):
        qm.write_motion_qa(folder, replace(options.config(), seed=1))
    with pytest.raises(ValueError, match="need synthetic.scenario 'motion', got 'shapes'"):
        qm.write_motion_qa(folder, SyntheticConfig())


def test_the_cli_option_serves_the_motion_questions(cli_in_tmp, tmp_path):
    from trajtok.cli import TrajTokCLI

    sizes = [f"--data.init_args.synthetic.cache_dir={tmp_path / 'cache'}", "--data.init_args.synthetic.train=8",
             "--data.init_args.synthetic.val=8", "--data.init_args.synthetic.test=16",
             "--data.init_args.synthetic.frame_size=64"]
    cli = TrajTokCLI(args=["--config", str(CONFIGS / "vlm.yaml"), "--data.init_args.synthetic.scenario=motion",
                           "--data.init_args.synthetic.motion.group_size=[4, 8]", *sizes], run=False)
    options = cli.datamodule.synthetic_options
    assert (options.scenario, options.motion) == ("motion", MotionOptions(group_size=(4, 8)))
    cli.datamodule.setup("test")
    records = cli.datamodule.datasets["test"].records
    folder = ensure_synthetic(options.cache_dir, options.config())
    with open(qm.motion_qa_path(folder, "test"), encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    assert records and [(r.question, r.answer, list(r.options)) for r in records] == [
        (r["question"], r["answer"], r["options"]) for r in rows]
    # The data overlay composes after the model config as it does for video-text.
    overlay = TrajTokCLI(args=["--config", str(CONFIGS / "vlm.yaml"), "--config",
                               str(CONFIGS / "synthetic/motion.yaml"), *sizes], run=False)
    assert overlay.datamodule.synthetic_options.scenario == "motion"


def test_the_statistics_command_counts_the_questions_and_their_prior(tmp_path):
    import csv

    from benchmarks import motion_set

    motion_set.main(["--test", "48", "--frames", "16", "--no-write", "--out", str(tmp_path / "motion_set.json")])
    with open(tmp_path / "motion_set.csv", newline="", encoding="utf-8") as f:
        rows = {r["statistic"]: r["value"] for r in csv.DictReader(f)}
    per_type = [int(v) for k, v in rows.items() if k.startswith("QA questions: ") and k != "QA questions: all types"]
    assert sum(per_type) == int(rows["QA questions: all types"]) > 0
    assert rows["QA answer prior: all types (%)"] == rows["QA chance: all types (%)"]
    assert float(rows["QA answer prior before balancing: all types (%)"]) > float(rows["QA chance: all types (%)"])
    assert "seconds to derive the questions" in rows
    examples = json.loads((tmp_path / "motion_set.json").read_text())["sets"]["16f"]["questions"]
    assert [q["type"] for q in examples] == [t for t in qm.TYPES if any(q["type"] == t for q in examples)]
    assert all(q["answer"] in q["options"] for q in examples)
