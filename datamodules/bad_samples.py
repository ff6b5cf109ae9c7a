"""The bad-sample policy: what a data set does with a sample it cannot load (a missing, corrupt, truncated
or empty file; broken pseudo-labels), shared by every file-based data set (``RecordDataset``) and, for its
policy and errors, by the tar-shard data sets.

Skipped samples travel in the batch (``skipped``) rather than in counters on the dataset: DataLoader workers
are separate processes, each holding its own copy of the dataset, so counters there are per worker and
never reach the training process. A batch, by contrast, reaches the model exactly once, whatever the
number of workers; ``trajtok.callbacks.BadSampleReport`` sums the reports of an epoch's batches.
"""

from __future__ import annotations

import contextlib
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any, Literal, get_args

from jsonargparse.typing import NonNegativeInt
from torch.utils.data import Dataset, get_worker_info

from datamodules.video import BadSampleError
from trajtok.errors import UserError, is_user_error, user_message

log = logging.getLogger(__name__)

#: What a data set does with an unusable sample: leave it out of its batch and report it, or fail.
OnBadSample = Literal["skip", "raise"]

#: Marks the sample of a skipped record: a hole in its batch (see ``RecordDataset``).
HOLE = "hole"


def check_policy(on_bad_sample: str, option: str = "on_bad_video") -> None:
    """ValueError unless ``on_bad_sample`` is an ``OnBadSample``. Datamodules leave this to their option's
    type; data sets are built in Python too, where nothing checks the type and a typo would mean "skip"."""
    if on_bad_sample not in get_args(OnBadSample):
        raise ValueError(f"{option} must be one of {get_args(OnBadSample)}, got {on_bad_sample!r}")


class WorkerUserError(UserError, RuntimeError):
    """A user error (a bad sample under ``on_bad_video: raise``, a data file's mistake) raised in a DataLoader worker
    process, as the main process re-raises it: with the worker's message alone, so that ``trajtok`` reports it as
    the one line it is with ``num_workers=0``.

    torch re-raises a worker's error by calling its type with one argument, the worker's whole traceback as text
    (``ExceptionWrapper.reraise``), and raises a ``RuntimeError`` of that text for a type that takes other
    arguments (``BadSampleError(path, reason)``). This type takes that text and keeps the message of its last line;
    the worker's traceback becomes a note, shown with the traceback (``TRAJTOK_TRACEBACK=1``).
    """

    def __init__(self, message: str) -> None:
        marker = f"\n{type(self).__module__}.{type(self).__qualname__}: "
        _, found, own = message.rpartition(marker)
        super().__init__(own.rstrip("\n") if found else message)
        if found:
            self.add_note(f"raised in a DataLoader worker process:\n{message.rstrip()}")


@contextlib.contextmanager
def user_errors_from_worker() -> Iterator[None]:
    """In a DataLoader worker process, a user error (``trajtok.errors.is_user_error``) raised inside leaves as a
    ``WorkerUserError`` of its message; in the main process nothing changes."""
    try:
        yield
    except Exception as error:
        if get_worker_info() is None or isinstance(error, WorkerUserError) or not is_user_error(error):
            raise
        raise WorkerUserError(user_message(error)) from error


class MissingFilesError(UserError, FileNotFoundError):
    """Files that annotation rows name and that do not exist, all of them in one message."""


class RecordDataset(Dataset, ABC):
    """Samples of annotation records under the bad-sample policy; subclasses say how a record becomes a
    sample (``load``).

    ``on_bad_video="skip"`` answers an unusable sample (``load`` raised ``BadSampleError``: a missing,
    corrupt, truncated or empty file) with a *hole*: ``{"index", "skipped", HOLE: True}``, no clip. Collate
    functions (``drops_skipped``) leave holes out, so the batch shrinks; no other sample stands in (a
    duplicate in a contrastive batch would be a false negative). ``skipped`` lists the bad sample as a dict of
    ``index``, ``path`` (the offending file), ``reason`` and ``origin`` (the annotation file and row, when
    known), which the collate function gathers into the batch. ``num_skipped`` and ``skipped_paths`` count
    distinct skipped samples of this process only (with DataLoader workers, of one worker): the batch's
    ``skipped`` is the exact record. A sample found bad once is not loaded again, but is still reported each
    time it is drawn. ``"raise"`` lets the error through, naming the file and the annotation row.
    """

    def __init__(self, records: Sequence[Any], on_bad_video: OnBadSample = "skip", max_reported: NonNegativeInt = 10) -> None:
        check_policy(on_bad_video)
        if not records:
            raise ValueError("no records")
        self.records = list(records)
        self.on_bad_video = on_bad_video
        self.max_reported = max_reported
        self.num_skipped = 0
        self.skipped_paths: list[str] = []
        self._bad: dict[int, dict[str, Any]] = {}  # index -> its skip report
        if on_bad_video == "raise":
            self.check_files_exist()

    def record_files(self, index: int) -> list[str]:
        """The local files sample ``index`` reads (for ``check_files_exist``); default none known."""
        return []

    def check_files_exist(self, shown: int = 20) -> None:
        """Under ``on_bad_video="raise"``: every file the records name exists, checked before the first batch,
        so that a missing clip stops a long evaluation at its start, with all missing files in one error."""
        missing = [(i, path) for i in range(len(self.records)) for path in self.record_files(i)
                   if not os.path.exists(path)]
        if missing:
            listed = "; ".join(f"{path} ({self.origin(i) or f'sample {i}'})" for i, path in missing[:shown])
            more = f"; ... ({len(missing) - shown} more)" if len(missing) > shown else ""
            raise MissingFilesError(f"{len(missing)} file(s) named by the annotations are missing (on_bad_video: "
                                    f"raise; 'skip' would leave them out): {listed}{more}")

    def __len__(self) -> int:
        return len(self.records)

    @abstractmethod
    def load(self, index: int) -> dict[str, Any]:
        """One sample, or a ``BadSampleError`` naming the file that prevents it."""

    def origin(self, index: int) -> str | None:
        """Where sample ``index`` was declared ("file, row N"), when its record knows."""
        return getattr(self.records[index], "origin", None)

    def _load_located(self, index: int) -> dict[str, Any]:
        try:
            return self.load(index)
        except BadSampleError as e:
            e.locate(self.origin(index))
            raise

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self.on_bad_video == "raise":
            with user_errors_from_worker():
                return self._load_located(index)
        if index not in self._bad:
            try:
                return {**self._load_located(index), "skipped": []}
            except BadSampleError as e:
                self._note_bad(index, e)
            if len(self._bad) == len(self):
                raise RuntimeError(f"none of the {len(self)} samples could be loaded; first bad files: "
                                   f"{self.skipped_paths}")
        return {"index": index, "skipped": [dict(self._bad[index])], HOLE: True}

    def _note_bad(self, index: int, error: BadSampleError) -> None:
        self._bad[index] = {"index": index, "path": error.path, "reason": error.reason, "origin": self.origin(index)}
        self.num_skipped += 1
        if len(self.skipped_paths) < self.max_reported:
            self.skipped_paths.append(error.path)
        log.warning("skipping sample %d: %s", index, error)
