"""Heads: the uses of TrajTok. Each is a ``Head`` registered under a short name."""

from heads.clip import ClipHead
from heads.probe import ProbeHead
from heads.segment import SegmentHead
from heads.text_encoders import (
    ByteTextEncoder,
    HFTextEncoder,
    MiniLMTextEncoder,
    TextEncoder,
)
from heads.vlm import VLMHead
from trajtok.head import Head, create_head, get_head_class, list_heads, register_head

__all__ = [
    "ByteTextEncoder",
    "ClipHead",
    "HFTextEncoder",
    "Head",
    "MiniLMTextEncoder",
    "ProbeHead",
    "SegmentHead",
    "TextEncoder",
    "VLMHead",
    "create_head",
    "get_head_class",
    "list_heads",
    "register_head",
]
