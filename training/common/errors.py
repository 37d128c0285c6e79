"""The error types the command-line entry points turn into a one-line message and an exit code."""

import functools
import sys
from collections.abc import Callable


class UserError(Exception):
    """An expected failure; the message says what is wrong and what to do."""

    exit_code = 2


class Interrupted(UserError):
    """The user pressed Ctrl-C; the message says what is left running and how to resume."""

    exit_code = 130  # 128 + SIGINT, as shells report an interrupted command


def cli(main: Callable[..., int | None]) -> Callable[..., int]:
    """Wraps a command's main: a UserError becomes 'error: …' on stderr and its exit code."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs) or 0
        except UserError as error:
            sys.stdout.flush()  # in a log file, the error comes after what was printed before it
            print(f"error: {error}", file=sys.stderr)
            return error.exit_code
        except KeyboardInterrupt:
            sys.stdout.flush()
            print("interrupted", file=sys.stderr)
            return Interrupted.exit_code

    return wrapper
