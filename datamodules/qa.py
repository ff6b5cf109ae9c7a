"""Video question answering data: the per-sample dataset, its collate function, the LightningDataModule,
and the questions derived for the synthetic set.

Questions come from JSONL / JSON / CSV rows (``annotations.read_qa_annotations``): a video, a question,
its answer and, for multiple choice, the options (the answer is one of them). A video may have several
rows, one per question.

With no annotation files the datamodule serves questions about the embedded synthetic shapes set,
derived from each clip's objects (``synthetic_questions``): how many objects there are, the colour of
the one object moving a given way, and which way a named object moves; all multiple choice. They are
written as ``<split>_qa.jsonl`` beside the set, so they are read by exactly the same path as real data.
With ``synthetic.scenario: motion`` it serves the motion test set's questions instead (``datamodules.qa_motion``:
counting, turn order, identity, occlusion and the camera, answers balanced per type), written beside that set.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Collection, Sequence
from typing import Any

import torch
from jsonargparse.typing import NonNegativeInt

from datamodules.annotations import UNTYPED, QARecord, read_qa_annotations, write_jsonl_atomic
from datamodules.bad_samples import OnBadSample
from datamodules.base import ClipDataModule
from datamodules.clips import ClipDataset
from datamodules.collate import collate_skipped, drops_skipped
from datamodules.options import (
    AnnotationKeys,
    ClipOptions,
    LoaderOptions,
    SyntheticOptions,
)
from datamodules.qa_motion import TYPES, best_constant_answers, motion_qa_path, prior_group, write_motion_qa
from datamodules.rows import jsonl_rows
from datamodules.synthetic import COLOURS, DIRECTIONS, MOTIONS, SPLITS

COUNT_QUESTION = "how many objects are there?"
COUNT_OPTIONS = ("one", "two", "three")
MOVER_COLOUR_QUESTION = "what colour is the object that moves {direction}?"
MOTION_QUESTION = "which way does the {colour} {shape} move?"
# Wrong colours offered per colour question: four options in all, so guessing scores 25%.
NUM_COLOUR_DISTRACTORS = 3


def count_question(objects: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The question "how many objects are there?", answered "one" / "two" / "three"."""
    if not 1 <= len(objects) <= len(COUNT_OPTIONS):
        raise ValueError(f"count questions cover 1-{len(COUNT_OPTIONS)} objects, got {len(objects)}")
    return {"question": COUNT_QUESTION, "answer": COUNT_OPTIONS[len(objects) - 1], "options": list(COUNT_OPTIONS)}


def colour_options(answer: str, clip_colours: Collection[str], seed: str) -> list[str]:
    """The answer and ``NUM_COLOUR_DISTRACTORS`` other colours, in an order shuffled by ``seed`` (so the
    answer's position says nothing). Distractors are the clip's other colours first, so that spotting which
    colours are on screen is not enough and the question needs the motion; colours absent from the clip fill up."""
    rng = random.Random(seed)  # str seeds hash with SHA-512: the same draw in every process
    others = [c for c in COLOURS if c != answer]  # COLOURS' fixed order, never a set's
    present = [c for c in others if c in clip_colours]
    picked = rng.sample(present, min(NUM_COLOUR_DISTRACTORS, len(present)))
    absent = [c for c in others if c not in clip_colours]
    picked += rng.sample(absent, NUM_COLOUR_DISTRACTORS - len(picked))
    options = [answer, *picked]
    rng.shuffle(options)
    return options


def mover_colour_question(objects: Sequence[dict[str, Any]], key: str) -> dict[str, Any] | None:
    """The question "what colour is the object that moves {direction}?" for the first direction (in ``DIRECTIONS``
    order) that exactly one object moves in, with colour options seeded by ``key`` and the question;
    None when no direction has a single mover (the question would have no one answer)."""
    for direction in DIRECTIONS:
        movers = [o for o in objects if o["motion"] == direction]
        if len(movers) == 1:
            question = MOVER_COLOUR_QUESTION.format(direction=direction)
            answer = movers[0]["colour"]
            options = colour_options(answer, [o["colour"] for o in objects], f"{key}:{question}")
            return {"question": question, "answer": answer, "options": options}
    return None


def motion_question(objects: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The question "which way does the {colour} {shape} move?" about the first object (in row order) whose colour and
    shape together are unique in the clip, answered with its motion ("left" ... "still"); options: every
    motion. None when no object can be named uniquely."""
    names = Counter((o["colour"], o["shape"]) for o in objects)
    for o in objects:
        if names[o["colour"], o["shape"]] == 1:
            question = MOTION_QUESTION.format(colour=o["colour"], shape=o["shape"])
            return {"question": question, "answer": o["motion"], "options": list(MOTIONS)}
    return None


def synthetic_questions(objects: Sequence[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """The questions about a synthetic clip, from its annotation row's ``objects``: the count, then the
    colour of a single mover and the motion of a uniquely named object where the clip has them. Each is
    ``{"question", "answer", "options"}``. ``key`` (the clip's video path, relative to the set, so the
    same wherever the cache is) seeds the order of colour options; the result depends on nothing else."""
    candidates = [count_question(objects), mover_colour_question(objects, key), motion_question(objects)]
    return [q for q in candidates if q is not None]


def synthetic_qa_path(folder: str, split: str) -> str:
    """Where the questions of a synthetic split are: beside the split's own annotations."""
    return os.path.join(folder, f"{split}_qa.jsonl")


def write_synthetic_qa(folder: str) -> dict[str, str]:
    """Write ``<split>_qa.jsonl`` for every split of the synthetic set in ``folder``: rows of ``video``,
    ``question``, ``answer`` and ``options``, in clip order. Written atomically (a reader sees a whole
    file). Returns each split's path."""
    paths = {}
    for split in SPLITS:
        rows = [
            {"video": r["video"], **q}
            for _, r in jsonl_rows(os.path.join(folder, f"{split}.jsonl"))
            for q in synthetic_questions(r["objects"], r["video"])
        ]
        paths[split] = synthetic_qa_path(folder, split)
        write_jsonl_atomic(paths[split], rows)
    return paths


def prior_indices(records: Sequence[QARecord]) -> list[int]:
    """Each question's answer-prior choice: the position in its options of the most frequent answer among the
    multiple-choice questions of ``records`` of its type and option set (``qa_motion.best_constant_answers`` by
    ``prior_group``, the prior ``benchmarks.motion_set`` reports), so that the prior is scored on the very questions
    the model is; -1 for an open-ended question."""
    best = best_constant_answers([r for r in records if r.options], prior_group)
    return [r.options.index(best[prior_group(r)]) if r.options else -1 for r in records]


class QADataset(ClipDataset):
    """Questions about clips, as dicts: ``video`` float ``(T, 3, S, S)``, ``question``, ``answer``,
    ``options`` (``list[str]``, empty for an open-ended question), ``answer_index`` (the answer's position
    in ``options``, -1 when there are none), ``type`` (the row's question type, ``UNTYPED`` when it names none),
    ``prior_index`` (the option the answer prior of these records picks, ``prior_indices``) and ``index``.

    Pseudo-label files named by the rows are not loaded: QA batches carry no segmentation targets.
    Unusable videos are skipped (a skipped sample's question goes with it) or raised as ``ClipDataset``
    says (``on_bad_video``, ``num_skipped``, ``skipped_paths``).
    """

    records: list[QARecord]

    def __init__(
        self,
        records: Sequence[QARecord],
        clip: ClipOptions = ClipOptions(),
        train: bool = False,
        on_bad_video: OnBadSample = "skip",
        max_reported: NonNegativeInt = 10,
    ) -> None:
        super().__init__(records, clip, train, on_bad_video, load_pseudo_labels=False, max_reported=max_reported)
        self.prior_indices = prior_indices(self.records)

    def load(self, index: int) -> dict[str, Any]:
        """One sample, or a ``BadSampleError`` naming the file that prevents it."""
        rec = self.records[index]
        return {
            **self.load_clip(rec),
            "question": rec.question,
            "answer": rec.answer,
            "options": list(rec.options),
            "answer_index": rec.answer_index,
            "type": rec.type,
            "prior_index": self.prior_indices[index],
            "index": index,
        }


@drops_skipped
def collate_qa(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples into the QA batch of the data contract (see ``datamodules``): ``video``,
    ``question`` / ``answer`` (``list[str]``), ``options`` (``list[list[str]]``), ``answer_index``, ``type``
    (``list[str]``; ``UNTYPED`` for a sample without one), ``prior_index`` (long ``(B,)``; -1 for a sample without
    one) and ``index`` (long ``(B,)``), and ``skipped``."""
    return {
        "video": torch.stack([s["video"] for s in samples]),
        "question": [s["question"] for s in samples],
        "answer": [s["answer"] for s in samples],
        "options": [s["options"] for s in samples],
        "answer_index": torch.tensor([s["answer_index"] for s in samples], dtype=torch.long),
        "type": [s.get("type", UNTYPED) for s in samples],
        "prior_index": torch.tensor([s.get("prior_index", -1) for s in samples], dtype=torch.long),
        "index": torch.tensor([s["index"] for s in samples], dtype=torch.long),
        "skipped": collate_skipped(samples),
    }


class QADataModule(ClipDataModule):
    """Video question answering data from annotation files, or questions about the synthetic default.

    Args:
        root: folder that video paths in the annotations are relative to; default: each annotation
            file's own folder.
        train_annotations: JSONL / JSON / CSV file of questions of the train split. When no split has one,
            the embedded synthetic set is used (see ``synthetic``; each clip has 2-3 questions, see
            ``synthetic_questions``; with ``synthetic.scenario: motion``, the questions of ``datamodules.qa_motion``).
        val_annotations: the val split's file; None: no validation.
        test_annotations: the test split's file (predict uses it too).
        clip: frames per clip, input size and training augmentation.
        loader: batch sizes and DataLoader workers.
        on_bad_video: "skip" leaves unusable samples out of their batch (which shrinks) and reports them
            in its ``skipped`` (``trajtok.callbacks.BadSampleReport`` logs them per epoch); "raise" fails with
            the file's path and annotation row.
        keys: the annotation files' key names (``video``, ``question``, ``answer``, ``options``, ``start``,
            ``end``).
        synthetic: the synthetic set used when no annotations are given.
    """

    collate_fn = staticmethod(collate_qa)

    def __init__(
        self,
        root: str | None = None,
        train_annotations: str | None = None,
        val_annotations: str | None = None,
        test_annotations: str | None = None,
        clip: ClipOptions = ClipOptions(),
        loader: LoaderOptions = LoaderOptions(batch_size=16),
        on_bad_video: OnBadSample = "skip",
        keys: AnnotationKeys = AnnotationKeys(),
        synthetic: SyntheticOptions = SyntheticOptions(),
    ) -> None:
        super().__init__(root=root, annotations=(train_annotations, val_annotations, test_annotations), clip=clip,
                         loader=loader, keys=keys, synthetic=synthetic)
        self.save_hyperparameters()
        self.on_bad_video = on_bad_video

    @property
    def question_types(self) -> list[str]:
        """The question types accuracy is reported by (``TrajTokModule.setup`` hands them to the head): the motion
        set's ``TYPES``; for annotation files, the types their rows name, sorted, over the splits set up; none for the
        default synthetic set, whose rows name none (its scores stay as they were)."""
        if self.synthetic:
            return list(TYPES) if self.synthetic_options.scenario == "motion" else []
        return sorted({r.type for d in self.datasets.values() for r in d.records} - {UNTYPED})

    def prepare_data(self) -> None:
        """Generate the synthetic set if it is used and missing, and write its questions (the shapes set's anew each
        time, as they are cheap; the motion set's when missing, as deriving them plans the set again)."""
        if self.synthetic:
            self.write_questions(self.synthetic_folder())

    def write_questions(self, folder: str) -> dict[str, str]:
        """Write the questions of the synthetic set in ``folder``; returns each split's path."""
        if self.synthetic_options.scenario == "motion":
            return write_motion_qa(folder, self.synthetic_options.config())
        return write_synthetic_qa(folder)

    def annotation_path(self, split: str) -> str | None:
        """The annotation file of a split (for the synthetic set: its questions, in its cache folder)."""
        if not self.synthetic:
            return self.annotations[split]
        folder = self.synthetic_folder()
        motion = self.synthetic_options.scenario == "motion"
        path = motion_qa_path(folder, split) if motion else synthetic_qa_path(folder, split)
        if not os.path.isfile(path):  # setup without prepare_data, as in a plain script
            self.write_questions(folder)
        return path

    def build_dataset(self, split: str, path: str) -> QADataset:
        return QADataset(
            read_qa_annotations(path, *self.reading()),
            self.clip,
            train=split == "train",
            on_bad_video=self.on_bad_video,
        )
