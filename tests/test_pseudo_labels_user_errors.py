"""``trajtok pseudo-label``'s user errors and network use (issue 29, cases 3 to 6): an output folder that cannot be
written, a local model folder that does not exist and a hub model not downloaded are each one line naming the
folder, file or option (exit status 2), and the command asks the hub for nothing unless the user sets
``HF_HUB_OFFLINE=0``.

Read-only output: for real, a read-only tmpfs mounted in the child's own mount namespace (``unshare -m``; skipped
where mounting is not allowed), and, everywhere, a stand-in in this process through ``trajtok.cli.main``: ``open``,
``os.open``, ``os.mkdir``, ``os.replace`` and ``os.remove`` refuse to write below the folder with the ``OSError``
a read-only (or full) file system gives. Running as root, ``chmod`` would not stop the writes."""

from __future__ import annotations

import builtins
import errno
import io
import os
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from helpers import TESTS, TRAJTOK, python_path, run_trajtok
from test_pseudo_labels_resume import label_args, summary, write_video

from trajtok.cli import main


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("videos")
    for i in range(2):
        write_video(folder / f"clip{i}.mp4", frames=4 + i, height=24, width=32)
    return folder


def error_line(stderr: str) -> str:
    """The user error of a ``trajtok`` run: the line before the hint ``(TRAJTOK_TRACEBACK=1 ...)``, which must
    be the last."""
    lines = stderr.strip().splitlines()
    assert lines[-1] == "(TRAJTOK_TRACEBACK=1 shows the traceback)", stderr[-3000:]
    assert not any(line.startswith("Traceback") for line in lines), stderr[-3000:]
    return lines[-2]


# ------------------------------------------------------------------------------------- case 3: read-only output


def refuse_writes(monkeypatch, folder: Path, code: int = errno.EROFS, suffix: str = "") -> None:
    """Writing, creating, renaming or removing anything below ``folder`` (whose name ends with ``suffix``) raises
    ``OSError(code)``, as a read-only (``EROFS``) or full (``ENOSPC``) file system does; reading still works."""
    below = str(folder.resolve())

    def refused(path) -> bool:
        if not isinstance(path, (str, bytes, os.PathLike)):
            return False
        path = os.path.abspath(os.fsdecode(path))
        return (path == below or path.startswith(below + os.sep)) and path.endswith(suffix)

    def fail(path):
        raise OSError(code, os.strerror(code), os.fsdecode(path))

    real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir
    real_replace, real_remove = os.replace, os.remove

    def open_(file, mode="r", *args, **kwargs):
        return fail(file) if any(c in mode for c in "wax+") and refused(file) else real_open(file, mode, *args, **kwargs)

    def os_open(path, flags, *args, **kwargs):
        writes = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND)
        return fail(path) if writes and refused(path) else real_os_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(io, "open", open_)
    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(os, "mkdir", lambda path, *a, **k: fail(path) if refused(path) else real_mkdir(path, *a, **k))
    monkeypatch.setattr(os, "replace", lambda src, dst, *a, **k: fail(dst) if refused(dst) or refused(src)
                        else real_replace(src, dst, *a, **k))
    monkeypatch.setattr(os, "remove", lambda path, *a, **k: fail(path) if refused(path) else real_remove(path, *a, **k))


def run_main(args: list[str], capsys) -> tuple[int, str]:
    """``trajtok ARGS`` in this process: its exit status and stderr."""
    with pytest.raises(SystemExit) as exit_:
        main(args)
    return exit_.value.code, capsys.readouterr().err


@pytest.mark.parametrize("exists", [False, True], ids=["missing-folder", "existing-folder"])
def test_a_read_only_output_folder_is_one_line_naming_it(videos, cli_in_tmp, cache, monkeypatch, capsys, exists):
    monkeypatch.setenv("TRAJTOK_CACHE", str(cache))
    out = cli_in_tmp / "labels"
    if exists:
        out.mkdir()
    refuse_writes(monkeypatch, out)
    code, stderr = run_main(label_args(videos, out), capsys)
    assert code == 2, stderr[-3000:]
    assert error_line(stderr) == (f"trajtok pseudo-label: error: data.out_dir: cannot write the pseudo-labels in "
                                  f"{out}: Read-only file system")


def test_a_label_file_that_cannot_be_written_mid_run_is_one_line_naming_it(videos, cli_in_tmp, cache, monkeypatch,
                                                                           capsys):
    """The folder takes files, but not the label files (the disk fills up, say)."""
    monkeypatch.setenv("TRAJTOK_CACHE", str(cache))
    out = cli_in_tmp / "labels"
    refuse_writes(monkeypatch, out, errno.ENOSPC, suffix=".npz")
    code, stderr = run_main(label_args(videos, out), capsys)
    assert code == 2, stderr[-3000:]
    assert error_line(stderr) == f"trajtok pseudo-label: error: cannot write {out}/clip0_mask.npz: No space left on device"


def can_mount_read_only(folder: Path) -> bool:
    try:
        return subprocess.run(["unshare", "-m", "mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
                              check=False, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.subprocess
def test_an_output_folder_on_a_read_only_mount_is_one_line_naming_it(videos, tmp_path, cache):
    mount = tmp_path / "read-only"
    mount.mkdir()
    if not can_mount_read_only(mount):
        pytest.skip("no mount namespace with a tmpfs here (needs root, or a user namespace)")
    out = mount / "labels"
    env = {**os.environ, "TRAJTOK_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "PYTHONPATH": python_path(TESTS),
           "OMP_NUM_THREADS": "1"}
    script = 'mount -t tmpfs -o ro,size=1m tmpfs "$1" && shift && exec "$@"'
    result = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", str(mount), TRAJTOK,
                             *label_args(videos, out)], check=False, cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    assert error_line(result.stderr) == (f"trajtok pseudo-label: error: data.out_dir: cannot write the pseudo-labels "
                                         f"in {out}: Read-only file system")


# ---------------------------------------------------------------------- cases 4 and 5: models that are not there


MODELS = {"segmenter": ["--model.propagator=pseudo_label_oracles.StillPropagator"],
          "propagator": ["--model.segmenter=pseudo_label_oracles.HalvesSegmenter",
                         "--model.propagator=trajtok.pseudo_labels.VideoTracker"]}


@pytest.mark.subprocess
@pytest.mark.parametrize("part", ["segmenter", "propagator"])
def test_a_local_model_folder_that_does_not_exist_is_named_with_its_option(videos, tmp_path, cache, part):
    missing = tmp_path / "models" / f"{part}-model"
    args = [*label_args(videos, tmp_path / "labels"), *MODELS[part], f"--model.{part}.init_args.model={missing}"]
    args.remove("--model.segmenter=pseudo_label_oracles.HalvesSegmenter")  # the config's DirectSAM, or MODELS'
    args.remove("--model.propagator=pseudo_label_oracles.StillPropagator")
    result = run_trajtok(args, tmp_path, cache)
    assert result.returncode == 2, result.stderr[-3000:]
    assert error_line(result.stderr) == (f"trajtok pseudo-label: error: model.{part}.init_args.model={missing}: "
                                         "no such folder")
    assert not (tmp_path / "labels").exists()


@pytest.mark.subprocess
@pytest.mark.parametrize("part, model", [("segmenter", "chendelong/DirectSAM-1800px-0424"),
                                         ("propagator", "facebook/sam2.1-hiera-small")])
def test_a_hub_model_not_downloaded_is_named_with_its_option_and_how_to_get_it(videos, tmp_path, cache, part, model):
    args = [*label_args(videos, tmp_path / "labels"), *MODELS[part]]
    args.remove("--model.segmenter=pseudo_label_oracles.HalvesSegmenter")
    args.remove("--model.propagator=pseudo_label_oracles.StillPropagator")
    result = run_trajtok(args, tmp_path, cache, env={"HF_HOME": str(tmp_path / "hf")})  # HF_HUB_OFFLINE=1
    assert result.returncode == 2, result.stderr[-3000:]
    assert error_line(result.stderr) == (
        f"trajtok pseudo-label: error: model.{part}.init_args.model={model}: no such local folder, and the hub "
        f"model {model} is not downloaded (HF_HUB_OFFLINE=1: nothing is downloaded at run time); run "
        f"`hf download {model}` first, or give a local folder")


# ----------------------------------------------------------------------------- case 6: no hub request, ever


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory) -> Path:
    """An HF_HOME whose hub cache holds ``tiny/directsam`` as ``hf download`` leaves it (refs/main -> a
    snapshot): a one-channel Segformer with its image processor, all interior."""
    from transformers import SegformerConfig, SegformerForSemanticSegmentation
    from transformers.models.segformer.image_processing_pil_segformer import (
        SegformerImageProcessorPil,
    )

    home = tmp_path_factory.mktemp("hf")
    repo = home / "hub" / "models--tiny--directsam"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo / "snapshots" / commit
    config = SegformerConfig(num_labels=1, hidden_sizes=[8, 16, 16, 16], depths=[1, 1, 1, 1],
                             num_attention_heads=[1, 1, 1, 1], decoder_hidden_size=16)
    torch.manual_seed(0)
    model = SegformerForSemanticSegmentation(config)
    with torch.no_grad():
        model.decode_head.classifier.weight.zero_()
        model.decode_head.classifier.bias.fill_(-10.0)
    model.save_pretrained(snapshot)
    SegformerImageProcessorPil(size={"height": 64, "width": 64}).save_pretrained(snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return home


class CountingHub(BaseHTTPRequestHandler):
    """A stand-in for the hub that answers 404 to everything and remembers what it was asked."""

    requests: ClassVar[list[str]] = []

    def _answer(self) -> None:
        type(self).requests.append(f"{self.command} {self.path}")
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = do_POST = _answer

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def hub():
    CountingHub.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), CountingHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", CountingHub.requests
    server.shutdown()
    server.server_close()


@pytest.mark.subprocess
@pytest.mark.parametrize("downloaded", [True, False], ids=["downloaded-model", "model-not-downloaded"])
def test_without_hf_hub_offline_set_the_command_asks_the_hub_nothing(videos, tmp_path, cache, hub_cache, hub,
                                                                     downloaded):
    endpoint, requests = hub
    home = tmp_path / "hf"
    shutil.copytree(hub_cache, home, symlinks=True)
    if not downloaded:
        shutil.rmtree(home / "hub")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update({"HF_ENDPOINT": endpoint, "HF_HOME": str(home), "TRAJTOK_CACHE": str(cache),
                "PYTHONPATH": python_path(TESTS), "OMP_NUM_THREADS": "1"})
    args = label_args(videos, tmp_path / "labels")
    args.remove("--model.segmenter=pseudo_label_oracles.HalvesSegmenter")
    args += ["--model.segmenter=trajtok.pseudo_labels.DirectSAMSegmenter",
             "--model.segmenter.init_args.model=tiny/directsam"]
    result = subprocess.run([TRAJTOK, *args], check=False, cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert requests == []
    if downloaded:
        assert result.returncode == 0, result.stderr[-3000:]
        assert "2 of 2 videos labelled" in result.stderr + result.stdout
        assert [r["trajectories"] for r in summary(tmp_path / "labels")] == ["1", "1"]  # all interior: one segment
    else:
        assert result.returncode == 2, result.stderr[-3000:]
        assert error_line(result.stderr).startswith(
            "trajtok pseudo-label: error: model.segmenter.init_args.model=tiny/directsam: no such local folder, and "
            "the hub model tiny/directsam is not downloaded")
