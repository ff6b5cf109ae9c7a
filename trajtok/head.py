"""The head contract and the registry of heads (part of the core: it knows tokens, not any head or data).

A head is one use of the tokenizer (contrastive video CLIP, probing classifier, VLM connector). It sees only
``TrajectoryTokens`` and the batch, never the tokenizer's insides. To add one: subclass ``Head`` (also exported
as ``heads.Head``), decorate it with ``@register_head("name")``, and point a yaml's ``model.head.class_path`` at it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import nn

from trajtok.tokens import TrajectoryTokens

_REGISTRY: dict[str, type[Head]] = {}
H = TypeVar("H", bound=type["Head"])


class Head(nn.Module):
    """What ``TrajTokModule`` asks of a head.

    - ``build(token_dim)``: make the layers that depend on the tokenizer's width. Called once by the
      module, right after construction, so that yaml configs need not repeat the width.
    - ``losses(tokens, batch)``: named scalar losses; the training loss is their sum.
    - ``update_metrics(tokens, batch)`` / ``compute_metrics()`` / ``reset_metrics()``: evaluation. Keep
      state in ``torchmetrics.Metric`` objects (or sync it yourself): ``compute_metrics`` must return the
      metrics of the whole data set across processes.
    - ``summary(metrics, stage)``: a few lines that ``trajtok test`` prints from this head's metrics (e.g. the
      retrieval table); default none.
    - ``predict(tokens, batch)``: anything for ``trajtok predict``.
    - ``encode_example(tokens)``: the head's per-clip work on an example clip's tokens, run once under Lightning's
      model summary so that its FLOPs column shows what the head costs beside the tokenizer; default nothing.
    - ``set_class_names(names)``: called by the module before fitting or evaluating when the datamodule has a
      class list (classification data); a head that classifies checks or adopts it.
    - ``set_question_types(types)``: called likewise when the datamodule's questions have types (QA data whose rows
      name them); a head that answers questions reports accuracy per type.
    - ``needs_tokens``: False for a head that reads only the assignment (``logits`` / ``labels`` / ``valid``),
      never ``tokens.tokens``; the module then lets a tokenizer that can skip its trajectory encoder do so.
    """

    name: str = ""
    needs_tokens: bool = True

    def build(self, token_dim: int) -> None:
        """Create width-dependent layers; the default needs none."""

    def losses(self, tokens: TrajectoryTokens, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def update_metrics(self, tokens: TrajectoryTokens, batch: dict[str, Any]) -> None:
        """Accumulate what the evaluation metrics need; the default evaluates nothing."""

    def compute_metrics(self) -> dict[str, torch.Tensor]:
        return {}

    def reset_metrics(self) -> None:
        """Forget the accumulated evaluation state."""

    def summary(self, metrics: dict[str, float], stage: str) -> str:
        """Text for the end of an evaluation from ``compute_metrics()``'s values (keys without the stage);
        ``""``: nothing to print."""
        return ""

    def predict(self, tokens: TrajectoryTokens, batch: dict[str, Any]) -> Any:
        return {"tokens": tokens.tokens, "valid": tokens.valid}

    def encode_example(self, tokens: TrajectoryTokens) -> Any:
        """The head's forward on one example clip's tokens, for the model summary's FLOPs; default nothing."""

    def forward(self, tokens: TrajectoryTokens) -> Any:
        """Calling the head runs ``encode_example``: as a module call, so that FLOP counters and the model
        summary attribute the work to the head."""
        return self.encode_example(tokens)

    def set_class_names(self, names: list[str]) -> None:
        """The data set's class names in label order; the default ignores them."""

    def set_question_types(self, types: list[str]) -> None:
        """The data's question types (QA batches' ``type``); the default ignores them."""


def register_head(name: str) -> Callable[[H], H]:
    """Class decorator: make a head available under a short name."""

    def decorate(cls: H) -> H:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"head name {name!r} is taken by {_REGISTRY[name].__qualname__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def list_heads() -> list[str]:
    return sorted(_REGISTRY)


def get_head_class(name: str) -> type[Head]:
    if name not in _REGISTRY:
        raise ValueError(f"unknown head {name!r}; registered: {list_heads()}")
    return _REGISTRY[name]


def create_head(name: str, **kwargs: Any) -> Head:
    return get_head_class(name)(**kwargs)
