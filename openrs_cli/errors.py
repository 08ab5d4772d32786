"""Error family. An OpenrsError is bad input or an unusable environment: the CLI prints its message as one
line and exits with code 2, without a traceback. Anything else is a bug and keeps its traceback."""


class OpenrsError(Exception):
    """Bad input or environment; the message names the problem and the fix."""

    exit_code = 2


class RecipeError(OpenrsError):
    """A recipe file, key or value is invalid."""


class DataError(OpenrsError):
    """A dataset, benchmark file or column is missing or corrupt."""


class TaskError(OpenrsError):
    """An unknown evaluation task or an unusable task file."""


class LedgerError(OpenrsError):
    """A cost ledger or price table cannot be used."""


class RunDirError(OpenrsError):
    """A run or output directory cannot be used as asked (exists, not writable, incomplete)."""


class Interrupted(OpenrsError):
    """Ctrl-C (SIGINT) stopped the work; the message says what was kept and how to continue."""

    exit_code = 130
