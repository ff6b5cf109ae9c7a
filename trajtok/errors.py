"""What counts as the user's mistake, and how the ``trajtok`` command reports it.

A configuration, data or checkpoint error the user made ends in one message that names the file, row or option,
and exit status 2; its traceback is printed on request (``TRAJTOK_TRACEBACK=1``). Programming errors (anything
else, including a ``ValueError`` raised inside a library) keep their traceback: they are ours to fix.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
from collections.abc import Iterator

from lightning.fabric.utilities.exceptions import MisconfigurationException

TRACEBACK_ENV = "TRAJTOK_TRACEBACK"
#: Packages whose own ``ValueError`` s are validation of what the user gave: ours, and jsonargparse's (a value
#: a class rejected while the config was being instantiated).
OWN_PACKAGES = ("trajtok", "heads", "datamodules", "jsonargparse")


class UserError(Exception):
    """A mistake in what the user gave (configuration, data, checkpoint, option), reported as one message."""


class CheckpointError(UserError, ValueError):
    """A checkpoint file that cannot be used as given (missing, truncated, refused by a weights-only load)."""


def raised_in_own_code(error: BaseException) -> bool:
    """Whether the innermost frame of ``error``'s traceback is in one of ``OWN_PACKAGES``."""
    tb = error.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    module = tb.tb_frame.f_globals.get("__name__", "")
    return module.split(".")[0] in OWN_PACKAGES


def is_user_error(error: BaseException) -> bool:
    """A mistake in the user's input: our ``UserError`` s, missing or unreadable files, checkpoints a weights-only
    load refuses, Lightning's configuration errors, and the ``ValueError`` s our own code raises to validate."""
    if isinstance(error, (UserError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError,
                          pickle.UnpicklingError, MisconfigurationException)):
        return True
    return isinstance(error, ValueError) and raised_in_own_code(error)


def user_message(error: BaseException) -> str:
    """The error's message; of jsonargparse's "does not validate against any of the Union subtypes" (a class that
    refused a value while the config was built), just the refusals, without the group it tried ("Given value:
    Namespace(...)") or the ``None`` alternative."""
    lines = str(error).splitlines()
    if "Errors:" not in lines:
        return str(error)
    reasons = [line.strip()[2:] for line in lines[lines.index("Errors:") + 1:]
               if line.strip().startswith("- ") and "Expected a <class 'NoneType'>" not in line]
    return "\n".join(reasons) or str(error)


@contextlib.contextmanager
def report_user_errors(command: str) -> Iterator[None]:
    """Turn a user error raised inside into ``<command>: error: <message>`` on stderr and exit status 2."""
    try:
        yield
    except Exception as error:
        if os.environ.get(TRACEBACK_ENV, "") not in ("", "0") or not is_user_error(error):
            raise
        print(f"{command}: error: {user_message(error)}\n({TRACEBACK_ENV}=1 shows the traceback)", file=sys.stderr)
        sys.exit(2)
