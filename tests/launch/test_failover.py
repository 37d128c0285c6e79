"""Capacity failover (training/launch/failover.py): each trigger of a move, against the stand-in's
SageMaker (CAPACITY_FAIL, a quota in use), every candidate failing, the candidates checked before
anything is spent, and a tuning job's candidates sent as InstanceConfigs."""

import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from accounts import emulated_account, requests_sent
from launch_helpers import BUCKET, TINY

from training.common.instances import quota_name
from training.common.sagemaker import TRAINING_JOB
from training.launch.__main__ import main as launch
from training.launch.failover import ATTEMPTS_ENV, CapacityWait, capacity_shortage
from training.launch.follow import JobEnd
from training.standin.quotas import Quotas

G5, G4DN = "ml.g5.xlarge", "ml.g4dn.xlarge"


def cloud(splits, *extra: str, hp: tuple = ()) -> list[str]:
    return ["cloud", "--experiment", "smoke", "--hp", *TINY, *hp, "--stack", "rehearse",
            "--splits", str(splits), "--poll-seconds", "0.3", *extra]  # fmt: skip


def described(standin) -> dict:
    from training.common.aws import FOLLOWING  # retries as the follower does: AWS's rates apply

    sm = boto3.Session().client("sagemaker", config=FOLLOWING)  # signs as the launcher
    return {name: sm.describe_training_job(TrainingJobName=name) for name in standin.runs}


def test_every_candidate_without_capacity_is_tried_in_order_and_the_end_names_each(
    tmp_path, monkeypatch, tiny_splits, capsys
):
    """SPOT=auto on two types the account has no capacity for: each spot job waits past
    CAPACITY_WAIT and is stopped, each on-demand job fails with CapacityError, all on one
    checkpoint folder; then one line names the four attempts and the remedy."""
    settings = {"capacity_fail": frozenset({G5, G4DN})}
    with emulated_account(tmp_path, monkeypatch, stand_in=settings) as (_, standin):
        code = launch(cloud(tiny_splits, "--instance", f"{G5},{G4DN}", "--spot", "auto",
                            "--capacity-wait-minutes", "0.05"))  # fmt: skip
        jobs = described(standin)
    out, err = capsys.readouterr()
    assert code == 2
    order = [f"attempt {i}/4: {label}" for i, label in enumerate(
        [f"{G5} spot", f"{G5} on-demand", f"{G4DN} spot", f"{G4DN} on-demand"], 1)]  # fmt: skip
    assert all(line in out for line in order), out
    assert [out.index(line) for line in order] == sorted(out.index(line) for line in order)
    assert out.count("no spot capacity after") >= 2 and out.count(": stopping it") == 2
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]  # one line
    assert line.startswith("error: no candidate got capacity (")
    for label in (f"{G5} spot", f"{G5} on-demand", f"{G4DN} spot", f"{G4DN} on-demand"):
        assert label in line
    assert line.count("CapacityError: Unable to provision requested ML compute capacity") == 2
    assert "SPOT=auto" in line and "the same command again resumes" in line
    by_capacity = {
        (d["ResourceConfig"]["InstanceType"], d["EnableManagedSpotTraining"]): d
        for d in jobs.values()
    }
    assert set(by_capacity) == {(G5, True), (G5, False), (G4DN, True), (G4DN, False)}
    assert {d["TrainingJobStatus"] for (_, spot), d in by_capacity.items() if spot} == {"Stopped"}
    assert {d["TrainingJobStatus"] for (_, spot), d in by_capacity.items() if not spot} == {
        "Failed"
    }
    assert len({d["CheckpointConfig"]["S3Uri"] for d in jobs.values()}) == 1
    assert all(d.get("BillableTimeInSeconds", 0) == 0 for d in jobs.values())
    # Each job carries the attempts before it, for the report of the one that runs.
    last = by_capacity[(G4DN, False)]
    earlier = json.loads(last["Environment"][ATTEMPTS_ENV])
    assert [(row[0], row[1]) for row in earlier] == [(G5, 1), (G5, 0), (G4DN, 1)]


def test_a_quota_used_by_other_jobs_moves_to_the_next_candidate_at_create(
    tmp_path, monkeypatch, tiny_splits, capsys
):
    """CreateTrainingJob answers ResourceLimitExceeded while another job holds the type's only
    spot instance (preflight saw a quota of 1, as it would on AWS): the launcher moves on."""
    quotas = Quotas(values={quota_name(G5, True): 1.0})
    # Both types wait for capacity, so no container runs: the test is about the submission.
    settings = {"capacity_fail": frozenset({G5, G4DN}), "quotas": quotas}
    with emulated_account(tmp_path, monkeypatch, stand_in=settings) as (_, standin):
        holder = cloud(tiny_splits, "--instance", G5, "--detach", hp=("epochs_frozen=2",))
        assert launch(holder) == 0, capsys.readouterr().err  # another recipe: its own folder
        capsys.readouterr()
        code = launch(cloud(tiny_splits, "--instance", f"{G5},{G4DN}", "--detach"))
        jobs = described(standin)
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"quota: 1 {G5} for spot training" in out  # preflight could not know it was in use
    moved = next(line for line in out.splitlines() if "moving on:" in line)
    assert f"ResourceLimitExceeded: The account-level service limit '{quota_name(G5, True)}' is " \
           "1 Instances, with current utilization of 1 Instances" in moved  # fmt: skip
    assert f"attempt 2/2: {G4DN} spot" in out
    (created,) = [d for d in jobs.values() if d["ResourceConfig"]["InstanceType"] == G4DN]
    assert json.loads(created["Environment"][ATTEMPTS_ENV]) == [
        [G5, 1, "", 0, 0, 0, "ResourceLimitExceeded"]
    ]
    assert len(jobs) == 2  # the holder and the g4dn job: the refused one was never created


def started_at(status: str, minutes_ago: float, transitions=("Starting",), spot=True) -> dict:
    now = datetime.now(UTC)
    return {
        "TrainingJobName": "vgg-smoke-1",
        "TrainingJobStatus": status,
        "SecondaryStatus": transitions[-1],
        "EnableManagedSpotTraining": spot,
        "CreationTime": now - timedelta(minutes=minutes_ago),
        "SecondaryStatusTransitions": [{"Status": s, "StartTime": now} for s in transitions],
        "ResourceConfig": {"InstanceType": G5, "InstanceCount": 1},
    }


def test_what_counts_as_no_capacity():
    wait = CapacityWait(minutes=10)
    assert wait(started_at("InProgress", 9)) is None
    assert (
        wait(started_at("InProgress", 11)) == "no spot capacity after 11.0 min (CAPACITY_WAIT=10)"
    )
    assert wait(started_at("InProgress", 60, ("Starting", "Downloading"))) is None  # it started

    def shortage(description: dict, gave_up=None):
        return capacity_shortage(JobEnd(TRAINING_JOB, description, gave_up=gave_up))

    failed = started_at("Failed", 1, ("Starting", "Failed"), spot=False)
    failed["FailureReason"] = "InsufficientCapacityError: Instance type is temporarily unavailable"
    assert shortage(failed).startswith("InsufficientCapacityError")
    failed["FailureReason"] = "AlgorithmError: exit code 1"
    assert shortage(failed) is None  # the job's own failure: no other type would fix it
    waited = started_at("Stopped", 90, ("Starting", "MaxWaitTimeExceeded"))
    assert shortage(waited) == "MaxWaitTimeExceeded before any instance started"
    ran = started_at("Stopped", 90, ("Starting", "Training", "MaxWaitTimeExceeded"))
    assert shortage(ran) is None  # it trained: the next command resumes it
    assert shortage(started_at("Stopped", 5), gave_up="no spot capacity") == "no spot capacity"


def test_every_candidate_is_checked_before_anything_is_spent(aws, tiny_splits, capsys):
    """The recipe on each candidate (here: 4 GPUs of the second split a batch of 30 unevenly),
    repeated names, and auto among names, each one line before any upload or job."""
    code = launch(["cloud", "--experiment", "smoke", "--hp", *TINY, "batch_size=30",
                   "--instance", f"{G4DN},ml.g5.12xlarge", "--splits", str(tiny_splits),
                   "--stack", "test"])  # fmt: skip
    assert code == 2 and "(1x ml.g5.12xlarge)" in capsys.readouterr().err
    for instance, said in ((f"{G5},{G5}", f"names {G5} twice"), (f"auto,{G5}", "or auto alone")):
        code = launch(["cloud", "--experiment", "smoke", "--instance", instance, "--splits",
                       str(tiny_splits), "--stack", "test"])  # fmt: skip
        assert code == 2 and said in capsys.readouterr().err
    code = launch(["tune", "--experiment", "smoke", "--spot", "auto", "--splits",
                   str(tiny_splits), "--stack", "test"])  # fmt: skip
    assert code == 2 and "SPOT=auto is for make train-cloud" in capsys.readouterr().err
    listed = boto3.client("s3").list_objects_v2(Bucket=BUCKET)
    assert listed["KeyCount"] == 0


def test_instance_auto_leaves_out_the_types_the_recipe_cannot_run(aws, sent_jobs, tiny_splits,
                                                                   capsys):  # fmt: skip
    """A batch of 30 does not divide over 4 GPUs: INSTANCE=auto lists the 4-GPU types with quota
    but leaves them out, and the job runs on the cheapest type that can take it."""
    code = launch(["cloud", "--experiment", "smoke", "--hp", *TINY, "batch_size=30",
                   "--instance", "auto", "--splits", str(tiny_splits), "--stack", "test",
                   "--detach"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "skipped: ml.g4dn.12xlarge: " in out and "(1x ml.g4dn.12xlarge)" in out
    (request,) = sent_jobs["CreateTrainingJob"]
    assert request["ResourceConfig"]["InstanceType"] == G4DN


@pytest.fixture
def sent_jobs(aws):
    with requests_sent("CreateTrainingJob") as sent:
        yield sent


def test_a_candidate_without_quota_is_left_out_and_the_rest_are_tried(
    quotas, aws, tiny_splits, capsys
):
    """Of several candidates, one whose quota is too small is skipped with a line; the job is
    submitted on the next (one candidate alone is refused, as before)."""
    from moto.sagemaker.models import sagemaker_backends

    quotas.values[quota_name("ml.p2.xlarge", True)] = 0.0
    code = launch(["cloud", "--experiment", "smoke", "--hp", *TINY, "--instance",
                   f"ml.p2.xlarge,{G4DN}", "--splits", str(tiny_splits), "--stack", "test",
                   "--detach"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    jobs = sagemaker_backends["123456789012"]["us-east-1"].training_jobs.values()
    assert [job.resource_config["InstanceType"] for job in jobs] == [G4DN]
    assert "skipped: ml.p2.xlarge spot" in out


def test_a_tuning_job_sends_its_candidates_as_prioritized_instance_configs(
    aws, tiny_splits, capsys
):
    with requests_sent("CreateHyperParameterTuningJob") as sent:
        code = launch(["tune", "--experiment", "smoke", "--hp", *TINY, "--instance",
                       f"{G5},{G4DN}", "--max-jobs", "2", "--parallel", "1", "--splits",
                       str(tiny_splits), "--stack", "test", "--detach"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    (request,) = sent["CreateHyperParameterTuningJob"]
    definition = request["TrainingJobDefinition"]
    assert "ResourceConfig" not in definition  # AWS takes one or the other
    resources = definition["HyperParameterTuningResourceConfig"]
    assert resources["AllocationStrategy"] == "Prioritized"
    assert [c["InstanceType"] for c in resources["InstanceConfigs"]] == [G5, G4DN]
    assert all(c["InstanceCount"] == 1 for c in resources["InstanceConfigs"])
    assert f"instance types by priority: {G5}, {G4DN}" in capsys.readouterr().out


def test_instance_auto_tunes_on_the_six_cheapest_types_with_quota(aws, tiny_splits, capsys):
    """INSTANCE=auto lists every current GPU type with quota; SageMaker takes six configs."""
    with requests_sent("CreateHyperParameterTuningJob") as sent:
        code = launch(["tune", "--experiment", "smoke", "--hp", *TINY, "--instance", "auto",
                       "--max-jobs", "1", "--parallel", "1", "--splits", str(tiny_splits),
                       "--stack", "test", "--detach"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    (request,) = sent["CreateHyperParameterTuningJob"]
    configs = request["TrainingJobDefinition"]["HyperParameterTuningResourceConfig"]
    types = [c["InstanceType"] for c in configs["InstanceConfigs"]]
    assert len(types) == 6 and types[0] == G4DN  # the cheapest first
    assert "(SageMaker takes 6; " in capsys.readouterr().out
