"""Every registered head, through the module: losses, backward, evaluation metrics, prediction."""

from __future__ import annotations

import itertools

import pytest
import torch
from builders import tiny_clip_head, tiny_module, tiny_tokenizer

from heads import Head, create_head, list_heads, register_head
from heads.retrieval import retrieval_table
from trajtok.module import TrajTokModule
from trajtok.optim import decay_groups, warmup_cosine
from trajtok.segmentation import SegmentationLoss
from trajtok.tokens import TrajectoryTokens


def example_batch(batch_size: int = 4) -> dict:
    mask = torch.zeros(batch_size, 2, 32, 32, dtype=torch.uint8)
    mask[:, :, 8:20, 8:20] = 1  # one labelled trajectory per clip, for the segmentation loss
    return {
        "video": torch.randn(batch_size, 2, 3, 32, 32),
        "text": [f"a clip number {i}" for i in range(batch_size)],
        "captions": [[f"a clip number {i}"] + ["another caption"] * (i % 2) for i in range(batch_size)],
        "index": torch.arange(batch_size),
        "label": torch.arange(batch_size) % 3,
        "question": [f"how many objects are in clip {i}?" for i in range(batch_size)],
        "answer": [["one", "two", "three"][i % 3] for i in range(batch_size)],
        "options": [["one", "two", "three"]] * batch_size,
        "answer_index": torch.arange(batch_size) % 3,
        "mask": mask,
        "graph": torch.ones(batch_size, 1, 2, dtype=torch.long),
    }


@pytest.mark.parametrize("name", list_heads())
def test_registered_head_trains_and_evaluates(name):
    torch.manual_seed(0)
    module = TrajTokModule(tiny_tokenizer(), create_head(name), segmentation=SegmentationLoss())
    module.head.set_class_names(["a", "b", "c"])  # as the module does for classification data (labels are 0-2)
    batch = example_batch()
    tokens = module(batch["video"])
    # The head's own losses (none for "segment", which trains through it) plus the segmentation terms.
    losses = module.losses(tokens, batch)
    assert set(module.head.losses(tokens, batch)) <= set(losses)
    assert losses and all(v.ndim == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert any(p.grad is not None for p in module.tokenizer.parameters())
    with torch.no_grad():
        module.head.update_metrics(module(batch["video"]), batch)
    metrics = module.head.compute_metrics()
    assert all(torch.isfinite(torch.as_tensor(v)).all() for v in metrics.values())
    module.head.reset_metrics()
    assert module.head.compute_metrics() == {} or name != "clip"


def test_clip_head_metrics_and_key_padding():
    torch.manual_seed(0)
    head = tiny_clip_head(classnames=["a", "b", "c"])
    module = tiny_module(head=head)
    batch = example_batch(6)
    with torch.no_grad():
        tokens = module(batch["video"])
        head.update_metrics(tokens, batch)
        # A repeated sample (as distributed samplers pad) must not change the metrics.
        repeat = {k: v[:2] for k, v in batch.items()}
        head.update_metrics(module(repeat["video"]), repeat)
    metrics = head.compute_metrics()
    for key in ("t2v_r1", "t2v_r5", "v2t_r10", "t2v_medr", "v2t_meanr", "zeroshot_top1"):
        assert key in metrics
    assert 0 <= metrics["t2v_r1"] <= 100 and metrics["t2v_r10"] == 100  # 6 videos: all within top 10

    # Invalid slots are key-padded: changing what they hold changes nothing.
    with torch.no_grad():
        tokens.valid[:, -3:] = False
        before = head.encode_video(tokens)
        tokens.tokens[:, -3:] = 100.0
        assert torch.allclose(before, head.encode_video(tokens), atol=1e-5)


def test_register_head_rejects_a_taken_name():
    with pytest.raises(ValueError, match="taken"):
        @register_head("clip")
        class Other(Head):
            pass
    with pytest.raises(ValueError, match="unknown head"):
        create_head("nope")


def test_warmup_cosine_schedule():
    values = [warmup_cosine(s, warmup_steps=4, total_steps=20, min_ratio=0.1) for s in range(21)]
    assert values[0] == pytest.approx(0.25) and values[3] == pytest.approx(1.0)
    assert values[4] == pytest.approx(1.0) and values[20] == pytest.approx(0.1)
    assert all(a >= b for a, b in itertools.pairwise(values[4:]))


def test_decay_groups_exclude_norms_latents_and_temperature():
    module = tiny_module()
    decay, no_decay = decay_groups(module, 0.05)
    no_decay_ids = {id(p) for p in no_decay["params"]}
    assert id(module.head.logit_scale.log_scale) in no_decay_ids
    assert id(module.tokenizer.segmenter.queries) in no_decay_ids
    assert id(module.tokenizer.encoder.latents) in no_decay_ids
    assert id(module.head.video_proj.weight) in {id(p) for p in decay["params"]}
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0


def test_retrieval_table_format():
    metrics = {f"{d}_{m}": 1.0 for d in ("t2v", "v2t") for m in ("r1", "r5", "r10", "medr", "meanr")}
    table = retrieval_table(metrics, "test")
    assert table.splitlines()[2].split() == ["t2v", "1.00", "1.00", "1.00", "1.00", "1.00"]
    assert retrieval_table({}, "test") == ""


def test_clip_head_scores_labelled_clips_zero_shot_but_will_not_train_on_them():
    head = tiny_clip_head(classnames=["red", "blue"])
    head.build(32)
    tokens = TrajectoryTokens(torch.randn(2, 5, 32), torch.ones(2, 5, dtype=torch.bool), None,
                              torch.zeros(2, 1, 1, 1, dtype=torch.long), (1, 1, 1))
    batch = {"label": torch.tensor([0, 1]), "index": torch.arange(2)}
    head.eval()
    assert head.losses(tokens, batch) == {}
    head.update_metrics(tokens, batch)
    assert "zeroshot_top1" in head.compute_metrics()
    head.train()
    with pytest.raises(ValueError, match="no 'text'"):
        head.losses(tokens, batch)
