"""``trajtok.files``: a file (or folder) written through it appears whole or not at all, a failure at any point leaves
the previous content and no temporary behind, concurrent writers of one path never share a temporary, and new files
are as readable as any file the process creates."""

from __future__ import annotations

import os
import stat
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from trajtok.files import (
    atomic_path,
    atomic_write,
    ensure_folder,
    partial_files,
    write_atomic,
)


@pytest.fixture
def umask_022():
    """The usual umask, whatever the test runner's: permissions are then predictable."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_content_appears_whole_and_replaces_the_old(tmp_path):
    path = tmp_path / "sub" / "data.bin"  # the folder is created
    write_atomic(path, b"old")
    with atomic_write(path) as f:
        f.write(b"new ")
        assert path.read_bytes() == b"old"  # nothing of the new content shows before the end
        f.write(b"content")
    assert path.read_bytes() == b"new content"
    with atomic_write(path, "w", newline="") as f:
        f.write("text\r\n")
    assert path.read_bytes() == b"text\r\n" and not partial_files(path)


class Interrupted(Exception):
    pass


@pytest.mark.parametrize("how", ["file", "path"])
def test_a_failure_mid_write_leaves_the_old_file_and_no_temporary(tmp_path, how):
    path = tmp_path / "labels.npz"
    write_atomic(path, b"old")
    with pytest.raises(Interrupted):
        if how == "file":
            with atomic_write(path) as f:
                f.write(b"half of the new")
                raise Interrupted
        else:
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as f:
                    f.write(b"half of the new")
                raise Interrupted
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["labels.npz"]


def test_a_failing_rename_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    write_atomic(path, b"old")

    def refuse(src, dst):
        raise OSError(28, "No space left on device", dst)

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="No space left"), atomic_write(path) as f:
        f.write(b"new")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["last.ckpt"]


def test_the_file_and_its_folder_are_flushed_to_disk_before_and_after_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", stat.S_ISDIR(os.fstat(fd).st_mode))),
                                                 real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda src, dst: (events.append(("replace", None)), real_replace(src, dst))[1])
    write_atomic(tmp_path / "a.json", "{}")
    assert events[:2] == [("fsync", False), ("replace", None)]
    assert ("fsync", True) in events[2:] or os.name == "nt"  # Windows opens no folders


def test_atomic_path_keeps_the_extension_for_writers_that_add_one(tmp_path):
    path = tmp_path / "clip_mask.npz"
    with atomic_path(path) as tmp:
        assert tmp.endswith(".npz") and os.path.basename(tmp).startswith(".clip_mask.npz.")
        assert tmp in partial_files(path)  # a write in progress is a partial file of its target
        np.savez_compressed(tmp, np.zeros((2, 3), np.uint8))  # numpy adds .npz to names without it
    with np.load(path) as npz:
        assert npz["arr_0"].shape == (2, 3)
    assert os.listdir(tmp_path) == ["clip_mask.npz"]


def test_partial_files_are_the_paths_own_not_a_siblings(tmp_path):
    """A sibling whose name extends the path's (``last.ckpt.bak`` beside ``last.ckpt``) has temporaries that a looser
    pattern would take for the path's: its writer's file in progress must not be listed (and so removed)."""
    path, sibling = tmp_path / "last.ckpt", tmp_path / "last.ckpt.bak"
    with atomic_write(path) as mine, atomic_path(path) as mine_with_extension, atomic_write(sibling) as theirs:
        assert partial_files(path) == sorted([mine.name, mine_with_extension])
        assert partial_files(sibling) == [theirs.name]
        # Names close to the form but not of it: another random part, another ending.
        for name in (".last.ckpt.0123456789ab.partial.bak", ".last.ckpt.0123456789AB.partial",
                     ".last.ckpt.0123456789a.partial", ".last.ckpt.0123456789ab.partial~"):
            (tmp_path / name).write_bytes(b"")
        assert partial_files(path) == sorted([mine.name, mine_with_extension])
    assert partial_files(tmp_path / "no-such-folder" / "last.ckpt") == []


def test_concurrent_writers_of_one_path_each_write_their_own_temporary(tmp_path):
    path = tmp_path / "stats.csv"
    writers = 8
    inside = threading.Barrier(writers)

    def write(i: int) -> str:
        with atomic_path(path) as tmp:
            inside.wait(timeout=30)  # every writer holds its temporary at once
            with open(tmp, "wb") as f:
                f.write(bytes([i]) * 100_000)
        return tmp

    with ThreadPoolExecutor(writers) as pool:
        names = list(pool.map(write, range(writers)))  # re-raises a writer's error
    assert len(set(names)) == writers
    data = path.read_bytes()
    assert len(data) == 100_000 and len(set(data)) == 1  # one writer's content, whole
    assert os.listdir(tmp_path) == ["stats.csv"]


def test_new_files_and_folders_are_readable_by_others(tmp_path, umask_022):
    write_atomic(tmp_path / "shard.tar", b"x")
    with atomic_path(tmp_path / "sheet.png") as tmp, open(tmp, "wb") as f:
        f.write(b"png")
    folder = ensure_folder(str(tmp_path / "set"), lambda tmp: open(os.path.join(tmp, "meta.json"), "w").close())
    assert stat.S_IMODE(os.stat(tmp_path / "shard.tar").st_mode) == 0o644
    assert stat.S_IMODE(os.stat(tmp_path / "sheet.png").st_mode) == 0o644
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o755


def test_a_folder_is_built_once_and_a_failed_build_leaves_nothing(tmp_path):
    builds = []

    def build(folder: str) -> None:
        builds.append(folder)
        with open(os.path.join(folder, "meta.json"), "w") as f:
            f.write("{}")

    final = str(tmp_path / "synthetic")
    assert ensure_folder(final, build) == final and ensure_folder(final, build) == final
    assert len(builds) == 1 and not os.path.exists(builds[0]) and os.listdir(final) == ["meta.json"]

    def fail(folder: str) -> None:
        open(os.path.join(folder, "half"), "w").close()
        raise Interrupted

    with pytest.raises(Interrupted):
        ensure_folder(str(tmp_path / "other"), fail)
    assert sorted(os.listdir(tmp_path)) == ["synthetic"]


def test_text_writes_are_utf8_and_modes_other_than_write_are_refused(tmp_path):
    with atomic_write(tmp_path / "a.jsonl", "w") as f:
        f.write("café\n")
    assert (tmp_path / "a.jsonl").read_bytes() == "café\n".encode()
    with pytest.raises(ValueError, match="mode must be"), atomic_write(tmp_path / "b", "a"):
        pass
    assert os.listdir(tmp_path) == ["a.jsonl"]
