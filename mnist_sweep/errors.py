"""Errors a user can act on; anything else is a bug or a failed trial."""

import difflib
import errno
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

# Optional packages: the extra that installs each (the key), its import name, name and install command.
EXTRAS = {
    "tensorboard": ("tensorboard", "TensorBoard", "pip install 'mnist-sweep[tensorboard]'"),
    "mlflow": ("mlflow", "MLflow", "pip install 'mnist-sweep[mlflow]'"),
    "ray": ("ray", "Ray", "pip install 'mnist-sweep[ray]'"),
    "search": ("optuna", "Optuna", "pip install 'mnist-sweep[search]'"),
    "mlxtend": ("mlxtend", "mlxtend", "pip install mlxtend"),  # a dependency, but one a broken install can lack
}


class SweepError(Exception):
    """Base class for errors reported to the user without a traceback."""


class ConfigError(SweepError):
    """A config is invalid; `problems` lists every issue found, one line each."""

    def __init__(self, problems, source=None):
        if isinstance(problems, str):
            problems = [problems]
        self.problems = list(problems)
        self.source = source
        where = f"{source}: " if source else ""
        head = f"{where}invalid config ({len(self.problems)} problem{'s' if len(self.problems) != 1 else ''})"
        super().__init__(head + "\n" + "\n".join(f"  - {p}" for p in self.problems))


class DataError(SweepError):
    """A dataset cannot be found or read; the message says what was tried and how to fix it."""


class SetupError(SweepError):
    """The environment cannot do what was asked (no GPU, no such Keras backend, an unwritable folder, an
    unusable tracking store), found before any work: bad input, like a bad config."""


class DeviceError(SetupError):
    """The requested device or Keras backend is not available."""


class ResultsError(SweepError):
    """A results directory is missing, locked or unreadable."""


class MissingExtraError(SweepError):
    """An option needs an optional package that is not installed; the message gives the install command."""


class DamagedResultsError(ResultsError):
    """Results files are so damaged that nothing usable is left: bad input, like a bad config."""


class UnsafePathError(DamagedResultsError):
    """A path in a results directory would lead out of it (a symbolic link, or a recorded name that is not a
    plain file name): refused, like damaged results, before anything is read or written through it."""


class OptionError(SweepError):
    """A command-line option names a column, value or setting the results do not have."""

    def __init__(self, option: str, message: str):
        super().__init__(f"{option}: {message}")
        self.option = option


def require(extra: str, needed_by: str, load: bool = True) -> Any:
    """The module an optional package provides, or a MissingExtraError (exit 2) naming the install command.

    `load=False` only checks that it is installed, without the cost of importing it (Ray in the driver).
    """
    module, name, install = EXTRAS[extra]
    try:
        if load:
            return importlib.import_module(module)
        found = sys.modules[module] is not None if module in sys.modules else importlib.util.find_spec(module)
        if found:
            return None
    except ImportError:
        pass
    raise MissingExtraError(f"{needed_by} needs {name}, which is not installed: {install}")


def cannot_write(where: Path | str, exc: OSError, what: str = "results") -> ResultsError:
    """The error for a results directory (or other output) that refuses a write: what, where, and the OS's reason."""
    return ResultsError(f"cannot write {what} to {where}: {exc.strerror or exc}")


def did_you_mean(word, choices) -> str:
    """' (did you mean "x"?)' for the closest of `choices`, or "" when none is close."""
    match = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f' (did you mean "{match[0]}"?)' if match else ""


def excerpt(value, limit: int = 40) -> str:
    """A quoted, printable, short form of user input for an error message, however long or binary the input.

    Non-printable characters are escaped as repr() does and the quote is cut at about `limit`
    characters, saying how long the whole is: a message never carries a megabyte of someone's file.
    """
    unit = "bytes" if isinstance(value, (bytes, bytearray)) else "characters"
    total = len(value) if unit == "bytes" else len(str(value))
    value = bytes(value[:limit]).decode("utf-8", "backslashreplace") if unit == "bytes" else str(value)
    shown, used = "", 0
    for char in value[:limit]:
        escaped = repr(char)[1:-1] if char != "'" else "'"
        if len(shown) + len(escaped) > limit:
            break
        shown, used = shown + escaped, used + 1
    whole = used == len(value) and (unit == "characters" or total <= limit)
    return f"'{shown}'" if whole else f"'{shown}...' ({total:,} {unit} in all)"


class LimitError(SweepError):
    """The machine has no room left (a full disk, a used-up quota, the file-size limit of `ulimit -f`)."""


NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def out_of_room(exc: BaseException | None) -> OSError | None:
    """The OSError behind `exc` (itself or what caused it) when a disk, a quota or the file-size limit is
    full; None for any other error."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError) and exc.errno in NO_ROOM:
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def room_remedy(error: OSError, folder, move: str | None = None) -> str:
    """What to do about an out-of-room error while writing in `folder`, as a clause; `move` says how to
    write elsewhere instead ("point TMPDIR at"), where that is a way out."""
    if error.errno == errno.EFBIG:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
        if soft != resource.RLIM_INFINITY:
            return f"the file-size limit of this process (ulimit -f) is {soft:,} bytes: raise it (ulimit -f unlimited)"
        other = f": {move} a folder on another file system" if move else ""
        return f"the file system of {folder} takes no larger file{other}"
    if error.errno == errno.EDQUOT:
        return f"the disk quota for {folder} is used up: free some of it" + (
            f", or {move} a folder under another quota" if move else "")
    return f"free space on the disk of {folder}" + (f", or {move} a folder on a disk with room" if move else "")
