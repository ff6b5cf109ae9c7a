"""Lightning DDP with 2 CPU processes (gloo) through the real ``trajtok`` command: a fit with non-finite steps
on one process only (every process skips them together), and ``trajtok test`` of its checkpoint printing the
same retrieval metrics on one process and on two (gathered, de-duplicated: 7 test clips, so the distributed
sampler pads rank 1 with a repeat). FSDP, in this process: what docs/training.md "Scaling up" relies on, that
Lightning refuses it on CPU and cannot clip gradients by norm under it."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import torch
from helpers import ROOT, callback, run_trajtok
from lightning.pytorch.plugins.precision import FSDPPrecision
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from trajtok.cli import main

CONFIG = str(ROOT / "configs/clip.yaml")
DATA = [
    "--config", CONFIG,
    "--data.init_args.synthetic.train=16",  # 2 steps an epoch on each of 2 processes
    "--data.init_args.synthetic.val=8",
    "--data.init_args.synthetic.test=7",  # odd: the distributed sampler pads with a repeat
    "--data.init_args.loader.batch_size=4",
    "--data.init_args.loader.num_workers=0",
    "--data.init_args.clip.num_frames=4",
    "--data.init_args.clip.image_size=32",
    "--model.head.init_args.depth=1",
    "--trainer.enable_progress_bar=false",
]
DDP = ["--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu"]


@pytest.fixture(scope="module")
def ddp_fit(tmp_path_factory, cache) -> Path:
    """4 steps of DDP; batch 1 has NaN clips on process 1 only, batch 2 a NaN gradient on process 1 only (after
    the all-reduce, as one FSDP shard could have)."""
    folder = tmp_path_factory.mktemp("ddp_fit")
    result = run_trajtok(
        ["fit", *DATA, *DDP, "--trainer.max_steps=4", "--trainer.log_every_n_steps=1",
         callback("faults.Corrupt", nan_video=[1], nan_grad=[2], rank=1),
         callback("faults.WeightTrace", path=str(folder / "trace{rank}.json"))],
        folder, cache)
    assert result.returncode == 0, result.stderr[-3000:]
    return folder


@pytest.mark.distributed
@pytest.mark.subprocess
@pytest.mark.slow
def test_ddp_fit_saves_a_checkpoint_and_every_process_skips_the_nonfinite_steps(ddp_fit):
    checkpoint = torch.load(ddp_fit / "runs/clip/checkpoints/last.ckpt", weights_only=True)
    assert checkpoint["global_step"] >= 2 and checkpoint["callbacks"]["NonFiniteSteps"]["skipped"] >= 1
    traces = [json.loads((ddp_fit / f"trace{rank}.json").read_text()) for rank in (0, 1)]
    assert traces[0] == traces[1]  # the weights of both processes agree after every step: none stepped alone
    weights = [row[1:] for row in traces[0]]  # weights[i + 1]: after batch i
    assert len(weights) == 5
    assert weights[1] != weights[0] and weights[4] != weights[3]  # batches 0 and 3 stepped
    assert weights[3] == weights[2] == weights[1]  # batches 1 and 2 did not, on either process
    with open(ddp_fit / "runs/clip/logs/version_0/metrics.csv") as f:
        counts = [float(row["train/nonfinite_steps"]) for row in csv.DictReader(f) if row["train/nonfinite_steps"]]
    assert max(counts) == 2


def retrieval_table(output: str) -> list[str]:
    lines = output.splitlines()
    start = lines.index("Retrieval (test)")
    return lines[start:start + 4]


@pytest.mark.distributed
@pytest.mark.subprocess
@pytest.mark.slow
def test_test_prints_the_same_retrieval_metrics_on_one_and_two_processes(ddp_fit, cache):
    checkpoint = f"--ckpt_path={ddp_fit / 'runs/clip/checkpoints/last.ckpt'}"
    one = run_trajtok(["test", *DATA, checkpoint], ddp_fit, cache)
    assert one.returncode == 0, one.stderr[-3000:]
    two = run_trajtok(["test", *DATA, *DDP, checkpoint], ddp_fit, cache)
    assert two.returncode == 0, two.stderr[-3000:]
    table = retrieval_table(one.stdout + one.stderr)
    assert retrieval_table(two.stdout + two.stderr) == table
    # Recalls are of 7 clips, not of the 8 the padded sampler hands out: v2t of 7 clips, t2v of their 14 captions
    # (two per synthetic clip), so multiples of 100/7 and 100/14, and not all of 100/8 and 100/16.
    def multiples(values: list[float], count: int) -> bool:
        return all(abs(v * count / 100 - round(v * count / 100)) < 1e-3 for v in values)

    t2v, v2t = ([float(x) for x in row.split()[1:4]] for row in table[2:4])
    assert multiples(t2v, 14) and multiples(v2t, 7), table
    assert not (multiples(t2v, 16) and multiples(v2t, 8)), table
    # Gathered metrics are logged without Lightning advising sync_dist=True for each of them under DDP.
    assert not re.search(r"self\.log\('test/(t2v|v2t)_", two.stderr)


def test_fsdp_is_refused_on_cpu(cli_in_tmp, cache, monkeypatch):
    """Why the suite checks DDP and not FSDP: ``trajtok fit`` with FSDP on CPU stops before anything runs."""
    monkeypatch.setenv("TRAJTOK_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="The strategy `fsdp` requires a GPU accelerator"):
        main(["fit", *DATA, "--trainer.strategy=fsdp", "--trainer.devices=2", "--trainer.accelerator=cpu",
              "--trainer.fast_dev_run=true"])
    assert not (cli_in_tmp / "runs").exists()


def test_fsdp_cannot_clip_gradients_by_norm_but_by_value_or_not_at_all():
    """Why the FSDP config of docs/training.md sets ``gradient_clip_val: null`` over the configs' 1.0 (clipped by
    norm, Lightning's default algorithm): FSDP's precision plugin refuses to clip by norm."""
    weight = torch.nn.Parameter(torch.zeros(3))
    weight.grad = torch.tensor([3.0, -4.0, 0.5])
    optimizer = torch.optim.SGD([weight], lr=0.1)
    fsdp = FSDPPrecision("32-true")
    with pytest.raises(MisconfigurationException, match="gradient_clip_algorithm='norm'"):
        fsdp.clip_gradients(optimizer, clip_val=1.0, gradient_clip_algorithm="norm")
    fsdp.clip_gradients(optimizer, clip_val=0.0, gradient_clip_algorithm="norm")  # 0 (or null): no clipping
    assert weight.grad.tolist() == [3.0, -4.0, 0.5]
    fsdp.clip_gradients(optimizer, clip_val=1.0, gradient_clip_algorithm="value")
    assert weight.grad.tolist() == [1.0, -1.0, 0.5]
