"""One exception hierarchy. Every message says what was expected, what came, and where."""

from __future__ import annotations


class RecoWorldError(Exception):
    """Base of every error RecoWorld raises on purpose."""


class DataError(RecoWorldError):
    """A dataset file is missing or malformed.

    The message names the file, the line (1-based, when known) and the expected format.
    """

    def __init__(
        self,
        path: object,
        problem: str,
        *,
        expected: str | None = None,
        line: int | None = None,
    ) -> None:
        where = f"{path}" if line is None else f"{path}, line {line}"
        msg = f"{where}: {problem}"
        if expected:
            msg += f"; expected {expected}"
        super().__init__(msg)
        self.path = str(path)
        self.line = line
        self.problem = problem
        self.expected = expected


class ConfigError(RecoWorldError):
    """A study or config file does not decode: names the file and the `$.path` of the field."""


class TargetingError(RecoWorldError):
    """A targeting spec is invalid or selects nobody."""


class RunError(RecoWorldError):
    """A run cannot start or complete (existing run id, unreadable run directory, ...)."""


class LLMError(RecoWorldError):
    """A language model cannot serve the study: backend missing or dead, replay mismatch, a
    configuration the engine refuses. Names the model or run, and the call where one applies."""


class RecommenderError(RecoWorldError):
    """A recommender was used against its contract (or a plug-in broke it)."""
