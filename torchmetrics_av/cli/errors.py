"""The one exception type of the command line: a user-facing message, printed without a traceback (exit code 2).

Example:
    >>> from torchmetrics_av.cli.errors import CLIError
    >>> str(CLIError("--gen x is not a folder"))
    '--gen x is not a folder'
"""

from __future__ import annotations


class CLIError(Exception):
    """A user-facing error: printed without a traceback, exit code 2."""
