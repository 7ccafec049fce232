"""The one exception type that entry points turn into a single line for the user."""

import functools
import sys
from collections.abc import Callable
from typing import Any


class UserError(Exception):
    """Something the user can fix (a config value, a missing file): the message says what and how."""

    label = "error"
    exit_status = 2


class RunStopped(UserError):
    """A run stopped by a signal with its state saved; the message says how to resume it."""

    label = "stopped"

    def __init__(self, message: str, exit_status: int) -> None:
        super().__init__(message)
        self.exit_status = exit_status


def first_line(error: Exception) -> str:
    """An error's first line, or its type's name when it has no message: a reason to quote."""
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def exits_on_user_error(entry_point: Callable[..., Any]) -> Callable[..., Any]:
    """Print a ``UserError`` as one line on stderr and exit with its status (2), without a traceback."""

    @functools.wraps(entry_point)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return entry_point(*args, **kwargs)
        except UserError as error:
            print(f"{error.label}: {error}", file=sys.stderr)
            sys.exit(error.exit_status)

    return wrapper
