"""Progress for long work: a tqdm bar on a terminal, a few plain lines in a log.

In CI logs or under ``nohup`` a bar's hundreds of redraws are noise, so there the same calls
print a line at each quarter of the work and one at the end.
"""

import sys
import time

from tqdm import tqdm


class LogProgress:
    """tqdm's small interface (update, set_postfix_str, close, with) as a few log lines."""

    def __init__(self, total: int, desc: str, unit: str = "it", unit_scale: bool = False) -> None:
        self.total, self.desc, self.unit, self.unit_scale = total, desc, unit, unit_scale
        self.n = 0
        self.postfix = ""
        self.started = time.time()
        self.next_quarter = 1
        self.closed = False

    def _amount(self, value: float) -> str:
        if self.unit_scale:
            return tqdm.format_sizeof(value) + self.unit
        return f"{value:g} {self.unit}"

    def _line(self, label: str) -> None:
        extra = f", {self.postfix}" if self.postfix else ""
        print(
            f"{self.desc}: {label} {self._amount(self.n)}/{self._amount(self.total)}{extra} "
            f"in {time.time() - self.started:.0f} s",
            file=sys.stderr,
            flush=True,
        )

    def update(self, n: float = 1) -> None:
        """A line when the work passes a quarter (the last one passed, when a step passes
        several); none for the end, which close() says."""
        self.n += n
        passed = None
        while self.total and self.next_quarter < 4 and self.n >= self.total * self.next_quarter / 4:
            passed = self.next_quarter
            self.next_quarter += 1
        if passed and self.n < self.total:
            self._line(f"{25 * passed}%")

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self.postfix = text

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._line("done")

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(total: int, desc: str, unit: str = "it", unit_scale: bool = False, **kwargs):
    """A tqdm bar when stderr is a terminal, else a LogProgress."""
    if sys.stderr.isatty():
        return tqdm(total=total, desc=desc, unit=unit, unit_scale=unit_scale, **kwargs)
    return LogProgress(total, desc, unit, unit_scale)


def track(iterable, total: int, desc: str, unit: str = "it"):
    """Iterates ``iterable`` with progress (tqdm's ``tqdm(iterable)`` form)."""
    with progress(total, desc, unit) as bar:
        for item in iterable:
            yield item
            bar.update(1)
