"""Submission, one verb for every kind of job: a job spec becomes a SageMaker training job
through SDK v3's ``ModelTrainer``, or a tuning job through its ``HyperparameterTuner`` over that
very trainer (same image, channels, spot, checkpoints, tags). What differs per kind is in
``CREATE``.

The tuning job's objective is the fine-tuned phase's best validation accuracy so far, which every
epoch line carries (``fine_tuned:best_val_accuracy``; never the test set): SageMaker takes the
latest value the regex matches, so a job is ranked by the weights it keeps, not by its last epoch.
Ranges come from the experiment file's ``tuning:`` section, or experiments.DEFAULT_RANGES.
"""

import contextlib
import os

import boto3
from vgg_transfer import contract
from vgg_transfer.contract import OptMl, metric_definitions

from training.common import sagemaker
from training.common.aws_errors import AWS_OR_NETWORK_ERRORS, aws_error, error_code, one_line
from training.common.errors import UserError
from training.common.repo import CODE_IGNORE, ENTRY_SCRIPT, JOB_DIR
from training.common.sagemaker import TRAINING_JOB, TUNING_JOB, JobKind
from training.launch.experiments import to_hyperparameter, tuning_ranges
from training.launch.request import RunRequest
from training.launch.spec import JobSpec
from training.launch.staging import upload_code

SDK_ROLE_CHECK = "SAGEMAKER_VALIDATE_ROLE"
MAX_INSTANCE_CONFIGS = 6  # CreateHyperParameterTuningJob takes at most 6 (botocore's model)
VOLUME_GB = 50


@contextlib.contextmanager
def sdk_role_check_off():
    """Turns the SDK's own role check off while our trainer is built, and only then.

    ``ModelTrainer`` simulates ``ecr:GetAuthorizationToken``, ``cloudwatch:PutMetricData`` and nine
    ``ec2:*`` actions on the role (sagemaker.train.defaults → iam_role_resolver). The stack's
    least-privilege role holds no ec2 rights (the job runs in no VPC) and scopes the others with
    conditions the simulation cannot read, so any caller allowed ``iam:SimulatePrincipalPolicy``
    (whoever ran `make infra-up`) would be refused. Preflight has already checked that the role
    exists; the SDK offers no argument, only this variable, so it is set and restored here."""
    previous = os.environ.get(SDK_ROLE_CHECK)
    os.environ[SDK_ROLE_CHECK] = "false"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(SDK_ROLE_CHECK, None)
        else:
            os.environ[SDK_ROLE_CHECK] = previous


class NoCapacity(UserError):
    """SageMaker refused the job for want of capacity (the account's quota is in use by other
    jobs): the next candidate may have some."""


@contextlib.contextmanager
def sdk_errors(what: str):
    """Whatever building or submitting ``what`` raises becomes one line: AWS and network errors
    say what to do; the SDK validates with exception types of its own."""
    try:
        yield
    except UserError:
        raise
    except AWS_OR_NETWORK_ERRORS as error:
        if error_code(error) == "ResourceLimitExceeded":
            raise NoCapacity(f"ResourceLimitExceeded: {one_line(error, 300)}") from error
        raise aws_error(error, f"creating {what}") from error
    except Exception as error:
        raise UserError(
            f"the SageMaker SDK refused {what}: {type(error).__name__}: {one_line(error, 300)}"
        ) from error


def project_trainer_class():
    """ModelTrainer that stages the code in the project bucket's code/ prefix, always.

    The SDK picks the staging place by simulating the role's s3:PutObject on the whole bucket:
    a caller who may call iam:SimulatePrincipalPolicy gets the output prefix, one who may not
    gets the default bucket, so the code would land in different places depending on who
    launches. The role reads code/, and the Session's default bucket and prefix say where."""
    from sagemaker.train import ModelTrainer

    class ProjectModelTrainer(ModelTrainer):
        def _resolve_staging_bucket(self) -> tuple[str, str | None]:
            return self.sagemaker_session.default_bucket(), None

    return ProjectModelTrainer


def trainer_settings(spec: JobSpec, source_dir: str | None, decodes: int) -> dict:
    """ModelTrainer's keyword arguments for the spec (all but the session and the role)."""
    from sagemaker.core.shapes import CheckpointConfig, OutputDataConfig
    from sagemaker.train.configs import Compute, Networking, SourceCode, StoppingCondition, Tag

    experiment = spec.experiment
    return {
        "base_job_name": spec.name,  # the SDK appends a timestamp
        "training_image": spec.image,
        "source_code": SourceCode(source_dir=source_dir or str(JOB_DIR),
                                  entry_script=ENTRY_SCRIPT, ignore_patterns=CODE_IGNORE),
        "compute": Compute(instance_type=spec.instance_type, instance_count=spec.instance_count,
                           volume_size_in_gb=VOLUME_GB, enable_managed_spot_training=spec.spot),
        "stopping_condition": StoppingCondition(
            max_runtime_in_seconds=experiment.max_runtime_seconds,
            max_wait_time_in_seconds=experiment.max_wait_seconds if spec.spot else None,
        ),
        "output_data_config": OutputDataConfig(s3_output_path=spec.output),
        "checkpoint_config": CheckpointConfig(s3_uri=spec.checkpoint,
                                              local_path=OptMl().checkpoints),
        "networking": Networking(enable_network_isolation=True) if spec.network_isolation
        else None,
        "hyperparameters": {key: to_hyperparameter(value, decodes)
                            for key, value in spec.hyperparameters.items()},
        "environment": spec.environment,
        "tags": [Tag(key=key, value=value) for key, value in spec.tags.items()],
    }  # fmt: skip


def build_trainer(
    spec: JobSpec,
    session: boto3.Session,
    source_dir: str | None = None,
    hyperparameter_decodes: int = 2,
):
    """The ModelTrainer for the spec, and its input channels.

    ``source_dir``: the job folder (default), or an S3 URI of its tarball (tuning);
    ``hyperparameter_decodes``: how often the container decodes each hyperparameter on its way
    to train.py (see experiments.to_hyperparameter)."""
    from sagemaker.core.helper.session_helper import Session
    from sagemaker.train.configs import InputData, MetricDefinition

    channels = [
        InputData(channel_name=channel, data_source=location)
        for channel, location in spec.channels.items()
    ]
    # The project bucket is the SDK's default bucket, so no sagemaker-<region>-<account> bucket
    # appears; the code it uploads lands under the code/ prefix the role may read.
    sm_session = Session(
        boto_session=session,
        default_bucket=spec.code_bucket,
        default_bucket_prefix=spec.code_prefix,
    )
    with sdk_role_check_off():
        trainer = project_trainer_class()(
            sagemaker_session=sm_session,
            role=spec.role_arn,
            **trainer_settings(spec, source_dir, hyperparameter_decodes),
        )
    return trainer.with_metric_definitions(
        [MetricDefinition(name=d["Name"], regex=d["Regex"]) for d in metric_definitions()]
    ), channels


def create_training_job(spec: JobSpec, session: boto3.Session, request: RunRequest) -> str:
    """CreateTrainingJob through ModelTrainer.train; returns the job's name."""
    with sdk_errors("the training job"):
        trainer, channels = build_trainer(spec, session)
        trainer.train(input_data_config=channels, wait=False, logs=False)
    # output_data is s3://<bucket>/<outputs prefix>/<job name>/output/output.tar.gz
    name = trainer.output_data.split("/")[-3]
    print(f"submitted {name}; checkpoints: {spec.checkpoint}")
    return name


def sdk_ranges(ranges: dict) -> dict:
    from sagemaker.core.parameter import (
        CategoricalParameter,
        ContinuousParameter,
        IntegerParameter,
    )

    converted = {}
    for name, spec in ranges.items():
        if isinstance(spec, list):
            converted[name] = CategoricalParameter(spec)
            continue
        kind = IntegerParameter if isinstance(spec["min"], int) else ContinuousParameter
        converted[name] = kind(spec["min"], spec["max"], scaling_type=spec.get("scale", "Auto"))
    return converted


def priority_note(types: tuple[str, ...]) -> str:
    """The tuning job's instance types by priority, as sent (none to say for one type)."""
    if len(types) < 2:
        return ""
    kept, left = types[:MAX_INSTANCE_CONFIGS], types[MAX_INSTANCE_CONFIGS:]
    note = f"; instance types by priority: {', '.join(kept)}"
    if left:
        note += f" (SageMaker takes {MAX_INSTANCE_CONFIGS}; {', '.join(left)} left out)"
    return note


def tuner_class(spec: JobSpec):
    """HyperparameterTuner, sending the spec's candidate types as ``InstanceConfigs`` with
    ``AllocationStrategy: Prioritized`` when there are several: SageMaker then starts each
    training job on the first type with capacity. (SDK v3 keeps ``override_resource_config``'s
    configs but never sends them, so the definition is completed here.)"""
    from sagemaker.core.shapes import (
        HyperParameterTuningInstanceConfig,
        HyperParameterTuningResourceConfig,
    )
    from sagemaker.train.tuner import HyperparameterTuner

    if len(spec.instance_types) < 2:
        return HyperparameterTuner

    class PrioritizedTuner(HyperparameterTuner):
        def _build_training_job_definition(self, inputs):
            definition = super()._build_training_job_definition(inputs)
            configs = [HyperParameterTuningInstanceConfig(instance_type=name,
                                                          instance_count=spec.instance_count,
                                                          volume_size_in_gb=VOLUME_GB)
                       for name in spec.instance_types[:MAX_INSTANCE_CONFIGS]]  # fmt: skip
            definition.hyper_parameter_tuning_resource_config = HyperParameterTuningResourceConfig(
                allocation_strategy="Prioritized", instance_configs=configs
            )
            definition.resource_config = None  # AWS takes one or the other
            return definition

    return PrioritizedTuner


def create_tuning_job(spec: JobSpec, session: boto3.Session, request: RunRequest) -> str:
    """CreateHyperParameterTuningJob through HyperparameterTuner.tune over the spec's trainer;
    returns its name. The tuning API takes no container entrypoint, so on AWS each training job
    runs through the image's own toolkits, which fetch the code from its tarball (staging.py)."""
    ranges = tuning_ranges(spec.experiment)
    name = sagemaker.job_name(spec.experiment.name, TUNING_JOB)
    code = upload_code(session, spec, name)
    with sdk_errors("the tuning job"):
        trainer, channels = build_trainer(spec, session, source_dir=code, hyperparameter_decodes=1)
        tuner = tuner_class(spec)(
            model_trainer=trainer,
            objective_metric_name=contract.TUNING_OBJECTIVE,
            hyperparameter_ranges=sdk_ranges(ranges),
            metric_definitions=contract.metric_definitions(),
            strategy="Bayesian",
            objective_type="Maximize",
            max_jobs=request.max_jobs,
            max_parallel_jobs=request.parallel,
            early_stopping_type="Auto",
            tags=[{"Key": k, "Value": v} for k, v in spec.tags.items()],
        )
        with sdk_role_check_off():
            tuner.tune(inputs=channels, job_name=name, wait=False)
    print(
        f"submitted tuning job {name}: up to {request.max_jobs} training jobs, "
        f"{request.parallel} at once, objective {contract.TUNING_OBJECTIVE}, "
        f"tuning {', '.join(ranges)}" + priority_note(spec.instance_types)
    )
    return name


CREATE = {TRAINING_JOB: create_training_job, TUNING_JOB: create_tuning_job}


def submit(kind: JobKind, spec: JobSpec, session: boto3.Session, request: RunRequest) -> str:
    """Creates the job of ``kind``; returns its name."""
    return CREATE[kind](spec, session, request)
