"""An emulated account in the test's own process: a moto server on loopback with the project's
stack (training/standin/account.py), the launcher user's keys in the environment, the stand-in
running its jobs and IAM enforced, as ``make standin-up`` has it but without a second process,
so a test can reach into it (its runs, its throttle)."""

from contextlib import contextmanager

import boto3

from training.standin import StandIn
from training.standin.account import (
    FOREIGN_SETTINGS,
    admin_environment,
    create_stack,
    free_port,
    launcher_keys,
    start_emulator,
)
from training.standin.iam import enforced

STACK = "rehearse"


@contextmanager
def emulated_account(tmp_path, monkeypatch, change=None, stand_in: dict | None = None):
    """Yields (the stack's outputs, the stand-in). ``change(iam, outputs)`` edits the stack as the
    administrator before the launcher's identity and enforcement take over; ``stand_in``: the
    StandIn's keyword arguments (an interruption, a throttle). The test's cwd holds .infra/."""
    monkeypatch.chdir(tmp_path)
    port = free_port()
    server = start_emulator(port)
    endpoint = f"http://127.0.0.1:{port}"
    for name in FOREIGN_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    for name, value in admin_environment(endpoint).items():
        monkeypatch.setenv(name, value)
    try:
        outputs = create_stack(STACK, tmp_path / ".infra")
        if change:
            change(boto3.client("iam"), outputs)
        for name, value in launcher_keys(STACK).items():
            monkeypatch.setenv(name, value)
        standin = StandIn(endpoint, tmp_path / "standin", **(stand_in or {})).start()
        try:
            with enforced():
                yield outputs, standin
        finally:
            standin.stop()
    finally:
        server.stop()
