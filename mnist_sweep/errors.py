"""Errors a user can act on; anything else is a bug or a failed trial."""


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
