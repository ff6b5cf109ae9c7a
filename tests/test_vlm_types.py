"""Multiple-choice accuracy per question type and the answer prior beside it: counted by hand on tiny batches, the
prior the same as ``benchmarks.motion_set``'s, the types handed from the datamodule to the head, and QA data without
types scored as before."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from builders import tiny_tokenizer

from datamodules import QADataModule, collate_qa
from datamodules import qa_motion as qm
from datamodules import synthetic_motion as sm
from datamodules.annotations import UNTYPED, QARecord, read_qa_annotations
from datamodules.options import SyntheticOptions
from datamodules.qa import prior_indices
from datamodules.synthetic import SyntheticConfig
from heads.metrics import TypedAccuracy
from heads.vlm import VLMHead
from trajtok.module import TrajTokModule
from trajtok.tokens import TrajectoryTokens

SMALL_LM = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
            "num_key_value_heads": 1}
OPTIONS = ["one", "two", "three"]


def tokens_of(batch_size: int, slots: int = 3, dim: int = 8) -> TrajectoryTokens:
    values = torch.arange(batch_size * slots * dim, dtype=torch.float).view(batch_size, slots, dim) / 100
    return TrajectoryTokens(tokens=values, valid=torch.ones(batch_size, slots, dtype=torch.bool), logits=None,
                            labels=torch.zeros(batch_size, 1, 1, 1), grid=(1, 1, 1))


@pytest.fixture(scope="module")
def head() -> VLMHead:
    torch.manual_seed(0)
    vlm = VLMHead(config_overrides=SMALL_LM, eval_generate=False)
    vlm.build(8)
    return vlm.eval()


def qa_batch(answer_index: list[int], types: list[str] | None = None, prior_index: list[int] | None = None) -> dict:
    size = len(answer_index)
    batch = {"question": [f"question {i}?" for i in range(size)], "answer": [OPTIONS[i] for i in answer_index],
             "options": [OPTIONS] * size, "answer_index": torch.tensor(answer_index), "index": torch.arange(size)}
    if types is not None:
        batch["type"] = types
    if prior_index is not None:
        batch["prior_index"] = torch.tensor(prior_index)
    return batch


def scores_of(head: VLMHead, batches: list[dict], chosen: list[list[int]] | None = None, monkeypatch=None) -> dict:
    """The head's metrics over ``batches``; ``chosen``: the options the head is made to pick (else its own)."""
    head.reset_metrics()
    for i, batch in enumerate(batches):
        if chosen is not None:
            monkeypatch.setattr(head, "choose", lambda *_, picks=chosen[i]: torch.tensor(picks))
        with torch.no_grad():
            head.update_metrics(tokens_of(len(batch["question"])), batch)
    metrics = {k: float(v) for k, v in head.compute_metrics().items()}
    head.reset_metrics()
    return metrics


# -------------------------------------------------------------------------------------------------- the head


def test_accuracy_per_type_and_the_prior_are_hand_counts(head, monkeypatch):
    head.set_question_types(["count", "first", "last"])
    batch = qa_batch([0, 1, 2, 0, 1], ["count", "first", "count", UNTYPED, "first"], [0, 1, 0, 0, -1])
    # Right: rows 0, 2, 4. The prior's option is the answer in rows 0, 1, 3; row 4's is not known (-1).
    picks = [0, 0, 2, 1, 1]
    # The batch again, as a distributed sampler repeats samples: each question counts once.
    metrics = scores_of(head, [batch, batch], [picks, picks], monkeypatch)
    assert metrics == pytest.approx({
        "llm_video_tokens": 4.0, "mc_accuracy": 60.0,
        "mc_accuracy_count": 100.0, "prior_accuracy_count": 50.0,  # rows 0 and 2
        "mc_accuracy_first": 50.0, "prior_accuracy_first": 100.0,  # rows 1 and 4 (the prior of row 1 only)
        "prior_accuracy": 75.0})  # rows 0-3; no "last" question, so no "last" scores
    head.set_question_types([])


def test_the_heads_own_choices_are_scored_per_type(head):
    head.set_question_types(["count", "first"])
    batch = qa_batch([0, 1, 2, 1], ["count", "first", "first", "count"], [0, 0, 0, 0])
    with torch.no_grad():
        chosen = head.choose(tokens_of(4), batch["question"], batch["options"])
    right = (chosen == batch["answer_index"]).float() * 100
    metrics = scores_of(head, [batch])
    assert metrics["mc_accuracy_count"] == pytest.approx(float(right[[0, 3]].mean()))
    assert metrics["mc_accuracy_first"] == pytest.approx(float(right[[1, 2]].mean()))
    assert metrics["mc_accuracy"] == pytest.approx(float(right.mean()))
    assert metrics["prior_accuracy_count"] == 50.0 and metrics["prior_accuracy_first"] == 0.0
    head.set_question_types([])


def test_a_batch_without_types_scores_as_before(head, monkeypatch):
    picks = [[0, 1, 0]]
    before = scores_of(head, [qa_batch([0, 1, 2])], picks, monkeypatch)
    assert before == pytest.approx({"llm_video_tokens": 4.0, "mc_accuracy": 200 / 3})
    # A head without types ignores a batch's (the default synthetic set: nothing new is logged).
    assert scores_of(head, [qa_batch([0, 1, 2], ["count"] * 3, [0, 0, 0])], picks, monkeypatch) == before
    # A head with types, given a batch that names none: the overall scores only.
    head.set_question_types(["count"])
    assert scores_of(head, [qa_batch([0, 1, 2])], picks, monkeypatch) == before
    head.set_question_types([])


def test_a_type_the_head_was_not_given_is_an_error(head, monkeypatch):
    head.set_question_types(["count"])
    with pytest.raises(ValueError, match="'camera'"):
        scores_of(head, [qa_batch([0], ["camera"])], [[0]], monkeypatch)
    with pytest.raises(ValueError, match="distinct"):
        head.set_question_types(["count", "count"])
    head.set_question_types([])


def test_typed_accuracy_leaves_out_unknown_priors_and_empty_types():
    metric = TypedAccuracy(("a", "b"))
    metric.update(torch.tensor([3, 1]), torch.tensor([0, 0]), torch.tensor([True, False]))
    assert {k: float(v) for k, v in metric.compute().items()} == {"mc_accuracy_a": 50.0}
    with pytest.raises(ValueError):
        metric.update(torch.tensor([0]), torch.tensor([2]), torch.tensor([True]))


# ------------------------------------------------------------------------------------------------ the data


def record(answer: str, options: tuple[str, ...], kind: str = "count") -> QARecord:
    return QARecord(video="v.mp4", question="q?", answer=answer, options=options, type=kind)


def test_the_prior_is_the_most_frequent_answer_per_type_and_option_set():
    records = [
        record("two", ("one", "two", "three")), record("two", ("two", "three", "one")),  # options in any order
        record("one", ("three", "one", "two")),
        record("one", ("one", "two", "three"), "first"),  # another type: counted apart
        record("b", ("a", "b")), record("a", ("b", "a")),  # a tie: the first answer seen
        record("x", ()),  # open-ended
    ]
    assert prior_indices(records) == [1, 0, 2, 0, 1, 0, -1]  # "two", "two", "two"; "one"; "b", "b"


def test_the_prior_is_the_one_benchmarks_motion_set_reports():
    cfg = SyntheticConfig(scenario="motion", test=60, frame_size=64, num_frames=16)
    clips = sm.plan_split("test", cfg.test, cfg)
    pairs = [(clip, q) for clip in clips for q in qm.clip_candidates(clip, cfg)]  # unbalanced: a prior above chance
    records = [QARecord(video=r["video"], question=r["question"], answer=r["answer"], options=tuple(r["options"]),
                        type=r["type"]) for r in qm.question_rows(pairs)]
    hits = [r.options[i] == r.answer for r, i in zip(records, prior_indices(records))]
    for row in qm.answer_priors([q for _, q in pairs]):
        mine = [h for r, h in zip(records, hits) if row["type"] in ("all", r.type)]
        assert 100 * sum(mine) / len(mine) == pytest.approx(row["prior_pct"]), row["type"]


def test_rows_name_their_type_and_collate_fills_in_a_missing_one(tmp_path):
    path = tmp_path / "qa.jsonl"
    rows = [{"video": "a.mp4", "question": "q?", "answer": "one", "options": OPTIONS, "type": "count"},
            {"video": "a.mp4", "question": "r?", "answer": "two", "options": OPTIONS}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [r.type for r in read_qa_annotations(str(path))] == ["count", UNTYPED]
    sample = {"video": torch.zeros(2, 3, 4, 4), "question": "q?", "answer": "one", "options": OPTIONS,
              "answer_index": 0, "index": 0}
    batch = collate_qa([sample, {**sample, "type": "count", "prior_index": 2, "index": 1}])
    assert batch["type"] == [UNTYPED, "count"] and batch["prior_index"].tolist() == [-1, 2]


def test_the_datamodule_names_its_types_and_the_module_hands_them_to_the_head(tmp_path):
    motion = QADataModule(synthetic=SyntheticOptions(scenario="motion", cache_dir=str(tmp_path)))
    assert motion.question_types == list(qm.TYPES)
    assert QADataModule(synthetic=SyntheticOptions(cache_dir=str(tmp_path))).question_types == []
    files = {}
    for split, kinds in (("train", ["last", "count"]), ("val", ["first", None])):
        files[split] = tmp_path / f"{split}.jsonl"
        files[split].write_text("".join(
            json.dumps({"video": "a.mp4", "question": "q?", "answer": "one", "options": OPTIONS, "type": kind}) + "\n"
            for kind in kinds))
    annotated = QADataModule(train_annotations=str(files["train"]), val_annotations=str(files["val"]))
    annotated.setup("fit")
    assert annotated.question_types == ["count", "first", "last"]

    torch.manual_seed(0)
    module = TrajTokModule(tiny_tokenizer(), VLMHead(config_overrides=SMALL_LM))
    module._trainer = SimpleNamespace(datamodule=annotated)  # what Lightning's setup hook sees
    module.setup("fit")
    assert module.head.question_types == {"count": 0, "first": 1, "last": 2}
    assert module.head.type_scores.types == ("count", "first", "last")
