"""The one error path of every ``objtrack`` command (and of ``python -m objtrack_jax.train.main``).

Kept apart from :mod:`objtrack_jax.cli` so that a subcommand's own entry point can use it without
importing the command table (no import cycle).
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, Sequence


class UserError(ValueError):
    """An expected failure caused by the input (bad file, flag or value); the message says which."""


# Expected failures: printed as ``objtrack <cmd>: error: <message>`` (exit 2), no traceback. The
# project's own errors (DataError, TapVidError, CrohdError, CheckpointMismatchError) are ValueErrors.
EXPECTED_ERRORS = (ValueError, OSError, MemoryError, FloatingPointError, UnicodeDecodeError)
EXIT_USAGE = 2
EXIT_INTERNAL = 1


def debug_enabled(argv: Sequence[str] = ()) -> bool:
    """``--debug`` on the command line or ``OBJTRACK_DEBUG`` set to anything but '', '0', 'false'."""
    env = os.environ.get("OBJTRACK_DEBUG", "").strip().lower()
    return "--debug" in argv or env not in ("", "0", "false", "no")


def _error_message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"  # "[Errno 2] ..." -> "path: No such file ..."
    msg = str(exc).strip()
    if isinstance(exc, KeyError) and msg.startswith(("'", '"')):
        msg = msg[1:-1]
    return msg or type(exc).__name__


def run_guarded(prog: str, fn: Callable[[], Any], debug: bool = False) -> int:
    """Runs ``fn()`` (one subcommand) with the single error path of every ``objtrack`` command.

    Expected failures (:data:`EXPECTED_ERRORS`: the project's error classes, missing or unreadable
    files, bad values, refused memory estimates) print ``<prog>: error: <message>`` to stderr and
    return 2; anything else prints ``<prog>: internal error: ...`` and returns 1. With ``debug``
    the exception propagates with its traceback instead. argparse errors exit 2 with their own
    ``<prog>: error:`` line. Returns ``fn``'s result when it is an int, else 0.
    """
    try:
        result = fn()
    except SystemExit as e:
        code = e.code
        if code is None or isinstance(code, int):
            return int(code or 0)
        if debug:  # sys.exit("message")
            raise
        print(f"{prog}: error: {code}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as e:
        if debug:
            raise
        print(f"{prog}: interrupted" + (f" ({e})" if str(e) else ""), file=sys.stderr)
        return 130
    except EXPECTED_ERRORS as e:
        if debug:
            raise
        print(f"{prog}: error: {_error_message(e)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:  # pylint: disable=broad-except
        if debug:
            raise
        from objtrack_jax.extras import as_missing_extra

        missing = as_missing_extra(e)  # an optional dependency: one line naming the extra
        if missing is not None:
            print(f"{prog}: error: {missing}", file=sys.stderr)
            return EXIT_USAGE
        print(f"{prog}: internal error: {type(e).__name__}: {_error_message(e)}\n"
              f"(run again with --debug or OBJTRACK_DEBUG=1 for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL
    return int(result) if isinstance(result, int) and not isinstance(result, bool) else 0
