"""The one error boundary of every ``tools/*.py`` entry point.

``run_tool(main)`` runs a command's ``main(argv)`` and turns the errors a user can fix into one
line on stderr and exit status 2: every ``InputError`` (data format, config, checkpoint, dataset,
export, evaluation input) and the operating system's "missing file" family. Any other exception
is a bug and keeps its traceback. ``--debug`` (taken out of the arguments before ``main`` sees
them) shows the traceback of the known errors too.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence

from pointformer.utils.errors import InputError

# Errors a command reports as one line: the input is wrong, not the program.
KNOWN_ERRORS: tuple[type[BaseException], ...] = (
    InputError,
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)
EXIT_INPUT_ERROR = 2
EXIT_INTERRUPTED = 130
DEBUG_FLAG = "--debug"


def add_debug_argument(parser: argparse.ArgumentParser) -> None:
    """Documents ``--debug`` in a tool's ``--help`` (``run_tool`` consumes the flag itself)."""
    parser.add_argument(DEBUG_FLAG, action="store_true", help="show the traceback of input errors too")


def error_message(error: BaseException) -> str:
    """One line for a known error: the message, or for an OS error the file and the reason."""
    if isinstance(error, OSError) and error.filename is not None and not isinstance(error, InputError):
        text = f"{os.fsdecode(error.filename)}: {error.strerror or type(error).__name__}"
    else:
        text = str(error) or type(error).__name__
    # One line: multi-line messages (a YAML parser's context, say) are joined.
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def run_tool(
    main: Callable[[list[str]], int | None], argv: Sequence[str] | None = None, prog: str | None = None
) -> int:
    """Runs ``main(argv)`` (default ``sys.argv[1:]``) inside the error boundary; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in args
    args = [a for a in args if a != DEBUG_FLAG]
    prog = prog or os.path.basename(sys.argv[0] or "pointformer")
    try:
        status = main(args)
    except KNOWN_ERRORS as e:
        if debug:
            traceback.print_exc()
        print(f"{prog}: error: {error_message(e)}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SystemExit as e:  # argparse's usage errors (status 2, already printed) and --help
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0 if status is None else int(status)
