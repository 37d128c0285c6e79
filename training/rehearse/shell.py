"""Commands as a user runs them: ``make <target> NAME=value`` in a shell that sourced the
stand-in's ``.standin/env`` and nothing else of it, its output streamed and kept.

Ctrl-C is pressed as a terminal presses it: SIGINT to the command's whole process group (make and
the launcher), with the command's standard input on a pseudo-terminal, so that the launcher's
prompt ("Stop training job …? [y/N]") is asked and answered as a person would.
"""

import os
import pty
import re
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EPOCH = re.compile(r"^\[epoch\] phase=(\w+) epoch=(\d+)/")
SUBMITTED = re.compile(r"^submitted (?:tuning job )?([\w-]+)")
# make's own settings, from a make that runs the rehearsal: a command is started afresh.
MAKE_SETTINGS = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")


@dataclass
class Ran:
    """One command's exit status and output."""

    command: str
    code: int
    output: str

    @property
    def lines(self) -> list[str]:
        return self.output.splitlines()

    def epochs(self) -> list[tuple[str, int]]:
        """The (phase, epoch) of every epoch line the command printed, in order."""
        return [(m.group(1), int(m.group(2))) for m in map(EPOCH.match, self.lines) if m]

    def submitted(self) -> str:
        """The job (or tuning job) the command submitted."""
        names = [m.group(1) for m in map(SUBMITTED.match, self.lines) if m]
        if not names:
            raise AssertionError(f"`{self.command}` submitted no job")
        return names[-1]

    def says(self, text: str) -> bool:
        return text in self.output


@dataclass
class Ctrl_C:  # noqa: N801  (named after the keys)
    """Press Ctrl-C once ``after`` appears in the output, then answer the prompt."""

    after: str
    answer: str = "y"
    prompt: str = "[y/N] "


@dataclass
class Shell:
    """A shell with ``env`` (the stand-in's variables over this process's environment)."""

    env: dict[str, str]
    cwd: Path = REPO
    echo: Callable[[str], None] = print
    ran: list[Ran] = field(default_factory=list)

    def make(self, target: str, ctrl_c: Ctrl_C | None = None, **settings) -> Ran:
        """``make <target> NAME=value …`` (settings whose value is None are left out)."""
        words = [f"{name}={value}" for name, value in settings.items() if value is not None]
        command = ["make", "--no-print-directory", target, *words]
        shown = " ".join(w if " " not in w else f'{w.split("=", 1)[0]}="{w.split("=", 1)[1]}"'
                         for w in command[2:])  # fmt: skip
        self.echo(f"$ make {shown}")
        result = self._run(command, ctrl_c)
        ran = Ran(f"make {shown}", result[0], result[1])
        self.ran.append(ran)
        self.echo(f"  (exit {ran.code})")
        return ran

    def _run(self, command: list[str], ctrl_c: Ctrl_C | None) -> tuple[int, str]:
        env = {k: v for k, v in self.env.items() if k not in MAKE_SETTINGS}
        terminal, stdin = pty.openpty() if ctrl_c else (None, subprocess.DEVNULL)
        process = subprocess.Popen(command, cwd=self.cwd, env=env, stdin=stdin,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # fmt: skip
        if ctrl_c:
            os.close(stdin)
        output, pending, pressed, answered = [], "", False, False
        try:
            while chunk := os.read(process.stdout.fileno(), 65536):
                pending += chunk.decode("utf-8", "replace")
                *complete, pending = pending.split("\n")
                for line in complete:
                    output.append(line)
                    self.echo(line)
                if ctrl_c and not pressed and ctrl_c.after in "\n".join(complete):
                    os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
                    pressed = True
                if pressed and not answered and pending.endswith(ctrl_c.prompt):
                    os.write(terminal, f"{ctrl_c.answer}\n".encode())
                    answered = True
            if pending:
                output.append(pending)
                self.echo(pending)
            return process.wait(), "\n".join(output)
        finally:
            if process.poll() is None:
                process.kill()
            if terminal is not None:
                os.close(terminal)
