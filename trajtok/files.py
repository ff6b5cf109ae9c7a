"""Files and folders written whole or not at all.

Whoever reads a path while it is being (re)written (another rank, a DataLoader worker, a resumed run, a user's
tool) sees the previous content or the new one, never half of it, and a process killed while writing leaves the
previous content in place. The project's writers that replace a file go through here, so they all give the same
guarantees: checkpoints, exported models, token files, pseudo-label files and their annotations and summaries,
contact sheets and overlays, the benchmarks' result tables (JSON and CSV) and the generated blocks of the docs.
Files written inside a folder that ``ensure_folder`` builds (the synthetic data sets) need nothing more: the folder
appears whole. The rest write directly: the benchmarks' PNG plots (matplotlib's ``savefig``; a plot is redrawn by
re-running its benchmark and nothing reads it back), the statistics rows the pseudo-label writer appends (appends,
not replacements: its reader skips a line a killed run left unfinished) and ``tools/parity_release.py``'s files in
the output folder it is given. The guarantees:

- the new content goes to a temporary beside the target (the same folder, hence the same file system, so the final
  rename is one atomic step; a ``$TMPDIR`` elsewhere would make it a copy into the target), under a name no other
  process or thread can be given (``O_EXCL``), so concurrent writers of one path never write into each other's file;
- it is flushed to disk (``fsync``) before the rename, and the folder after it where the system allows, so that a
  power cut cannot leave the new name on empty or partial content;
- it is renamed over the target (``os.replace``); on any error, the temporary is removed and the target is left as
  it was;
- new files and folders get the permissions of any file the process creates (``0o666`` / ``0o777`` less the
  umask), not the owner-only ones of ``tempfile``: data sets and labels are often shared between users.

Temporaries are hidden files named ``.<name>.<random>.partial``, ``<random>`` twelve lowercase hex digits, followed
by the target's extension for ``atomic_path`` (``partial_files`` lists exactly these, so a sibling whose name
extends the target's, ``last.ckpt.bak`` beside ``last.ckpt``, keeps its own); a process killed mid-write leaves its
temporary behind, which a single writer of a path may remove later (checkpoints do).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from typing import IO

#: What every temporary's name ends with (before any extension ``atomic_path`` keeps).
PARTIAL = ".partial"
#: Random bytes in a temporary's name, written as twice as many lowercase hex digits.
_RANDOM_BYTES = 6


def _temporary_name(folder: str, name: str) -> str:
    return os.path.join(folder, f".{name}.{secrets.token_hex(_RANDOM_BYTES)}{PARTIAL}")


def _reserve_temporary(path: str, extension: str = "") -> str:
    """A new empty temporary file beside ``path`` (its folder created if needed), ending with ``extension``: its name.
    ``O_EXCL`` makes the name this caller's alone; mode ``0o666`` leaves the permissions to the umask."""
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = _temporary_name(folder, name) + extension
        try:
            os.close(os.open(tmp, flags, 0o666))
            return tmp
        except FileExistsError:
            continue


def _sync_folder(folder: str) -> None:
    """Flush a folder's entries (a rename into it) to disk, where the system lets a folder be opened (not on
    Windows, nor on some network file systems): the file's own flush does not cover its new name."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _replace(tmp: str, path: str) -> None:
    os.replace(tmp, path)
    _sync_folder(os.path.dirname(os.path.abspath(path)))


def _discard(tmp: str) -> None:
    """Remove a temporary after a failure; a second error here would hide the first, which says what went wrong."""
    with contextlib.suppress(OSError):
        os.remove(tmp)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", *, encoding: str | None = None,
                 newline: str | None = None) -> Iterator[IO]:
    """``open(path, mode)`` for writing, whole or not at all (see the module): the file object writes a temporary
    beside ``path``, which replaces ``path`` when the block ends without an error and is removed when it does not.

    ``mode``: ``"wb"`` or ``"w"`` (text; ``encoding`` and ``newline`` as for ``open``, ``encoding`` default UTF-8).
    """
    if mode not in ("wb", "w", "wt"):
        raise ValueError(f"atomic_write: mode must be 'wb' or 'w', got {mode!r}")
    path = os.fspath(path)
    tmp = _reserve_temporary(path)
    try:
        text = {} if "b" in mode else {"encoding": encoding or "utf-8", "newline": newline}
        # Opened again by name, so the file object's ``name`` says where its bytes go.
        with open(tmp, mode, **text) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        _replace(tmp, path)
    except BaseException:
        _discard(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """A temporary file name beside ``path``, for writers that take a name rather than a file object; when the block
    ends without an error the file there replaces ``path`` (flushed to disk first), and when it does not it is
    removed (see the module).

    The name ends with ``path``'s extension (``.x.npz.<random>.partial.npz``), so a writer that picks its format
    from the name, or adds an extension it does not see (``numpy.savez``), writes where it was told. The file exists
    (empty) when the block starts, which keeps the name this caller's alone.
    """
    path = os.fspath(path)
    tmp = _reserve_temporary(path, os.path.splitext(path)[1])
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDWR | getattr(os, "O_BINARY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        _replace(tmp, path)
    except BaseException:
        _discard(tmp)
        raise


def write_atomic(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` (bytes, or text as UTF-8) to ``path`` whole or not at all (``atomic_write``)."""
    with atomic_write(path, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)


def partial_files(path: str | os.PathLike) -> list[str]:
    """The temporaries of ``path`` in its folder: those of writes in progress, and those that processes killed while
    writing it left behind. Only a path's single writer may remove them (as ``AtomicCheckpointIO`` does), since
    another writer's file in progress looks the same.

    A name matches only the exact form ``_temporary_name`` gives (and ``atomic_path``'s extension after it): a
    looser pattern would also take the temporaries of a sibling whose name starts with this one's (``last.ckpt.bak``'s
    for ``last.ckpt``), which that sibling's writer may be writing at that moment."""
    folder, name = os.path.split(os.path.abspath(os.fspath(path)))
    extension = os.path.splitext(name)[1]
    own = re.compile(rf"\.{re.escape(name)}\.[0-9a-f]{{{2 * _RANDOM_BYTES}}}{re.escape(PARTIAL)}"
                     rf"(?:{re.escape(extension)})?")
    try:
        entries = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(os.path.join(folder, entry) for entry in entries if own.fullmatch(entry))


def ensure_folder(final: str, build: Callable[[str], object], marker: str = "meta.json") -> str:
    """``final``, built by ``build(folder)`` unless it already holds ``marker`` (a file ``build`` writes last).

    The folder counterpart of ``atomic_write``, safe across ranks and processes: ``build`` fills a hidden temporary
    folder of its own beside ``final`` (created with the permissions any new folder gets), which is renamed into
    place in one step, so no process ever sees a half-built folder; when two processes race, the first rename wins
    and the other deletes its identical copy. On any error the temporary folder is removed.
    """
    if os.path.isfile(os.path.join(final, marker)):
        return final
    root, name = os.path.split(os.path.abspath(final))
    os.makedirs(root, exist_ok=True)
    while True:
        tmp = _temporary_name(root, name)
        try:
            os.mkdir(tmp, 0o777)
            break
        except FileExistsError:
            continue
    try:
        build(tmp)
        try:
            os.replace(tmp, final)
        except OSError:
            if not os.path.isfile(os.path.join(final, marker)):
                raise
            shutil.rmtree(tmp)  # another process finished first; its copy is identical
        else:
            _sync_folder(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
