"""Following a training job across polls: each status transition printed once, log lines in the
order they happened, and every log line before the job's final status."""

from datetime import UTC, datetime, timedelta

from clock import Clock

from training.common.sagemaker import TRAINING_JOB
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


class ScriptedSession:
    """A boto3 session whose SageMaker and CloudWatch Logs clients answer POLLS, one poll at a
    time, through botocore's Stubber: DescribeTrainingJob, then the job's log stream."""

    def __init__(self) -> None:
        import boto3
        from botocore.stub import Stubber

        session = boto3.Session(region_name="us-east-1", aws_access_key_id="x",
                                aws_secret_access_key="y")  # fmt: skip
        self.clients = {"sagemaker": session.client("sagemaker"), "logs": session.client("logs")}
        self.stubbers = {name: Stubber(client) for name, client in self.clients.items()}
        sm, logs = self.stubbers["sagemaker"], self.stubbers["logs"]
        known, token = None, "t0"  # the position the follower holds, and the stream's end
        for current, lines in POLLS:
            sm.add_response("describe_training_job", full_description(current))
            logs.add_response("describe_log_streams", {"logStreams": [
                {"logStreamName": "j/algo-1-1", "creationTime": 0}]})  # fmt: skip
            events = [{"timestamp": int(t), "message": line} for t, line in lines]
            token = f"t{int(token[1:]) + 1}" if events else token
            logs.add_response("get_log_events", {"events": events, "nextForwardToken": token})
            if token != known:  # the follower reads on until its position stops moving
                logs.add_response("get_log_events", {"events": [], "nextForwardToken": token})
            known = token
        for stubber in self.stubbers.values():
            stubber.activate()

    def client(self, name, config=None):
        return self.clients[name]


def full_description(current: dict) -> dict:
    """A DescribeTrainingJob answer with every field the API requires."""
    return {
        **current,
        "TrainingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/j",
        "ModelArtifacts": {"S3ModelArtifacts": "s3://b/outputs/j/output/model.tar.gz"},
        "AlgorithmSpecification": {"TrainingInputMode": "File"},
        "ResourceConfig": {
            "InstanceType": "ml.m5.xlarge",
            "InstanceCount": 1,
            "VolumeSizeInGB": 50,
        },  # fmt: skip
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "CreationTime": START,
    }


def test_each_transition_once_and_every_log_line_before_the_final_status():
    session, clock = ScriptedSession(), Clock()
    lines = []
    end = follow.follow(TRAINING_JOB, session, "j", write=lines.append, clock=clock)
    assert end.description["TrainingJobStatus"] == "Completed"
    assert clock.waits == [15.0] * 3  # a training job's polls, 15 s apart
    for stubber in session.stubbers.values():
        stubber.assert_no_pending_responses()
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
