"""Names and helpers the launcher's tests and their fixtures share."""

from types import SimpleNamespace

import boto3
from accounts import BUCKET, REGION, ROLE_NAME  # noqa: F401  (the launcher tests' account)
from tiny import TINY  # noqa: F401  (the tiny experiment every launcher test runs)

from training.common.instances import INSTANCES, lookup, quota_name
from training.launch.capacity import QuotaReading
from training.launch.experiments import load


def quotas_for(value: float = 2.0, **overrides: float) -> QuotaReading:
    """Applied quotas of ``value`` for every known type, spot and on-demand; overrides by type."""
    applied = {}
    for name in INSTANCES:
        for spot in (True, False):
            applied[quota_name(name, spot)] = overrides.get(name.replace(".", "_"), value)
    return QuotaReading(applied=applied)


def request(experiment: str, *hp: str, command: str = "cloud"):
    """The RunRequest of `make train-cloud EXPERIMENT=<experiment> HP=…` (no data needed)."""
    from training.launch.request import RunRequest, run_settings

    loaded = load(experiment, list(hp))
    return RunRequest(
        command,
        loaded,
        run_settings(loaded, None, 1),
        (lookup(loaded.instance_type),),
        1,
        spot_modes=(loaded.spot,),
    )


def running(region: str, name: str) -> None:
    """moto marks a training job Completed at once; this one is still running, as SageMaker
    would have it a minute after CreateTrainingJob."""
    from moto.sagemaker.models import sagemaker_backends

    job = sagemaker_backends["123456789012"][region].training_jobs[name]
    job.training_job_status, job.secondary_status = "InProgress", "Training"


def answer(status: int, parsed: dict):
    """A before-call hook's return value: botocore skips the HTTP request and uses this."""
    return SimpleNamespace(status_code=status, headers={}, text="", content=b""), parsed


def simulate_as(caller: str):
    """iam:SimulatePrincipalPolicy as a caller sees it. "admin": the call is allowed and reports
    what our least-privilege role lacks (every ec2 action the SDK asks about); "launcher": the
    launcher policy does not allow the call at all."""
    calls = []

    def hook(params, **kwargs):
        body = params.get("body") or {}  # the query-protocol form: ActionNames.member.N
        actions = [value for key, value in sorted(body.items()) if key.startswith("ActionNames.")]
        calls.append(actions)
        if caller == "launcher":
            return answer(403, {"Error": {"Code": "AccessDenied", "Message": "not allowed"}})
        results = [
            {
                "EvalActionName": action,
                "EvalResourceName": "*",
                "EvalDecision": "implicitDeny" if action.startswith("ec2:") else "allowed",
            }
            for action in actions
        ]
        return answer(200, {"EvaluationResults": results, "IsTruncated": False})

    return hook, calls


def create_job(name: str, role_arn: str, instance_type: str = "ml.p2.xlarge") -> None:
    """A training job in moto (which marks it Completed at once; tests change that as needed)."""
    boto3.client("sagemaker", region_name=REGION).create_training_job(
        TrainingJobName=name,
        AlgorithmSpecification={"TrainingImage": "img", "TrainingInputMode": "File"},
        RoleArn=role_arn,
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/outputs/"},
        ResourceConfig={"InstanceType": instance_type, "InstanceCount": 1, "VolumeSizeInGB": 50},
        StoppingCondition={"MaxRuntimeInSeconds": 3600},
    )
