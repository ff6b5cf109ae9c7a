"""The registry of tokenizers and their named sizes, in the style of timm's ``create_model``.

Each tokenizer registers itself where it is defined, with the sizes it is built at:
``@register_tokenizer("vit3d", sizes={"tiny": {...}, "base": {...}})`` on a builder ``(**kwargs) -> nn.Module``.
A size is a *preset*: ``tiny`` for CPU runs on 64 px clips, ``small``, ``base`` for the paper's 224 px layout, and
TrajTok's efficient layouts ``tiny_lite`` and ``lite``, each of which belongs to a *scale* (``tiny`` or ``base``:
frame size and video transformer) whose sizes the peers take. ``create_tokenizer(preset, kind)`` builds one;
registered tokenizers are covered by the shared contract tests, and the benchmarks ask this registry for sizes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

Builder = Callable[..., nn.Module]
_BUILDERS: dict[str, Builder] = {}
_SIZES: dict[str, dict[str, dict[str, Any]]] = {}
#: The scale of each preset that is not a scale itself (TrajTok's efficient layouts).
_SCALE_OF: dict[str, str] = {}


def register_tokenizer(name: str, sizes: Mapping[str, Mapping[str, Any]],
                       scales: Mapping[str, str] | None = None) -> Callable[[Builder], Builder]:
    """Register ``builder(**kwargs)`` under ``name`` with its keyword arguments at each preset (``sizes``);
    ``scales`` names the scale of presets that are layouts of one (e.g. ``{"lite": "base"}``)."""
    def decorate(builder: Builder) -> Builder:
        if name in _BUILDERS:
            raise ValueError(f"tokenizer {name!r} is already registered")
        _BUILDERS[name] = builder
        _SIZES[name] = {preset: dict(kwargs) for preset, kwargs in sizes.items()}
        _SCALE_OF.update(scales or {})
        return builder
    return decorate


def list_tokenizers() -> list[str]:
    return sorted(_BUILDERS)


def list_presets() -> list[str]:
    """Every preset some tokenizer is registered at."""
    return sorted({preset for sizes in _SIZES.values() for preset in sizes})


def scale_of(preset: str) -> str:
    """The scale (``tiny``, ``small``, ``base``) a preset belongs to."""
    return _SCALE_OF.get(preset, preset)


def tokenizer_sizes(kind: str, preset: str) -> dict[str, Any]:
    """The keyword arguments tokenizer ``kind`` is built with at ``preset`` (a peer at a layout preset takes the
    sizes of the layout's scale)."""
    if kind not in _BUILDERS:
        raise ValueError(f"unknown tokenizer kind {kind!r}; known: {list_tokenizers()}")
    sizes = _SIZES[kind]
    for name in (preset, scale_of(preset)):
        if name in sizes:
            return dict(sizes[name])
    raise ValueError(f"unknown preset {preset!r} for tokenizer {kind!r}; known: {sorted(sizes)}")


def create_tokenizer(preset: str = "tiny", kind: str = "trajtok", **overrides: Any) -> nn.Module:
    """Build tokenizer ``kind`` at size ``preset``; keyword arguments override the preset's."""
    sizes = tokenizer_sizes(kind, preset)
    return _BUILDERS[kind](**{**sizes, **overrides})
