"""The errors tinyvae raises for a mistake in what it was given (a bad argument, option, file or name).

Each is a ``TinyVAEError`` and also the built-in error a caller would expect (``InputError`` is a ValueError, ...),
so ``except ValueError`` keeps working. The command line (``tinyvae.cli.main``) turns exactly these into a one-line
message; any other exception is a bug in tinyvae and keeps its traceback.
"""


class TinyVAEError(Exception):
    """Base class: a mistake in what tinyvae was asked to do, reported to the user, never a bug of tinyvae's."""


class InputError(TinyVAEError, ValueError):
    """A value out of range, an array of the wrong shape, an unknown name."""


class CheckpointError(InputError):
    """A file that is not a readable tinyvae checkpoint (truncated, corrupt, foreign, another format version)."""


class InputTypeError(TinyVAEError, TypeError):
    """An argument of the wrong type (an int where a float array was expected, a float64 batch into float32)."""


class MissingFileError(TinyVAEError, FileNotFoundError):
    """A file or folder that tinyvae was told to read does not exist."""


class DownloadError(TinyVAEError, RuntimeError):
    """Every mirror of a data set failed; the message lists each one and what to do by hand."""
