"""Retrieval metrics against a sort-based loop oracle; dedup; zero-shot weights and top-k accuracy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DistributedSampler

from heads.retrieval import (
    VIDEO_TEMPLATES,
    deduplicate,
    retrieval_metrics,
    retrieval_ranks,
    topk_accuracy,
    zero_shot_weights,
)


def oracle_ranks(sim: np.ndarray, t2v: np.ndarray) -> tuple[list[int], list[int]]:
    """Sort every query's candidates (score descending, wrong before right on ties), find the first right one."""
    num_texts, num_videos = sim.shape
    t2v_ranks = []
    for i in range(num_texts):
        order = sorted(range(num_videos), key=lambda v: (-sim[i, v], v == t2v[i]))
        t2v_ranks.append(order.index(t2v[i]) + 1)
    v2t_ranks = []
    for v in range(num_videos):
        if not (t2v == v).any():
            continue
        order = sorted(range(num_texts), key=lambda j: (-sim[j, v], t2v[j] == v))
        v2t_ranks.append(min(pos for pos, j in enumerate(order) if t2v[j] == v) + 1)
    return t2v_ranks, v2t_ranks


def oracle_metrics(sim: np.ndarray, t2v: np.ndarray) -> dict[str, float]:
    out = {}
    for name, ranks in zip(("t2v", "v2t"), oracle_ranks(sim, t2v)):
        r = np.asarray(ranks, dtype=float)
        for k in (1, 5, 10):
            out[f"{name}_r{k}"] = 100.0 * float(np.mean(r <= k))
        out[f"{name}_medr"] = float(np.median(r))
        out[f"{name}_meanr"] = float(np.mean(r))
    return out


def random_case(seed: int, ties: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Videos with 0-4 captions each (some videos caption-less), captions in shuffled order."""
    g = torch.Generator().manual_seed(seed)
    num_videos = int(torch.randint(2, 16, (1,), generator=g))
    counts = torch.randint(0, 5, (num_videos,), generator=g)
    counts[int(torch.randint(0, num_videos, (1,), generator=g))] += 1  # at least one caption in all
    text_to_video = torch.repeat_interleave(torch.arange(num_videos), counts)
    text_to_video = text_to_video[torch.randperm(len(text_to_video), generator=g)]
    sim = torch.randn(len(text_to_video), num_videos, generator=g)
    if ties:  # few distinct values: ties everywhere, also between captions of one video
        sim = torch.randint(0, 3, sim.shape, generator=g).float()
    return sim, text_to_video


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", range(12))
def test_matches_loop_oracle(seed: int, ties: bool) -> None:
    sim, text_to_video = random_case(seed, ties)
    got = retrieval_metrics(sim, text_to_video)
    expected = oracle_metrics(sim.numpy(), text_to_video.numpy())
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key] == pytest.approx(expected[key], abs=1e-9), key


def test_hand_computed() -> None:
    # 3 videos; captions 0, 1 -> video 0, caption 2 -> video 1, caption 3 -> video 2.
    sim = torch.tensor(
        [
            [0.9, 0.1, 0.5],  # t2v rank 1
            [0.2, 0.8, 0.3],  # rank 3 (0.8 and 0.3 beat 0.2)
            [0.7, 0.6, 0.1],  # rank 2
            [0.4, 0.6, 0.4],  # rank 3: video 1 is above and the tie with video 0 counts against it
        ]
    )
    text_to_video = torch.tensor([0, 0, 1, 2])
    t2v, v2t = retrieval_ranks(sim, text_to_video)
    assert t2v.tolist() == [1, 3, 2, 3]
    # video 0: best own caption 0 (0.9), nothing above -> 1.
    # video 1: own caption 2 scores 0.6; captions 1 (0.8) and 3 (0.6, tie) are wrong and >= -> 3.
    # video 2: own caption 3 scores 0.4; caption 0 (0.5) is above -> 2.
    assert v2t.tolist() == [1, 3, 2]
    m = retrieval_metrics(sim, text_to_video)
    assert m["t2v_r1"] == pytest.approx(25.0)
    assert m["t2v_r5"] == pytest.approx(100.0)
    assert m["t2v_medr"] == pytest.approx(2.5)
    assert m["t2v_meanr"] == pytest.approx(2.25)
    assert m["v2t_r1"] == pytest.approx(100 / 3)
    assert m["v2t_r5"] == pytest.approx(100.0)
    assert m["v2t_medr"] == pytest.approx(2.0)


def test_even_median_is_mean_of_middles() -> None:
    sim = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # text 0 -> video 0 rank 1, text 1 -> video 1 rank 2
    m = retrieval_metrics(sim, torch.tensor([0, 1]))
    assert m["t2v_medr"] == pytest.approx(1.5)


def test_collapsed_scores_rank_worst() -> None:
    sim = torch.zeros(6, 3)
    m = retrieval_metrics(sim, torch.tensor([0, 0, 1, 1, 2, 2]))
    assert m["t2v_r1"] == 0.0 and m["t2v_medr"] == 3.0
    assert m["v2t_r1"] == 0.0 and m["v2t_medr"] == 5.0  # 4 wrong texts tie, then the right one


def test_perfect_retrieval() -> None:
    m = retrieval_metrics(torch.eye(7), torch.arange(7))
    assert all(m[f"{d}_r1"] == 100.0 and m[f"{d}_medr"] == 1.0 for d in ("t2v", "v2t"))


def test_rejects_nan() -> None:
    with pytest.raises(ValueError):
        retrieval_metrics(torch.tensor([[float("nan"), 0.0]]), torch.tensor([0]))


def test_deduplicate_keeps_first_occurrence_sorted() -> None:
    index = torch.tensor([3, 1, 3, 0, 1, 2])
    emb = torch.arange(6.0)[:, None].expand(6, 2)
    other = torch.tensor([30, 10, 31, 0, 11, 20])
    uniq, emb_d, other_d = deduplicate(index, emb, other)
    assert uniq.tolist() == [0, 1, 2, 3]
    assert emb_d[:, 0].tolist() == [3.0, 1.0, 5.0, 0.0]
    assert other_d.tolist() == [0, 10, 20, 30]


def test_deduplicate_distributed_sampler_padding() -> None:
    # 5 samples over 2 ranks: the sampler repeats sample 0 to give both ranks 3.
    shards = [list(DistributedSampler(range(5), num_replicas=2, rank=r, shuffle=False)) for r in range(2)]
    gathered = torch.tensor(shards[0] + shards[1])
    assert len(gathered) == 6
    features = gathered.float() * 10
    uniq, feats = deduplicate(gathered, features)
    assert uniq.tolist() == [0, 1, 2, 3, 4]
    assert feats.tolist() == [0.0, 10.0, 20.0, 30.0, 40.0]


WORDS = ["a", "video", "of", "clip", "showing", "footage", "short", "person", "dog", "cat", "surfing", "juggling"]


def bag_of_words(texts: list[str]) -> torch.Tensor:
    """A toy text encoder: word counts. Template words make the norms differ between templates."""
    out = torch.zeros(len(texts), len(WORDS))
    for i, text in enumerate(texts):
        for word in text.rstrip(".").split():
            out[i, WORDS.index(word)] += 1
    return out


def test_zero_shot_weights_prompt_ensemble() -> None:
    classes = ["dog", "cat", "surfing", "juggling"]
    templates = ["a video of {}.", "footage of {}.", "a short video of a dog {}."]
    w = zero_shot_weights(bag_of_words, classes, templates, batch_size=5)  # chunks cross class boundaries
    assert w.shape == (4, len(WORDS))
    assert torch.allclose(w.norm(dim=1), torch.ones(4))
    for c, name in enumerate(classes):
        per_template = F.normalize(bag_of_words([t.format(name) for t in templates]), dim=-1)
        assert torch.allclose(w[c], F.normalize(per_template.mean(0), dim=0), atol=1e-6)
    # Averaging the normalised embeddings is not the same as normalising the raw mean: the test can tell.
    raw = F.normalize(bag_of_words([t.format("dog") for t in templates]).mean(0), dim=0)
    assert not torch.allclose(w[0], raw, atol=1e-3)


def test_zero_shot_classifies_toy_videos() -> None:
    classes = ["dog", "cat", "surfing", "juggling"]
    w = zero_shot_weights(bag_of_words, classes)  # the default video templates
    assert len(VIDEO_TEMPLATES) >= 3
    videos = F.normalize(bag_of_words(classes), dim=-1)  # a "video" embedding: its class word alone
    labels = torch.tensor([0, 1, 2, 3])
    acc = topk_accuracy(videos @ w.T, labels, ks=(1, 2))
    assert acc == {"top1": 100.0, "top2": 100.0}


def test_topk_accuracy_hand_and_ties() -> None:
    logits = torch.tensor(
        [
            [0.1, 0.9, 0.3, 0.2],  # label 1: rank 1
            [0.5, 0.4, 0.6, 0.7],  # label 0: rank 3
            [0.2, 0.2, 0.2, 0.2],  # label 2: all tied -> rank 4 (pessimistic)
            [0.0, 0.3, 0.3, 0.1],  # label 1: tied with class 2 -> rank 2
        ]
    )
    labels = torch.tensor([1, 0, 2, 1])
    acc = topk_accuracy(logits, labels, ks=(1, 2, 3, 5))
    assert acc == pytest.approx({"top1": 25.0, "top2": 50.0, "top3": 75.0, "top5": 100.0})


def test_topk_accuracy_matches_loop() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randint(0, 4, (50, 10), generator=g).float()
    labels = torch.randint(0, 10, (50,), generator=g)
    ranks = [
        1 + sum(int(logits[i, c] >= logits[i, labels[i]]) for c in range(10) if c != labels[i]) for i in range(50)
    ]
    acc = topk_accuracy(logits, labels, ks=(1, 5))
    assert acc["top1"] == pytest.approx(100 * np.mean(np.asarray(ranks) <= 1))
    assert acc["top5"] == pytest.approx(100 * np.mean(np.asarray(ranks) <= 5))
