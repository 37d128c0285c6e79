"""SageMaker's kinds of job, one row each, and this project's job names.

Each kind answers the same verbs (describe, stop) through one table, the way SkyPilot's
provisioner answers one set of verbs for every cloud: the follower and the Ctrl-C prompt, the
stand-in's IAM (which ARN a request is checked against), and the launcher policy in infra/role.py
(which actions on which ARNs) all read it. A new kind of cloud step is one more row here, its
launcher module, and the stand-in's support for it.

Job names: ``vgg-<experiment>-<timestamp>``, built and parsed here only.
"""

import re
import time
from dataclasses import dataclass

from training.common.aws_errors import AWS_ERRORS, aws_error, error_code, is_transient, one_line
from training.common.errors import UserError

LOG_GROUP = "/aws/sagemaker/TrainingJobs"  # where SageMaker writes every training job's log
METRIC_NAMESPACE = "/aws/sagemaker/TrainingJobs"  # and its metrics (CloudWatch): same words
TERMINAL = ("Completed", "Failed", "Stopped")


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


@dataclass(frozen=True)
class JobKind:
    noun: str  # as messages name it
    api: str  # the API's name for one (TrainingJob): its calls and fields are named after it
    arn_type: str  # the resource type in its ARN: arn:<partition>:sagemaker:<region>:<account>:<type>/<name>
    console_page: str  # the console's page for one, after #/
    results_template: str  # the make command that follows one and fetches its results
    extra_actions: tuple = ()  # what else the launcher calls on one (see launcher_actions)

    @property
    def launcher_actions(self) -> tuple:
        """What the launcher calls on one, as IAM names the actions: the launcher policy grants
        these on this kind's ARNs, and tests/infra checks every one has a caller. Creating one
        (launch/submit.py) needs AddTags too, for the request's tags."""
        verbs = ("Create", "Describe", "Stop")
        return (*(f"sagemaker:{verb}{self.api}" for verb in verbs), "sagemaker:AddTags",
                *self.extra_actions)  # fmt: skip

    @property
    def name_key(self) -> str:  # the request field that names one
        return f"{self.api}Name"

    @property
    def status_key(self) -> str:  # the description field that holds its status
        return f"{self.api}Status"

    @property
    def describe_call(self) -> str:  # boto3's SageMaker client methods
        return f"describe_{_snake(self.api)}"

    @property
    def stop_call(self) -> str:
        return f"stop_{_snake(self.api)}"

    @property
    def list_command(self) -> str:  # the AWS CLI that lists them, for a wrong name
        return f"aws sagemaker list-{_snake(self.api).replace('_', '-')}s"

    def arn(self, partition: str, region: str, account: str, name: str = "*") -> str:
        # SageMaker's ARNs carry the job name in lower case.
        return f"arn:{partition}:sagemaker:{region}:{account}:{self.arn_type}/{name.lower()}"

    def results_command(self, name: str) -> str:
        return self.results_template.format(name=name)

    def stop_command(self, name: str) -> str:
        return f"aws sagemaker {self.stop_call.replace('_', '-')} --{self.arn_type}-name {name}"

    def console_url(self, region: str, name: str) -> str:
        return (
            f"https://{region}.console.aws.amazon.com/sagemaker/home?region={region}"
            f"#/{self.console_page}/{name}"
        )

    def describe(self, sm, name: str, ride_out: bool = False) -> dict:
        """The job's description; a name SageMaker does not know is one line saying so.
        ``ride_out``: a transient failure (no network, throttling, 5xx) is raised as it is, for
        a follower that waits for AWS to come back (training/launch/outage.py)."""
        try:
            return getattr(sm, self.describe_call)(**{self.name_key: name})
        except AWS_ERRORS as error:
            if ride_out and is_transient(error):
                raise
            message = one_line(error).lower()
            if error_code(error) in ("ValidationException", "ResourceNotFound") and (
                "not found" in message or "could not find" in message or "can't find" in message
            ):
                raise UserError(
                    f"no {self.noun} named {name} in {sm.meta.region_name}: check the name "
                    f"(`{self.list_command}`) and the stack's region"
                ) from error
            raise aws_error(error, f"describing {self.noun} {name}") from error

    def stop(self, sm, name: str) -> None:
        getattr(sm, self.stop_call)(**{self.name_key: name})


TRAINING_JOB = JobKind("training job", "TrainingJob", "training-job", "jobs",
                       "make results JOB={name}")  # fmt: skip
TUNING_JOB = JobKind(
    "tuning job",
    "HyperParameterTuningJob",
    "hyper-parameter-tuning-job",
    "hyper-tuning-jobs",
    "make tune-results TUNING_JOB={name}",
    extra_actions=("sagemaker:ListTrainingJobsForHyperParameterTuningJob",),  # its training jobs
)
KINDS = (TRAINING_JOB, TUNING_JOB)


# --- job names ---------------------------------------------------------------------------------------
PREFIX = "vgg"
NAME_LIMITS = {TRAINING_JOB: 63, TUNING_JOB: 32}  # SageMaker's longest names
# The time in a job's name (local time): a training job's in full, a tuning job's short.
STAMP_FORMATS = {TRAINING_JOB: "%Y%m%d-%H%M%S", TUNING_JOB: "%m%d-%H%M%S"}


def base_name(experiment: str) -> str:
    """What ModelTrainer is given; the SDK appends a timestamp."""
    return f"{PREFIX}-{experiment}"


def job_name(experiment: str, kind: JobKind = TRAINING_JOB) -> str:
    """``vgg-<experiment>-<timestamp>`` within SageMaker's length for the kind (a tuning job's is
    short: its training jobs add ``-NNN-<8 hex>``)."""
    stamp = time.strftime(STAMP_FORMATS[kind])
    return base_name(experiment)[: NAME_LIMITS[kind] - len(stamp) - 1] + f"-{stamp}"


_NAME = re.compile(rf"{PREFIX}-(.+?)-\d[\d-]*(-\d{{3}}-[0-9a-f]{{8}})?")


_TRAINING_STAMP = re.compile(r"-(\d{8}-\d{6})$")


def named_at(job: str) -> float | None:
    """When a training job of ours was named (the launch), in epoch seconds; None for others."""
    match = _TRAINING_STAMP.search(job)
    if not match:
        return None
    return time.mktime(time.strptime(match.group(1), STAMP_FORMATS[TRAINING_JOB]))


def experiment_of(job: str) -> str:
    """The experiment a job name was built from: a run of ours, a tuning job, or one of its
    training jobs (``<tuning job>-NNN-<8 hex>``); "unknown" for other names."""
    match = _NAME.fullmatch(job)
    return match.group(1) if match else "unknown"
