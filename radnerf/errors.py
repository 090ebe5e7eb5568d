"""User-facing errors.

A :class:`RadNerfError` is a problem with the user's input or environment that
the user can fix; the CLI prints it as one line (plus its hint) and exits
non-zero without a traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class RadNerfError(Exception):
    """An error the user can act on.

    Args:
        message: what is wrong, in one sentence.
        hint: what to do about it (a command, an override, a file to fetch).
    """

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"

    def __reduce__(self):
        # Pickling keeps the hint (and a subclass's own fields): an error raised in a worker process or on a
        # Dask worker reaches the user whole. Exception's default would call __init__(message) alone.
        return _rebuild, (type(self), self.args, dict(self.__dict__))


def _rebuild(cls: type, args: tuple, state: dict) -> RadNerfError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class ConfigError(RadNerfError):
    """A config value or override that cannot be used."""


class InputError(RadNerfError):
    """An input file (video, audio) that cannot be used as given."""


class MissingWeightsError(RadNerfError):
    """An external model file is not in the weights cache."""


class StageOutputExistsError(RadNerfError):
    """A person's folder holds outputs from a different source."""
