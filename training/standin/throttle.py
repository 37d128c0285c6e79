"""AWS's request rates, enforced on the emulator: a call above its account's rate answers
``ThrottlingException: Rate exceeded``, as AWS does, so a follower or a results fetch that
hammers an API fails here before it fails on AWS.

The rates (requests per second, per account and region, each action on its own):
- CloudWatch Logs, from AWS's published quotas (AWS General Reference, "Amazon CloudWatch Logs
  endpoints and quotas", docs.aws.amazon.com/general/latest/gr/cwl_region.html): GetLogEvents 25,
  DescribeLogStreams 25, FilterLogEvents 25. AWS's knowledge-center article on Logs throttling
  adds that GetLogEvents and FilterLogEvents are hard limits, never raised.
- SageMaker publishes no figure for its Describe and List calls (its quotas page says only that
  "API throttling limits for CreateJob, DescribeJob, and other management APIs are not
  adjustable"). The stand-in allows 2 per second each: stricter than any rate AWS is known to
  apply, and ten times what the launcher needs (one Describe per job every 15 s, a tuning job's
  List every 30 s), so a loop that calls them back to back shows up here.

Each action is a token bucket: ``rate`` tokens a second, at most ``burst`` saved up. The
launcher's clients retry throttling themselves (training/common/aws.py), and its followers ride
out what outlasts those retries (training/launch/outage.py).
"""

import threading
import time
from dataclasses import dataclass, field

from training.standin.hooks import Hooks


@dataclass
class Bucket:
    rate: float  # requests per second
    burst: float  # requests that may come at once
    tokens: float = -1.0
    stamp: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def take(self) -> bool:
        with self.lock:
            now = time.monotonic()
            if self.tokens < 0:
                self.tokens = self.burst
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1:
                self.tokens -= 1
                return True
            return False


LOGS_RATE = 25.0  # GetLogEvents, DescribeLogStreams, FilterLogEvents (see the docstring)
SAGEMAKER_RATE = 2.0  # Describe and List calls (no published figure; see the docstring)
RATES = {
    ("logs", "GetLogEvents"): LOGS_RATE,
    ("logs", "DescribeLogStreams"): LOGS_RATE,
    ("logs", "FilterLogEvents"): LOGS_RATE,
    ("sagemaker", "DescribeTrainingJob"): SAGEMAKER_RATE,
    ("sagemaker", "DescribeHyperParameterTuningJob"): SAGEMAKER_RATE,
    ("sagemaker", "ListTrainingJobs"): SAGEMAKER_RATE,
    ("sagemaker", "ListTrainingJobsForHyperParameterTuningJob"): SAGEMAKER_RATE,
    ("sagemaker", "ListHyperParameterTuningJobs"): SAGEMAKER_RATE,
}


class Throttle:
    """The account's request rates; ``scale`` multiplies every rate (a test slows them down)."""

    def __init__(self, scale: float = 1.0) -> None:
        self.buckets = {
            key: Bucket(rate * scale, max(1.0, rate * scale)) for key, rate in RATES.items()
        }
        self.throttled: dict[tuple, int] = {}  # how often each action was refused

    def summary(self) -> str:
        if not self.throttled:
            return "no request was throttled"
        counts = ", ".join(f"{action} {n}" for (_, action), n in sorted(self.throttled.items()))
        return f"requests throttled (ThrottlingException: Rate exceeded): {counts}"

    def admit(self, service: str, action: str) -> bool:
        bucket = self.buckets.get((service, action))
        if bucket is None or bucket.take():
            return True
        self.throttled[(service, action)] = self.throttled.get((service, action), 0) + 1
        return False


def install(throttle: Throttle) -> Hooks:
    """Every SageMaker and CloudWatch Logs request passes ``throttle`` first; returns the hooks
    to restore."""
    from moto.core.exceptions import JsonRESTError
    from moto.logs.responses import LogsResponse
    from moto.sagemaker.responses import SageMakerResponse

    hooks = Hooks()
    for service, cls in (("sagemaker", SageMakerResponse), ("logs", LogsResponse)):
        authorize = cls._authenticate_and_authorize_normal_action

        def check(response, resource="*", _authorize=authorize, _service=service):
            if not throttle.admit(_service, response._get_action()):
                raise JsonRESTError("ThrottlingException", "Rate exceeded")
            return _authorize(response, resource)

        hooks.replace(cls, "_authenticate_and_authorize_normal_action", check)
    return hooks
