"""The base of every error that a command reports as one line instead of a traceback.

A bad input the user can fix (a malformed data file, a config value, a checkpoint of another
model, a missing dataset) raises a subclass of ``InputError``; the tools' error boundary
(``pointformer.utils.cli.run_tool``) prints its message on stderr and exits with status 2.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class InputError(Exception):
    """A bad input the user can fix; the message names the file, key or field and what was expected."""
