"""Non-finite losses and gradients: the step is skipped (no weight or optimizer state changes), counted and
logged, and training stops with a clear error past ``max_nonfinite_steps``. DDP agreement is in
``test_distributed.py``."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from builders import quiet_trainer
from faults import Corrupt, SquareHead, TinyTokenizer, WeightTrace
from torch.utils.data import DataLoader

from trajtok.callbacks import NonFiniteSteps
from trajtok.module import TrajTokModule


def clips(n: int = 24) -> DataLoader:
    gen = torch.Generator().manual_seed(0)
    data = [{"video": torch.randn(2, 3, 4, 4, generator=gen), "index": i} for i in range(n)]
    return DataLoader(data, batch_size=4)


def fit(corrupt: Corrupt, steps: int, limit: int = 10, **trainer_kwargs) -> tuple[TrajTokModule, L.Trainer, list]:
    torch.manual_seed(0)
    module = TrajTokModule(TinyTokenizer(), SquareHead(), lr=1e-2, warmup_steps=0, max_nonfinite_steps=limit)
    trace = WeightTrace()  # rows in memory; nothing written into the working folder
    trainer = quiet_trainer(max_steps=steps, callbacks=[corrupt, trace], log_every_n_steps=1, **trainer_kwargs)
    trainer.fit(module, clips())
    return module, trainer, [row[1:] for row in trace.rows]  # rows[i + 1]: weights after batch i


def adam_steps(trainer: L.Trainer) -> set[int]:
    return {int(state["step"]) for state in trainer.optimizers[0].state.values()}


@pytest.mark.parametrize("fault", ["nan_video", "nan_grad"])
def test_a_nonfinite_step_changes_nothing_and_training_goes_on(fault):
    with pytest.warns(UserWarning, match=r"non-finite (loss|gradients).*optimizer step skipped \(1 of at most 10\)"):
        module, trainer, weights = fit(Corrupt(**{fault: [2]}), steps=5, gradient_clip_val=1.0)
    assert weights[3] == weights[2]  # batch 2 was skipped: not one weight moved
    for before, after in [(0, 1), (1, 2), (3, 4), (4, 5)]:
        assert weights[after] != weights[before]  # every other batch stepped
    assert adam_steps(trainer) == {4}  # nor did AdamW's state (moments, step count) see the skipped batch
    assert next(c for c in trainer.callbacks if isinstance(c, NonFiniteSteps)).skipped == 1
    assert trainer.logged_metrics["train/nonfinite_steps"] == 1
    assert all(torch.isfinite(p).all() for p in module.parameters())


def test_training_stops_past_the_limit_naming_it_and_the_losses():
    with (pytest.raises(RuntimeError, match=r"max_nonfinite_steps=2") as error,
          pytest.warns(UserWarning, match="optimizer step skipped")):
        fit(Corrupt(nan_video=[1, 3], nan_grad=[4]), steps=10, limit=2)
    message = str(error.value)
    assert "3 steps had a non-finite loss or gradients" in message
    assert "non-finite gradients (norm nan)" in message  # the step that crossed the limit
    assert "step 0: " in message and "step 1: nan" in message  # the recent losses, finite and not


def test_limit_zero_stops_at_the_first_nonfinite_loss():
    with pytest.raises(RuntimeError, match=r"non-finite loss \(loss=nan, tokens=.*\).*max_nonfinite_steps=0"):
        fit(Corrupt(nan_video=[0]), steps=3, limit=0)


def test_the_count_is_saved_in_checkpoints_and_the_limit_checked():
    guard = NonFiniteSteps(max_steps=4)
    guard.skipped = 3
    restored = NonFiniteSteps()
    restored.load_state_dict(guard.state_dict())
    assert restored.skipped == 3
    with pytest.raises(ValueError, match="max_nonfinite_steps"):
        TrajTokModule(TinyTokenizer(), SquareHead(), max_nonfinite_steps=-1)


def test_the_module_adds_the_guard_at_its_limit_unless_the_trainer_has_one():
    module = TrajTokModule(TinyTokenizer(), SquareHead(), max_nonfinite_steps=3)
    module.trainer = quiet_trainer(callbacks=[])
    [guard] = [c for c in module.configure_callbacks() if isinstance(c, NonFiniteSteps)]
    assert guard.max_steps == 3
    module.trainer = quiet_trainer(callbacks=[NonFiniteSteps(1)])
    assert not any(isinstance(c, NonFiniteSteps) for c in module.configure_callbacks())
