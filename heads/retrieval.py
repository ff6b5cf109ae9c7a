"""Evaluation for the CLIP head: video-text retrieval ranks and recalls, and zero-shot classification.

Pure functions over full score matrices, vectorised (no loop over queries). Gather the embeddings of the
whole evaluation set first (and :func:`deduplicate` what a distributed sampler padded), then call these.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

# A short prompt ensemble for video classes, in the manner of CLIP's 80 ImageNet templates.
VIDEO_TEMPLATES: tuple[str, ...] = (
    "a video of {}.",
    "a video of a person {}.",
    "a clip of {}.",
    "a video showing {}.",
    "footage of {}.",
    "a short video of {}.",
)


def _summary(prefix: str, ranks: Tensor) -> dict[str, float]:
    """Recall@{1,5,10} in percent and median / mean of 1-based ranks."""
    ranks = ranks.double()
    out = {f"{prefix}_r{k}": 100.0 * (ranks <= k).double().mean().item() for k in (1, 5, 10)}
    # The median of an even count is the mean of the two middle ranks (numpy's and CLIP4Clip's convention).
    out[f"{prefix}_medr"] = ranks.quantile(0.5).item()
    out[f"{prefix}_meanr"] = ranks.mean().item()
    return out


def retrieval_ranks(similarity: Tensor, text_to_video: Tensor) -> tuple[Tensor, Tensor]:
    """1-based ranks of the correct items: ``(t2v (num_texts,), v2t (num_videos_with_captions,))``.

    ``similarity`` is ``(num_texts, num_videos)``; ``text_to_video[i]`` is the video of caption ``i``.
    A video may have any number of captions.

    - text-to-video: each caption ranks all videos; its rank is that of its own video.
    - video-to-text: each video ranks all texts; its rank is that of its best-ranked caption (the minimum
      over its captions), the usual multi-caption convention (MSR-VTT, COCO). Videos without any caption
      have no v2t rank (they still count as distractors for t2v); v2t ranks come in video-index order.

    Ties are pessimistic: rank = 1 + the number of *wrong* items scoring at least as high as the (best)
    right one. So a collapsed model whose scores are all equal gets the worst rank, never the best (an
    optimistic rule would give it R@1 = 100%). Exact float ties are rare otherwise.
    """
    if similarity.ndim != 2 or text_to_video.shape != (similarity.shape[0],):
        raise ValueError(f"similarity (T, V) and text_to_video (T,), got {similarity.shape}, {text_to_video.shape}")
    if not torch.isfinite(similarity).all():
        raise ValueError("similarity has NaN or inf; ranks would be meaningless")
    num_texts, num_videos = similarity.shape
    gt = text_to_video.long().to(similarity.device)
    texts = torch.arange(num_texts, device=similarity.device)
    positive = similarity[texts, gt]  # (T,) each caption's score with its own video

    # t2v: the count of videos scoring >= the right one includes the right one itself, i.e. the "+ 1".
    t2v = (similarity >= positive[:, None]).sum(dim=1)

    # v2t: ranks are monotone in the score, so the best caption is the highest-scoring one.
    best = torch.full((num_videos,), -torch.inf, dtype=similarity.dtype, device=similarity.device)
    best = best.scatter_reduce(0, gt, positive, reduce="amax")
    at_least_best = (similarity >= best[None, :]).sum(dim=0)  # (V,) all texts, right ones included
    # Right captions with a score >= best are exactly those tied at the best: take them out, add 1.
    own_at_best = torch.zeros(num_videos, dtype=torch.long, device=similarity.device)
    own_at_best = own_at_best.scatter_add(0, gt, (positive >= best[gt]).long())
    has_caption = torch.zeros(num_videos, dtype=torch.bool, device=similarity.device)
    has_caption[gt] = True
    v2t = (at_least_best - own_at_best + 1)[has_caption]
    return t2v, v2t


def retrieval_metrics(similarity: Tensor, text_to_video: Tensor) -> dict[str, float]:
    """Text-to-video and video-to-text R@1/5/10 (percent), median and mean rank (1-based).

    Keys: ``t2v_r1, t2v_r5, t2v_r10, t2v_medr, t2v_meanr`` and the same with ``v2t_``. Conventions
    (multiple captions per video, pessimistic ties): see :func:`retrieval_ranks`.
    """
    t2v, v2t = retrieval_ranks(similarity, text_to_video)
    return _summary("t2v", t2v) | _summary("v2t", v2t)


def deduplicate(index: Tensor, *tensors: Tensor) -> tuple[Tensor, ...]:
    """Drop repeated samples, keeping the first occurrence of each ``index``; return all sorted by index.

    A ``DistributedSampler`` pads the last shard by repeating samples, so gathered evaluation outputs
    count some samples twice; retrieval over them would be wrong. Returns ``(unique_index, *tensors)``,
    every tensor indexed along dim 0 like ``index``.
    """
    if index.ndim != 1 or any(t.shape[0] != index.shape[0] for t in tensors):
        raise ValueError("index must be 1-d and every tensor must have len(index) rows")
    # A stable sort keeps equal indices in their original order, so the first of each run is the first seen.
    sorted_index, order = torch.sort(index, stable=True)
    first = torch.ones_like(sorted_index, dtype=torch.bool)
    first[1:] = sorted_index[1:] != sorted_index[:-1]
    keep = order[first]
    return (index[keep], *(t[keep.to(t.device)] for t in tensors))


@torch.no_grad()
def zero_shot_weights(
    encode_text: Callable[[list[str]], Tensor],
    classnames: Sequence[str],
    templates: Sequence[str] = VIDEO_TEMPLATES,
    batch_size: int = 256,
) -> Tensor:
    """``(C, D)`` classifier weights from class names: CLIP's prompt ensemble.

    Each class name is put into every template, the prompts are embedded by ``encode_text`` (texts ->
    ``(N, D)``), L2-normalised, averaged over templates, and normalised again: averaging normalised
    embeddings weighs every template equally, and the final normalisation makes the logits cosines.
    Prompts go to ``encode_text`` in chunks of ``batch_size``. Computed without gradients.
    """
    if not classnames or not templates:
        raise ValueError("need at least one class name and one template")
    prompts = [template.format(name) for name in classnames for template in templates]
    emb = torch.cat([encode_text(prompts[i : i + batch_size]) for i in range(0, len(prompts), batch_size)])
    emb = F.normalize(emb.float(), dim=-1).view(len(classnames), len(templates), -1)
    return F.normalize(emb.mean(dim=1), dim=-1)


def topk_accuracy(logits: Tensor, labels: Tensor, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Top-k accuracies in percent, keys ``top1``, ``top5``, ...; ``logits (N, C)``, ``labels (N,)``.

    A sample is right at k when its class ranks within k, with the same pessimistic ties as retrieval:
    rank = 1 + the number of wrong classes with a logit at least as high. With fewer than k classes,
    top-k is 100%.
    """
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f"logits (N, C) and labels (N,), got {logits.shape}, {labels.shape}")
    labels = labels.long().to(logits.device)
    correct = logits.gather(1, labels[:, None])
    rank = (logits >= correct).sum(dim=1)
    return {f"top{k}": 100.0 * (rank <= k).double().mean().item() for k in ks}


def retrieval_table(metrics: dict[str, float], stage: str) -> str:
    """A text table of t2v / v2t recall and ranks (``retrieval_metrics``' keys), or ``""`` without them."""
    columns = [("R@1", "r1"), ("R@5", "r5"), ("R@10", "r10"), ("MdR", "medr"), ("MnR", "meanr")]
    rows = []
    for direction in ("t2v", "v2t"):
        keys = [f"{direction}_{suffix}" for _, suffix in columns]
        if all(k in metrics for k in keys):
            rows.append(f"{direction:<6}" + "".join(f"{metrics[k]:>9.2f}" for k in keys))
    if not rows:
        return ""
    header = f"{'':<6}" + "".join(f"{name:>9}" for name, _ in columns)
    return "\n".join(["Retrieval (" + stage + ")", header, *rows])


def classification_table(metrics: dict[str, float], stage: str) -> str:
    """A one-line top-1 / top-5 accuracy summary, or ``""`` when there are no classification metrics."""
    keys = ["top1", "top5"]
    if not all(k in metrics for k in keys):
        return ""
    return f"Classification ({stage}): top-1 {metrics[keys[0]]:.2f}  top-5 {metrics[keys[1]]:.2f}"
