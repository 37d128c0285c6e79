"""Riding out the network while following a job: a ``full`` run is followed for hours, from a
laptop whose Wi-Fi drops, that goes to sleep, or on a VPN that resets connections.

Each request already retries a few times (training/common/aws.py); what outlasts those retries —
no network, refused or reset connections, timeouts, throttling, 5xx answers — is retried here with
backoff and jitter for up to a window (RECONNECT_MINUTES, default 30). The follower prints one line
when the connection is lost and one when it is back, then catches up where it was: its log
positions and status bookkeeping change only when a request succeeded. Past the window, one line
with the command that picks the job up again, and a non-zero exit; the job itself runs on. Until
AWS has answered once, there is nothing to ride out: an endpoint that cannot be reached at all is
one line at once (a follower right after its submission starts out reached); throttling and 5xx
answers are ridden out from the start.
"""

import time
from collections.abc import Callable

from training.common.aws import backoff_seconds
from training.common.aws_errors import (
    AWS_OR_NETWORK_ERRORS,
    THROTTLING,
    aws_error,
    error_code,
    is_transient,
    is_unanswered,
    one_line,
)
from training.common.errors import UserError

RECONNECT_MINUTES = 30.0


class Outage:
    """Runs a follower's requests, riding out transient failures (see the module docstring)."""

    def __init__(
        self,
        name: str,
        resume_command: str,
        minutes: float = RECONNECT_MINUTES,
        write: Callable = print,
        reached: bool = False,
        sleep: Callable = time.sleep,
        clock: Callable = time.monotonic,
    ) -> None:
        self.name, self.resume_command = name, resume_command
        self.window = minutes * 60
        self.write, self.sleep, self.clock = write, sleep, clock
        self.lost_at: float | None = None
        self.reached = reached  # AWS has answered this run (a submission, or this follower)

    def run(self, request: Callable):
        """``request()``'s answer, once AWS gives one; raises UserError past the window."""
        attempt = 0
        while True:
            try:
                answer = request()
            except AWS_OR_NETWORK_ERRORS as error:
                if not is_transient(error):
                    raise
                if not self.reached and is_unanswered(error):  # never reached: nothing to ride out
                    raise aws_error(error, f"following {self.name}") from error
                self._wait(error, attempt)
                attempt += 1
                continue
            self.reached = True
            if self.lost_at is not None:
                gone = self.clock() - self.lost_at
                self.write(f"[{self.name}] AWS answers again after {gone:.0f} s; catching up")
                self.lost_at = None
            return answer

    def _wait(self, error: Exception, attempt: int) -> None:
        now = self.clock()
        if self.lost_at is None:
            self.lost_at = now
            what = "AWS is throttling this account's requests" if error_code(error) in THROTTLING \
                else "lost the connection to AWS"  # fmt: skip
            self.write(
                f"[{self.name}] {what} ({one_line(error, 120)}); going on as soon as it answers, "
                f"for up to {self.window / 60:g} min"
            )
        left = self.lost_at + self.window - now
        if left <= 0:
            raise UserError(
                f"no answer from AWS for {self.window / 60:g} min while following {self.name} "
                f"({one_line(error, 120)}); it runs on untouched: pick it up with "
                f"`{self.resume_command}`"
            )
        self.sleep(min(backoff_seconds(attempt), left))
