"""The one error type for what a user got wrong.

``ws3d`` raises :class:`InputError` when a config key, a command-line argument or a file
the user named is wrong: missing, malformed, or inconsistent with another. The command
line prints such an error in one line and exits with status 2; any other exception is a
bug in ws3d and keeps its traceback.

Both types subclass the built-in errors a Python caller would expect (``ValueError``, and
``FileNotFoundError`` for a missing file), so code that calls ws3d as a library can keep
catching those.
"""


class InputError(ValueError):
    """Something the user gave ws3d is wrong; the message names it (the key, the file)."""


class MissingFileError(InputError, FileNotFoundError):
    """A file or folder the user named does not exist."""


def read_input(path, read, kind: str):
    """``read(path)``: a third-party parser (np.load, pickle, scipy.io.loadmat, json) on a
    file the user named, its failure on a truncated, foreign or corrupt file raised as an
    :class:`InputError` that names the file and what it should have been (``kind``)."""
    try:
        return read(path)
    except Exception as error:  # the parser's own error types vary; the file is the problem
        raise InputError(f"{path}: not a readable {kind} ({type(error).__name__}: {error})") from error
