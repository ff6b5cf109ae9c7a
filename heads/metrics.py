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
