"""Evaluation state that accumulates over an epoch and is gathered across processes (torchmetrics)."""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from heads.retrieval import deduplicate, retrieval_metrics, topk_accuracy


class RetrievalEvaluator(Metric):
    """Accumulates video and caption embeddings over an evaluation epoch, gathered across processes.

    Distributed samplers repeat samples to even out ranks; ``compute`` keeps one copy of each video (by data
    set index) and of each caption (by video index and position), then ranks the full similarity matrix.
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        for name in ("video_features", "video_index", "text_features", "text_video_index", "text_position"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, video_features, video_index, text_features, text_video_index, text_position) -> None:
        self.video_features.append(video_features.float())
        self.video_index.append(video_index)
        self.text_features.append(text_features.float())
        self.text_video_index.append(text_video_index)
        self.text_position.append(text_position)

    def compute(self) -> dict[str, torch.Tensor]:
        video_index, videos = deduplicate(dim_zero_cat(self.video_index), dim_zero_cat(self.video_features))
        text_video_index = dim_zero_cat(self.text_video_index)
        position = dim_zero_cat(self.text_position)
        caption_key = text_video_index * (int(position.max()) + 1) + position
        _, texts, text_video_index = deduplicate(caption_key, dim_zero_cat(self.text_features), text_video_index)
        text_to_video = torch.searchsorted(video_index, text_video_index)
        metrics = retrieval_metrics(texts @ videos.T, text_to_video)
        return {name: torch.as_tensor(value) for name, value in metrics.items()}


class ClassificationEvaluator(Metric):
    """Class logits and labels over an evaluation epoch, gathered across processes and de-duplicated by the
    samples' data set index (distributed samplers repeat samples to even out ranks)."""

    full_state_update = False

    def __init__(self, prefix: str = "", ks: tuple[int, ...] = (1, 5)) -> None:
        super().__init__()
        self.prefix, self.ks = prefix, ks
        self.add_state("logits", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")
        self.add_state("index", default=[], dist_reduce_fx="cat")

    def update(self, logits: torch.Tensor, labels: torch.Tensor, index: torch.Tensor) -> None:
        self.logits.append(logits.float())
        self.labels.append(labels)
        self.index.append(index)

    def compute(self) -> dict[str, torch.Tensor]:
        _, logits, labels = deduplicate(dim_zero_cat(self.index), dim_zero_cat(self.logits), dim_zero_cat(self.labels))
        accuracy = topk_accuracy(logits, labels, ks=self.ks)
        return {f"{self.prefix}{k}": torch.as_tensor(v) for k, v in accuracy.items()}


class SampleMeans(Metric):
    """Per-sample scores (``name -> (B,)``) averaged over an evaluation epoch, gathered across processes and
    de-duplicated by data set index. A score a batch does not give (no options to choose from) is left out of
    its mean; a score no batch gave is not reported."""

    full_state_update = False

    def __init__(self, names: tuple[str, ...]) -> None:
        super().__init__()
        self.names = names
        self.add_state("index", default=[], dist_reduce_fx="cat")
        self.add_state("values", default=[], dist_reduce_fx="cat")

    def update(self, index: torch.Tensor, scores: dict[str, torch.Tensor]) -> None:
        unknown = scores.keys() - set(self.names)
        if unknown:
            raise ValueError(f"scores {sorted(unknown)} are not among {self.names}")
        nan = torch.full_like(index, float("nan"), dtype=torch.float)
        self.index.append(index)
        self.values.append(torch.stack([scores.get(name, nan).float() for name in self.names], dim=1))

    def compute(self) -> dict[str, torch.Tensor]:
        _, values = deduplicate(dim_zero_cat(self.index), dim_zero_cat(self.values))
        means = values.nanmean(dim=0)
        return {name: mean for name, mean in zip(self.names, means) if not torch.isnan(mean)}


class TypedAccuracy(Metric):
    """Multiple-choice accuracy per question type, the model's and the answer prior's, over an evaluation epoch.

    Per question it keeps the data set index, the type (an index into ``types``; -1 for a question of none, which
    counts in the overall prior only), whether the chosen option is right and whether the prior's is (NaN where the
    batch did not say). ``compute`` gathers them across processes and keeps one copy of each question (distributed
    samplers repeat samples to even out ranks, which summed counts would count twice), then counts right and total
    per type: what one process reading the whole set counts, as ``SampleMeans`` does for the overall scores.
    Returns, in percent, ``mc_accuracy_<type>`` and ``prior_accuracy_<type>`` for each type with questions, and
    ``prior_accuracy`` over all of them.
    """

    full_state_update = False

    def __init__(self, types: tuple[str, ...]) -> None:
        super().__init__()
        self.types = tuple(types)
        for name in ("index", "type_index", "correct", "prior_correct"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, index: torch.Tensor, type_index: torch.Tensor, correct: torch.Tensor,
               prior_correct: torch.Tensor | None = None) -> None:
        if bool((type_index >= len(self.types)).any() or (type_index < -1).any()):
            raise ValueError(f"type indices must be -1 or index one of {len(self.types)} types, got {type_index.tolist()}")
        self.index.append(index)
        self.type_index.append(type_index.long())
        self.correct.append(correct.float())
        unknown = torch.full_like(correct, float("nan"), dtype=torch.float)
        self.prior_correct.append(unknown if prior_correct is None else prior_correct.float())

    def compute(self) -> dict[str, torch.Tensor]:
        _, kind, correct, prior = deduplicate(dim_zero_cat(self.index), dim_zero_cat(self.type_index),
                                              dim_zero_cat(self.correct), dim_zero_cat(self.prior_correct))
        out = {}
        for i, name in enumerate(self.types):
            mine = kind == i
            if bool(mine.any()):
                out[f"mc_accuracy_{name}"] = 100 * correct[mine].mean()
                out.update(percent_known(f"prior_accuracy_{name}", prior[mine]))
        out.update(percent_known("prior_accuracy", prior))
        return out


def percent_known(name: str, hits: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{name: percent of hits}`` over the known (not NaN) entries of ``hits``; ``{}`` when none is known."""
    known = hits[~torch.isnan(hits)]
    return {name: 100 * known.mean()} if known.numel() else {}
