"""The one error type the command-line entry points turn into a one-line message and exit 2."""

import functools
import sys
from collections.abc import Callable


class UserError(Exception):
    """An expected failure; the message says what is wrong and what to do."""


def cli(main: Callable[..., int | None]) -> Callable[..., int]:
    """Wraps a command's main: a UserError becomes 'error: …' on stderr and exit code 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs) or 0
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return wrapper
