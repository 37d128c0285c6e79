"""Every AWS client the workstation side makes, from one place: the retry mode, how many attempts,
the connect and read timeouts.

``session(region)`` is a boto3 session whose clients all take ``STANDARD`` unless a caller asks for
another config, the SageMaker SDK's own clients (made from the same session) included. botocore's
standard mode retries throttling, 5xx answers and dropped or refused connections with exponential
backoff and jitter; the log follower asks for ``FOLLOWING``, adaptive mode, which also slows the
client down when CloudWatch Logs throttles it (GetLogEvents allows a few requests per second per
account and region). What a request still cannot get past, a long outage, is the follower's to
ride out (training/launch/outage.py) or one line saying what to re-run.
"""

import random

import boto3
from botocore.config import Config

MAX_ATTEMPTS = 8  # per request, the first included
CONNECT_TIMEOUT_SECONDS = 10
READ_TIMEOUT_SECONDS = 60
POOL_CONNECTIONS = 20  # concurrent transfers (staging uploads 16 files at once)


def _config(mode: str, attempts: int = MAX_ATTEMPTS) -> Config:
    return Config(
        retries={"mode": mode, "max_attempts": attempts},
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=READ_TIMEOUT_SECONDS,
        max_pool_connections=POOL_CONNECTIONS,
    )


STANDARD = _config("standard")
# The follower tries each request a few times only: what outlasts them is an outage, which it
# rides out itself, with one line, rather than sit silent in one request's retries for a minute.
FOLLOWING = _config("adaptive", attempts=3)


class Session(boto3.Session):
    """A boto3 session whose clients take the project's retry and timeout settings."""

    def client(self, *args, config: Config | None = None, **kwargs):
        merged = STANDARD.merge(config) if config is not None else STANDARD
        return super().client(*args, config=merged, **kwargs)


def session(region: str | None = None) -> Session:
    return Session(region_name=region)


def backoff_seconds(attempt: int, base: float = 1.0, cap: float = 30.0) -> float:
    """Exponential backoff with full jitter (AWS's advice): a random wait up to base × 2^attempt,
    capped, so that clients that lost the network together do not come back together."""
    return random.uniform(0, min(cap, base * 2**attempt))


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` → (bucket, key)."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key
