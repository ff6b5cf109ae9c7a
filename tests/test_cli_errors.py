"""How the ``trajtok`` command meets a user's mistakes, through the real command: one clear message and exit
status 2 for configuration, data and checkpoint errors (the traceback on request), a traceback for our own bugs,
no evaluation of untrained weights by accident, and ``--weights_only=false`` honoured for a trusted checkpoint."""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path

import pytest
import torch
from helpers import CONFIGS, callback, run_trajtok

# Imported here, not in a test: Lightning's log handler must bind the real stderr, not a test's captured one.
from trajtok.cli import main

CONFIG = ["--config", str(CONFIGS / "clip.yaml")]
SMALL = [
    "--data.init_args.synthetic.train=8",
    "--data.init_args.synthetic.val=4",
    "--data.init_args.synthetic.test=4",
    "--data.init_args.loader.batch_size=4",
    "--data.init_args.loader.num_workers=0",
    "--data.init_args.clip.num_frames=4",
    "--data.init_args.clip.image_size=32",
    "--model.head.init_args.depth=1",
    "--trainer.enable_progress_bar=false",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cache) -> Path:
    """A checkpoint of a 2-step fit, and a copy of it holding a harmless ``datetime``."""
    folder = tmp_path_factory.mktemp("trained")
    fit = run_trajtok(["fit", *CONFIG, *SMALL, "--trainer.max_steps=2", "--trainer.limit_val_batches=0"], folder, cache)
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert "sys.argv" not in fit.stderr  # Lightning's "args and sys.argv" warning has no cause left
    checkpoint = torch.load(folder / "runs/clip/checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    checkpoint["saved_at"] = datetime.datetime(2026, 11, 30)
    torch.save(checkpoint, folder / "dated.ckpt")
    return folder


def one_message(result, *phrases: str) -> str:
    """The single error line of a user error, checked for ``phrases``; no traceback."""
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("trajtok ")]
    assert len(lines) == 1, result.stderr[-3000:]
    assert all(p in lines[0] for p in phrases), lines[0]
    assert "TRAJTOK_TRACEBACK=1" in result.stderr
    return lines[0]


@pytest.mark.subprocess
@pytest.mark.slow
def test_evaluating_without_a_checkpoint_needs_an_explicit_option(trained, cache):
    for command in ("test", "validate", "predict"):
        refused = run_trajtok([command, *CONFIG, *SMALL], trained, cache)
        one_message(refused, f"trajtok {command}: error: no --ckpt_path", "--allow_untrained=true")
    allowed = run_trajtok(["test", *CONFIG, *SMALL, "--allow_untrained=true"], trained, cache)
    assert allowed.returncode == 0, allowed.stderr[-3000:]
    assert "--allow_untrained: test runs the weights the config builds" in allowed.stderr
    assert "Retrieval (test)" in allowed.stdout + allowed.stderr


@pytest.mark.subprocess
@pytest.mark.slow
def test_weights_only_false_reads_a_trusted_checkpoint(trained, cache):
    dated = str(trained / "dated.ckpt")
    refused = run_trajtok(["test", *CONFIG, *SMALL, f"--ckpt_path={dated}"], trained, cache)
    one_message(refused, "dated.ckpt: a weights-only load refuses it", "datetime.datetime", "--weights_only=false")
    trusted = run_trajtok(["test", *CONFIG, *SMALL, f"--ckpt_path={dated}", "--weights_only=false"], trained, cache)
    assert trusted.returncode == 0, trusted.stderr[-3000:]
    assert "Retrieval (test)" in trusted.stdout + trusted.stderr


@pytest.mark.subprocess
@pytest.mark.slow
def test_user_errors_are_one_message_and_the_traceback_is_on_request(trained, cache, tmp_path):
    missing = tmp_path / "nowhere.jsonl"
    args = ["fit", *CONFIG, *SMALL, f"--data.init_args.train_annotations={missing}", "--trainer.max_steps=1"]
    one_message(run_trajtok(args, trained, cache), "trajtok fit: error:", "nowhere.jsonl")
    verbose = run_trajtok(args, trained, cache, env={"TRAJTOK_TRACEBACK": "1"})
    assert verbose.returncode != 0 and "Traceback" in verbose.stderr and "nowhere.jsonl" in verbose.stderr
    broken = str(trained / "broken.ckpt")
    Path(broken).write_bytes((trained / "dated.ckpt").read_bytes()[:1000])  # a truncated file
    one_message(run_trajtok(["test", *CONFIG, *SMALL, f"--ckpt_path={broken}"], trained, cache),
                "broken.ckpt: not a readable checkpoint")


@pytest.mark.subprocess
@pytest.mark.slow
def test_programming_errors_keep_their_traceback(trained, cache):
    result = run_trajtok(["fit", *CONFIG, *SMALL, "--trainer.max_steps=1", callback("faults.Bug")], trained, cache)
    assert result.returncode == 1 and "Traceback" in result.stderr and "a bug in our code" in result.stderr


@pytest.mark.parametrize("option, named", [
    # jsonargparse names a subclass's key under its group: Parser key "data" ... Parser key "clip.image_size".
    ("--data.init_args.clip.image_size=0", r'key "clip.image_size":\s+Not of type PositiveInt'),
    ("--data.init_args.clip.image_size=-64", r'key "clip.image_size":\s+Not of type PositiveInt'),
    ("--data.init_args.loader.batch_size=0", r'key "loader.batch_size":\s+Not of type PositiveInt'),
    ("--model.tokenizer.init_args.num_slots=0", r'key "num_slots":\s+Not of type PositiveInt'),
    ("--data.init_args.loader.eval_batch_size=0", 'key "loader.eval_batch_size"'),
    ("--data.init_args.clip.crop_scale=[1.5, 0.2]", r"crop_scale=\[1.5, 0.2\]: the crop's area range must satisfy"),
    ("--data.init_args.clip.crop_scale=[0.0, 1.0]", r"crop_scale=\[0.0, 1.0\]"),
    ("--model.lr=-1e-3", 'key "model.lr"'),
    ("--data.init_args.loader.num_workers=-1", 'key "loader.num_workers"'),
    ("--data.init_args.on_bad_video=ignore", r'key "on_bad_video":\s+Expected a typing.Literal'),
])
def test_invalid_numbers_fail_before_anything_runs_naming_the_option(option, named, capsys, cli_in_tmp):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", *CONFIG, option, "--trainer.fast_dev_run=true"])
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert re.search(named, error) and "Traceback" not in error, error[-2000:]
    assert not (cli_in_tmp / "runs").exists()  # nothing was built or written


@pytest.mark.subprocess
@pytest.mark.slow
def test_a_skipped_clip_leaves_its_batch_smaller_not_duplicated(tmp_path, cache):
    """Through ``trajtok validate``: a missing clip is left out of its batch and reported; no other clip takes its
    place (a duplicate in a contrastive batch is a false negative)."""
    import av
    import numpy as np

    for i in range(3):
        with av.open(str(tmp_path / f"c{i}.mp4"), "w") as container:
            stream = container.add_stream("libx264", rate=10)
            stream.width = stream.height = 32
            stream.pix_fmt = "yuv420p"
            for t in range(4):
                frame = np.full((32, 32, 3), 40 * i + 10 * t, np.uint8)
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    rows = ["c0.mp4", "gone.mp4", "c1.mp4", "c2.mp4"]
    annotations = tmp_path / "val.jsonl"
    annotations.write_text("".join(f'{{"video": "{tmp_path / v}", "caption": "clip {i}"}}\n' for i, v in enumerate(rows)),
                           encoding="utf-8")
    indices = tmp_path / "indices.jsonl"
    result = run_trajtok(["validate", *CONFIG, *SMALL, f"--data.init_args.val_annotations={annotations}",
                          "--data.init_args.loader.batch_size=2", "--allow_untrained=true",
                          callback("faults.RecordIndices", path=str(indices))], tmp_path, cache)
    assert result.returncode == 0, result.stderr[-3000:]
    batches = [json.loads(line) for line in indices.read_text().splitlines()]
    assert batches == [[0], [2, 3]]  # batch 1 lost sample 1 and shrank; nothing is repeated
    assert "1 unusable sample(s) skipped, each left out of its batch" in result.stderr and "gone.mp4" in result.stderr
