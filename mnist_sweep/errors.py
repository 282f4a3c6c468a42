"""Errors a user can act on; anything else is a bug or a failed trial."""

import difflib


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


class DeviceError(SweepError):
    """The requested device is not available."""


class ResultsError(SweepError):
    """A results directory is missing, locked or unreadable."""


class MissingExtraError(SweepError):
    """An option needs an optional package that is not installed; the message gives the install command."""


class OptionError(SweepError):
    """A command-line option names a column, value or setting the results do not have."""

    def __init__(self, option: str, message: str):
        super().__init__(f"{option}: {message}")
        self.option = option


def did_you_mean(word, choices) -> str:
    """' (did you mean "x"?)' for the closest of `choices`, or "" when none is close."""
    match = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f' (did you mean "{match[0]}"?)' if match else ""
