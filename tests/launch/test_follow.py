"""Following a training job across polls: each status transition printed once, log lines in the
order they happened, and every log line before the job's final status."""

from datetime import UTC, datetime, timedelta

from training.common.sagemaker import JobKind
from training.launch import follow

START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


def ms(seconds: float) -> float:
    return at(seconds).timestamp() * 1000


def description(status: str, *transitions: tuple[str, float]) -> dict:
    return {
        "TrainingJobName": "j",
        "TrainingJobStatus": status,
        "SecondaryStatus": transitions[-1][0],
        "SecondaryStatusTransitions": [
            {"Status": name, "StartTime": at(t), "StatusMessage": f"{name} message"}
            for name, t in transitions
        ],
    }


STEPS = ("Starting", 0), ("Downloading", 1), ("Training", 2)
# What DescribeTrainingJob and the log stream show at each of four polls: a spot interruption
# and the restart fall between two polls, and the last log lines land before the job completes.
POLLS = [
    (description("InProgress", *STEPS[:2]), []),
    (description("InProgress", *STEPS), [(ms(3), "epoch 1"), (ms(4), "epoch 2")]),
    (
        description("InProgress", *STEPS, ("Interrupted", 5), ("Downloading", 6), ("Training", 7)),
        [(ms(4.5), "epoch 3, cut short"), (ms(8), "resuming after epoch 2")],
    ),
    (
        description(
            "Completed",
            *STEPS,
            ("Interrupted", 5),
            ("Downloading", 6),
            ("Training", 7),
            ("Uploading", 10),
            ("Completed", 11),
        ),  # fmt: skip
        [(ms(9), "epoch 3"), (ms(9.5), "done")],
    ),
]


class ScriptedJob:
    """DescribeTrainingJob and the job's new log lines, one poll at a time."""

    def __init__(self) -> None:
        self.polls = iter(POLLS)
        self.logs: list = []

    def describe(self, sm, job: str) -> dict:
        current, self.logs = next(self.polls)
        return current

    def poll(self) -> list:
        return self.logs


def test_each_transition_once_and_every_log_line_before_the_final_status(monkeypatch):
    script = ScriptedJob()
    monkeypatch.setattr(
        JobKind, "describe", lambda kind, sm, job, ride_out=False: script.describe(sm, job)
    )
    monkeypatch.setattr(follow.LogFollower, "poll", lambda self: script.poll())
    monkeypatch.setattr(follow.time, "sleep", lambda seconds: None)
    session = type("Session", (), {"client": lambda self, name, config=None: None})()
    lines = []
    end = follow.follow(session, "j", write=lines.append)
    assert end.description["TrainingJobStatus"] == "Completed"
    assert lines == [
        "[j] InProgress",
        "[j] Starting: Starting message",
        "[j] Downloading: Downloading message",
        "[j] Training: Training message",
        "epoch 1",
        "epoch 2",
        "epoch 3, cut short",
        "[j] Interrupted: Interrupted message",
        "[j] Downloading: Downloading message",
        "[j] Training: Training message",
        "resuming after epoch 2",
        "epoch 3",
        "done",
        "[j] Uploading: Uploading message",
        "[j] Completed: Completed message",
    ]


def test_a_poll_that_brings_nothing_new_prints_nothing():
    tracker = follow.StatusTracker("j")
    current = description("InProgress", *STEPS)
    assert len(tracker.events(current)) == 4  # the job's status and three transitions
    assert tracker.events(current) == []
    assert tracker.events(description("InProgress", *STEPS, ("Uploading", 9))) == [
        (ms(9), "[j] Uploading: Uploading message")
    ]


def test_a_stopped_jobs_own_status_comes_last():
    tracker = follow.StatusTracker("j")
    tracker.events(description("InProgress", *STEPS))
    events = tracker.events(description("Stopped", *STEPS, ("MaxRuntimeExceeded", 9)))
    ordered = [line for _, line in sorted(events, key=lambda event: event[0])]
    assert ordered == ["[j] MaxRuntimeExceeded: MaxRuntimeExceeded message", "[j] Stopped"]
