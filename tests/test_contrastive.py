"""The CLIP loss: its value, and that 2-process DDP (gloo, CPU) reproduces single-process numbers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from processes import run_ranks
from torch import nn

from heads.contrastive import LogitScale, clip_loss, gather_with_grad

WORLD = 2
LOCAL_B, IN_DIM, DIM = 3, 6, 5


def naive_clip_loss(v: torch.Tensor, t: torch.Tensor, scale: float) -> torch.Tensor:
    """Symmetric InfoNCE written out sample by sample: -log softmax of the matching pair, both ways."""
    n = v.shape[0]
    total = v.new_zeros(())
    for i in range(n):
        v2t = torch.stack([scale * v[i] @ t[j] for j in range(n)])
        t2v = torch.stack([scale * t[i] @ v[j] for j in range(n)])
        total = total - (v2t[i] - torch.logsumexp(v2t, 0)) - (t2v[i] - torch.logsumexp(t2v, 0))
    return total / (2 * n)


def global_batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(WORLD * LOCAL_B, IN_DIM, generator=g), torch.randn(WORLD * LOCAL_B, IN_DIM, generator=g)


class TinyClip(nn.Module):
    """Two projections and a temperature: enough parameters to check DDP's averaged gradients."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.video = nn.Linear(IN_DIM, DIM)
        self.text = nn.Linear(IN_DIM, DIM)
        self.scale = LogitScale()

    def forward(self, v: torch.Tensor, t: torch.Tensor, gather: bool = True) -> torch.Tensor:
        return clip_loss(F.normalize(self.video(v), dim=-1), F.normalize(self.text(t), dim=-1), self.scale(), gather)


def _input_grads(rank: int) -> dict:
    """Loss and gradients w.r.t. this rank's raw inputs (normalised inside, so that path is covered too)."""
    v_all, t_all = global_batch()
    shard = slice(rank * LOCAL_B, (rank + 1) * LOCAL_B)
    v = v_all[shard].clone().requires_grad_()
    t = t_all[shard].clone().requires_grad_()
    scale = torch.tensor(1 / 0.07, requires_grad=True)
    loss = clip_loss(F.normalize(v, dim=-1), F.normalize(t, dim=-1), scale)
    loss.backward()
    with torch.no_grad():
        local_loss = clip_loss(F.normalize(v, dim=-1), F.normalize(t, dim=-1), scale, gather=False)
    return {
        "loss": loss.detach(),
        "v_grad": v.grad,
        "t_grad": t.grad,
        "scale_grad": scale.grad,
        "local_loss": local_loss,
    }


def _ddp_param_grads(rank: int) -> dict[str, torch.Tensor]:
    """Parameter gradients after DDP's averaging (the model is freed before the group is destroyed)."""
    v_all, t_all = global_batch()
    shard = slice(rank * LOCAL_B, (rank + 1) * LOCAL_B)
    model = nn.parallel.DistributedDataParallel(TinyClip())
    model(v_all[shard], t_all[shard]).backward()
    return {n: p.grad.clone() for n, p in model.module.named_parameters()}


def _worker(rank: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        result = _input_grads(rank)
        result["gathered"] = gather_with_grad(torch.full((2,), float(rank))).clone()
        result["param_grads"] = _ddp_param_grads(rank)
        torch.save(result, f"{out}/rank{rank}.pt")
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("ddp")
    run_ranks(_worker, str(out), nprocs=WORLD)
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def test_matches_naive_loss() -> None:
    v, t = (F.normalize(x, dim=-1) for x in global_batch())
    assert torch.allclose(clip_loss(v, t, torch.tensor(10.0)), naive_clip_loss(v, t, 10.0), atol=1e-6)


def test_hand_computed_loss() -> None:
    # Orthonormal pairs, scale s: each row's logits are s on the diagonal and 0 elsewhere.
    v = torch.eye(3)
    loss = clip_loss(v, v.clone(), torch.tensor(2.0))
    expected = -math.log(math.exp(2) / (math.exp(2) + 2))
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_not_distributed_gather_is_identity() -> None:
    x = torch.randn(4, 3)
    assert gather_with_grad(x) is x


@pytest.mark.distributed
@pytest.mark.slow
def test_ddp_gather_concatenates_in_rank_order(ddp_results) -> None:
    expected = torch.tensor([0.0, 0.0, 1.0, 1.0])
    for r in ddp_results:
        assert torch.equal(r["gathered"], expected)


@pytest.mark.distributed
@pytest.mark.slow
def test_ddp_loss_equals_single_process(ddp_results) -> None:
    v_all, t_all = (x.clone().requires_grad_() for x in global_batch())
    scale = torch.tensor(1 / 0.07, requires_grad=True)
    loss = clip_loss(F.normalize(v_all, dim=-1), F.normalize(t_all, dim=-1), scale)
    loss.backward()

    # Each rank returns its local rows' loss; their mean is the global-batch loss.
    ddp_loss = torch.stack([r["loss"] for r in ddp_results]).mean()
    assert ddp_loss.item() == pytest.approx(loss.item(), abs=1e-6)
    # Each rank's input gradient is W times the single-process one (DDP's averaging divides by W).
    v_grad = torch.cat([r["v_grad"] for r in ddp_results]) / WORLD
    t_grad = torch.cat([r["t_grad"] for r in ddp_results]) / WORLD
    assert torch.allclose(v_grad, v_all.grad, atol=1e-6)
    assert torch.allclose(t_grad, t_all.grad, atol=1e-6)
    scale_grad = torch.stack([r["scale_grad"] for r in ddp_results]).mean()
    assert scale_grad.item() == pytest.approx(scale.grad.item(), abs=1e-6)
    assert v_all.grad.abs().max() > 1e-3  # the comparison is not between zeros


@pytest.mark.distributed
@pytest.mark.slow
def test_ddp_without_gather_uses_local_negatives(ddp_results) -> None:
    v_all, t_all = (F.normalize(x, dim=-1) for x in global_batch())
    scale = torch.tensor(1 / 0.07)
    for rank, r in enumerate(ddp_results):
        shard = slice(rank * LOCAL_B, (rank + 1) * LOCAL_B)
        assert r["local_loss"].item() == pytest.approx(clip_loss(v_all[shard], t_all[shard], scale).item(), abs=1e-6)
    # ...which is a different number from the gathered loss.
    assert abs(ddp_results[0]["local_loss"].item() - ddp_results[0]["loss"].item()) > 1e-3


@pytest.mark.distributed
@pytest.mark.slow
def test_ddp_parameter_grads_equal_single_process(ddp_results) -> None:
    model = TinyClip()
    model(*global_batch()).backward()
    for name, p in model.named_parameters():
        for r in ddp_results:
            assert torch.allclose(r["param_grads"][name], p.grad, atol=1e-6), name
        assert p.grad.abs().max() > 1e-4, name


def test_logit_scale_init_and_clamp() -> None:
    ls = LogitScale()
    assert ls().item() == pytest.approx(1 / 0.07, rel=1e-6)
    assert ls.temperature == pytest.approx(0.07, rel=1e-6)
    with torch.no_grad():
        ls.log_scale.fill_(10.0)  # scale e^10 ~ 22026, beyond 1000
    assert ls().item() == pytest.approx(1000.0, rel=1e-5)
    assert ls.log_scale.item() == pytest.approx(math.log(1000), rel=1e-6)  # the parameter itself was clamped
    with torch.no_grad():
        ls.log_scale.fill_(-3.0)
    assert ls().item() == pytest.approx(2.0, rel=1e-6)
    assert ls.temperature == pytest.approx(0.5, rel=1e-6)


def test_logit_scale_gets_gradient_at_bound() -> None:
    # At the upper bound the gradient still flows, so the optimiser can bring it back.
    ls = LogitScale(init_temperature=0.001)
    ls().backward()
    assert ls.log_scale.grad.item() == pytest.approx(1000.0, rel=1e-5)
    assert not LogitScale(learnable=False).log_scale.requires_grad


def test_logit_scale_built_from_yaml() -> None:
    import yaml
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--scale", type=LogitScale)
    config = {"scale": {"class_path": "heads.contrastive.LogitScale", "init_args": {"init_temperature": 0.05}}}
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes  # renamed in 4.49
    scale = instantiate(parser.parse_string(yaml.safe_dump(config))).scale
    assert scale().item() == pytest.approx(20.0, rel=1e-6)
