"""Questions about the motion test set (``synthetic.scenario: motion``) that only the video answers: each asks for a
fact over time, and the answers are balanced so that the question's words give none away.

The types, all multiple choice:

- ``count``: "how many objects move?", objects that move in the scene (a still object that a camera pan sweeps across
  the frame does not move, as in the captions); options "one" to the most objects a clip may hold. A clip in which
  nothing moves gets no count question (such clips are too rare to balance).
- ``first`` / ``last``: "which way does the small red circle move first?" / "... at the end?", about an object whose
  path turns, so the two answers differ and knowing which directions occur is not enough; options: the four
  directions.
- ``identity``: "which of the two small red circles moves up: the one on the left or the one on the right?", about a
  clip with two identical-looking objects, named by where they start as the captions name them; asked only about a
  motion that the other one does not also make (not "moves right" when the other moves up then right).
- ``occlusion``: "does the small yellow triangle pass behind or in front of the large green square?", for each pass
  the masks show (``synthetic_motion.Interaction``); options "behind" and "in front".
- ``camera``: "which way does the camera pan?": a direction or "it does not move"; none when ``synthetic.motion.pan``
  is 0.

Answers are what the clip renders, as its captions: each path and the camera's window as painted, and the places of
identical-looking objects and the passes from ``synthetic_motion.Facts``, which the rendered masks decide.

Every candidate question has a stratum: its type, its options, and its words with the objects' looks left out (so an
object's place, and the motion an identity question tells, are in it). Within a stratum of a split each option is the
answer equally often: each answer's candidates are cut, at random (seeded), to the rarest answer's count, and a
stratum that lacks an answer is dropped. So the best constant answer of a type, even of a wording, is right once in
as many times as there are options, and a language model that reads only the question is at chance. The strata keep
the wording apart because it can hint: an object that starts on the left more often moves right, since its path must
stay in the frame. Looks are left out of the strata: they are drawn without regard to where an object goes. Options
are shuffled per question (seeded by the video and the question), so their order is no cue either.

The questions are written as ``<split>_qa-v<QA_VERSION>.jsonl`` beside the set, rows of ``video``, ``question``,
``answer``, ``options`` and ``type``, when missing: deriving them plans the split again.
"""

from __future__ import annotations

import os
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from datamodules.annotations import QARecord, write_jsonl_atomic
from datamodules.rows import jsonl_rows
from datamodules.synthetic import DIRECTIONS, SPLITS, SyntheticConfig
from datamodules.synthetic_motion import (
    PLACES,
    MotionClip,
    Mover,
    motion_captions,
    motion_words,
    name,
    plan_split,
    twins,
)

# Bumped whenever the questions change, so files of an older version are never read as current.
QA_VERSION = 1
#: The question types, in the order a clip's questions are written.
TYPES = ("count", "first", "last", "identity", "occlusion", "camera")
COUNT_WORDS = ("none", "one", "two", "three")
COUNT_QUESTION = "how many objects move?"
FIRST_QUESTION = "which way does {object} move first?"
LAST_QUESTION = "which way does {object} move at the end?"
IDENTITY_QUESTION = "which of the two {looks} {motion}: {options}?"
OCCLUSION_QUESTION = "does {passer} pass behind or in front of {occluder}?"
DEPTH_OPTIONS = ("behind", "in front")
CAMERA_QUESTION = "which way does the camera pan?"
STILL_CAMERA = "it does not move"
CAMERA_OPTIONS = (*DIRECTIONS, STILL_CAMERA)
# What stands for an object's look in a question's wording (its stratum).
LOOK = "{look}"


@dataclass(frozen=True)
class Candidate:
    """A question one clip could be asked: its ``type`` (``TYPES``), the ``question``, its ``answer``, the ``options``
    in a fixed order (shuffled when written), and its ``wording``: the question with the objects' looks left out,
    which with the type and the options makes its stratum."""

    type: str
    question: str
    answer: str
    options: tuple[str, ...]
    wording: str

    @property
    def stratum(self) -> tuple[str, tuple[str, ...], str]:
        """The questions whose answers are balanced together."""
        return self.type, self.options, self.wording


def naming(obj: Mover, place: str) -> tuple[str, str]:
    """How a question names an object ("the small red circle", "the small red circle on the left"), and the same with
    its look left out ("the {look} on the left")."""
    return name(obj, place, "the"), name(obj, place, "the").replace(" ".join(obj.look), LOOK)


def count_candidates(clip: MotionClip, cfg: SyntheticConfig) -> list[Candidate]:
    """"How many objects move?", answered by the objects that move in the scene; options "one" to the most objects a
    clip may hold (``synthetic.motion.objects``). None for a clip in which nothing moves, nor when a clip holds one
    object at most (a single option)."""
    options = COUNT_WORDS[1 : cfg.motion.objects[1] + 1]
    movers = sum(bool(o.legs) for o in clip.objects)
    if not movers or len(options) < 2:
        return []
    return [Candidate("count", COUNT_QUESTION, COUNT_WORDS[movers], options, COUNT_QUESTION)]


def direction_candidates(clip: MotionClip) -> list[Candidate]:
    """"Which way does X move first?" and "... at the end?" about every object whose path turns."""
    out = []
    for obj, place in zip(clip.objects, clip.facts.places):
        if len(obj.legs) != 2:
            continue
        named, masked = naming(obj, place)
        for kind, template, answer in (("first", FIRST_QUESTION, obj.legs[0]), ("last", LAST_QUESTION, obj.legs[1])):
            out.append(Candidate(kind, template.format(object=named), answer, tuple(DIRECTIONS),
                                 template.format(object=masked)))
    return out


def tells_apart(legs: tuple[str, ...], other: tuple[str, ...]) -> bool:
    """Whether the motion ``legs`` (as told: "moves right", "moves right then up", "stays still") fits one object only,
    the other doing ``other``: not the same motion, and not one straight leg that the other's path also makes."""
    return legs != other and not (len(legs) == 1 and legs[0] in other)


def identity_candidates(clip: MotionClip) -> list[Candidate]:
    """"Which of the two small red circles moves up: the one on the left or the one on the right?", for each of two
    identical-looking objects whose motion the other does not also make; options: where each starts."""
    pair = twins(clip.facts)
    if not pair:
        return []
    places = clip.facts.places
    axis = next(k for k, sides in enumerate(PLACES) if places[pair[0]] in sides)
    options = tuple(f"the one {side}" for side in PLACES[axis])
    listed = " or ".join(options)
    size, colour, shape = clip.objects[pair[0]].look
    out = []
    for j, other in (pair, pair[::-1]):
        obj = clip.objects[j]
        if not tells_apart(obj.legs, clip.objects[other].legs):
            continue
        told = motion_words(obj, 0)
        question = IDENTITY_QUESTION.format(looks=f"{size} {colour} {shape}s", motion=told, options=listed)
        wording = IDENTITY_QUESTION.format(looks=f"{LOOK}s", motion=told, options=listed)
        out.append(Candidate("identity", question, f"the one {places[j]}", options, wording))
    return out


def occlusion_candidates(clip: MotionClip) -> list[Candidate]:
    """"Does X pass behind or in front of Y?" for every pass of the clip's facts."""
    out = []
    for event in clip.facts.interactions:
        passer = naming(clip.objects[event.passer], clip.facts.places[event.passer])
        occluder = naming(clip.objects[event.occluder], clip.facts.places[event.occluder])
        out.append(Candidate("occlusion", OCCLUSION_QUESTION.format(passer=passer[0], occluder=occluder[0]),
                             DEPTH_OPTIONS[0] if event.behind else DEPTH_OPTIONS[1], DEPTH_OPTIONS,
                             OCCLUSION_QUESTION.format(passer=passer[1], occluder=occluder[1])))
    return out


def camera_candidates(clip: MotionClip, cfg: SyntheticConfig) -> list[Candidate]:
    """"Which way does the camera pan?": its direction, or that it does not move; none when no clip pans."""
    if cfg.motion.pan == 0:
        return []
    return [Candidate("camera", CAMERA_QUESTION, clip.pan or STILL_CAMERA, CAMERA_OPTIONS, CAMERA_QUESTION)]


def clip_candidates(clip: MotionClip, cfg: SyntheticConfig) -> list[Candidate]:
    """Every question a clip could be asked, in ``TYPES`` order (of one type, in object order)."""
    out = [*count_candidates(clip, cfg), *direction_candidates(clip), *identity_candidates(clip),
           *occlusion_candidates(clip), *camera_candidates(clip, cfg)]
    return sorted(out, key=lambda c: TYPES.index(c.type))


def balance(candidates: Sequence[Candidate], seed: str) -> list[int]:
    """The indices (ascending) of the candidates kept so that within each stratum every option is the answer equally
    often: each answer's candidates cut, at random by ``seed``, to the rarest option's count (a stratum lacking an
    answer loses all)."""
    strata: dict[tuple, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for i, candidate in enumerate(candidates):
        strata[candidate.stratum][candidate.answer].append(i)
    keep: list[int] = []
    for stratum, by_answer in strata.items():
        options = stratum[1]
        each = min(len(by_answer[option]) for option in options)
        rng = random.Random(f"{seed}:{stratum}")  # str seeds hash with SHA-512: the same draw in every process
        for option in options:
            keep += rng.sample(by_answer[option], each)
    return sorted(keep)


def shuffled(options: Sequence[str], seed: str) -> list[str]:
    """``options`` in an order drawn from ``seed``."""
    out = list(options)
    random.Random(seed).shuffle(out)
    return out


def video_path(clip: MotionClip) -> str:
    """A clip's video, relative to the set's folder, as ``synthetic.write_clip`` names it."""
    return f"videos/{clip.key}.mp4"


def split_questions(
    clips: Sequence[MotionClip], cfg: SyntheticConfig, split: str
) -> list[tuple[MotionClip, Candidate]]:
    """The balanced questions of a planned split (``balance``, seeded by the set's seed and the split), in clip order,
    each with its clip."""
    pairs = [(clip, candidate) for clip in clips for candidate in clip_candidates(clip, cfg)]
    return [pairs[i] for i in balance([c for _, c in pairs], f"{cfg.seed}:{split}")]


def question_rows(questions: Sequence[tuple[MotionClip, Candidate]]) -> list[dict[str, Any]]:
    """The annotation rows of questions: ``video``, ``question``, ``answer``, ``options`` (shuffled, seeded by the
    video and the question) and ``type``."""
    rows = []
    for clip, q in questions:
        video = video_path(clip)
        rows.append({"video": video, "question": q.question, "answer": q.answer,
                     "options": shuffled(q.options, f"{video}:{q.question}"), "type": q.type})
    return rows


def answer_priors(questions: Sequence[Candidate]) -> list[dict[str, Any]]:
    """How well answering without the video does, per question type (in ``TYPES`` order, those present) and then for
    ``all`` types: ``questions``; ``options`` (each option set, " / " between options, "; " between sets);
    ``prior_pct``, the accuracy of the answer prior: each question answered with the most frequent answer of its type
    and option set (``prior_group``; a type has one set but ``identity``, whose options are left / right or top / bottom);
    ``wording_prior_pct``, the same with the most frequent answer of its stratum (its wording too); and
    ``chance_pct``, that of picking one of each question's options at random."""
    out = []
    for kind in [*(t for t in TYPES if any(q.type == t for q in questions)), "all"]:
        mine = [q for q in questions if kind in ("all", q.type)]
        if not mine:
            continue
        sets = dict.fromkeys(" / ".join(q.options) for q in mine)
        out.append({"type": kind, "questions": len(mine), "options": "; ".join(sets) if kind != "all" else "",
                    "prior_pct": best_constant_pct(mine, prior_group),
                    "wording_prior_pct": best_constant_pct(mine, lambda q: q.stratum),
                    "chance_pct": 100 * sum(1 / len(q.options) for q in mine) / len(mine)})
    return out


def prior_group(question: Candidate | QARecord) -> tuple[str, frozenset[str]]:
    """What the answer prior answers alike: a question's type and its set of options (their order aside)."""
    return question.type, frozenset(question.options)


def best_constant_answers(
    questions: Sequence[Candidate | QARecord], group: Callable[[Any], Hashable]
) -> dict[Hashable, str]:
    """The most frequent answer of each ``group`` of ``questions`` (of equally frequent ones, the first seen): what
    a constant answer per group says, the answer prior when the group is ``prior_group``."""
    answers: dict[Hashable, Counter] = defaultdict(Counter)
    for q in questions:
        answers[group(q)][q.answer] += 1
    return {key: counts.most_common(1)[0][0] for key, counts in answers.items()}


def best_constant_pct(questions: Sequence[Candidate | QARecord], group: Callable[[Any], Hashable]) -> float:
    """The accuracy (percent) of answering each question with the most frequent answer of its ``group``."""
    best = best_constant_answers(questions, group)
    return 100 * sum(q.answer == best[group(q)] for q in questions) / len(questions)


def motion_qa_path(folder: str, split: str) -> str:
    """Where the questions of a motion set's split are: beside the split's own annotations, named by ``QA_VERSION``."""
    return os.path.join(folder, f"{split}_qa-v{QA_VERSION}.jsonl")


def check_planned(folder: str, split: str, clips: Sequence[MotionClip]) -> None:
    """Raise ValueError unless ``clips`` are the clips written in ``folder``'s split (the same videos and captions), so
    that questions are never derived from another plan than the one the videos show."""
    written = [(row["video"], row["caption"]) for _, row in jsonl_rows(os.path.join(folder, f"{split}.jsonl"))]
    planned = [(video_path(c), motion_captions(c.objects, c.pan, c.facts)) for c in clips]
    if written != planned:
        raise ValueError(f"{folder}: the {split} split's clips are not those that synthetic.* plans with this code; "
                         "delete the folder (synthetic.cache_dir) to generate it again")


def write_motion_qa(folder: str, cfg: SyntheticConfig) -> dict[str, str]:
    """Write the questions of every split of the motion set ``cfg`` in ``folder`` whose file is missing (atomically:
    a reader sees a whole file); returns each split's path (``motion_qa_path``)."""
    if cfg.scenario != "motion":
        raise ValueError(f"motion questions need synthetic.scenario 'motion', got {cfg.scenario!r}")
    paths = {}
    for split in SPLITS:
        paths[split] = motion_qa_path(folder, split)
        if os.path.isfile(paths[split]):
            continue
        clips = plan_split(split, getattr(cfg, split), cfg)
        check_planned(folder, split, clips)
        write_jsonl_atomic(paths[split], question_rows(split_questions(clips, cfg, split)))
    return paths
