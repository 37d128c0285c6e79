"""A SageMaker stand-in over moto: it runs each training and tuning job that reaches the emulator
the way SageMaker would, so the whole cloud path can be rehearsed offline (``make rehearse``) and
tested.

- ``jobs.py``: one training job, from its channels to its artifacts and final status, with spot
  reclaims, StoppingCondition and StopTrainingJob;
- ``tuning.py``: a tuning job, starting its training jobs and ranking them by their objective;
- ``containers.py``: a container, the image's environment and entrypoint, /opt/ml mapped;
- ``checkpoints.py``: SageMaker's checkpoint sync; ``network.py``: the hosts algo-1…N;
- ``wiring.py``: where it hooks into moto; ``iam.py``: IAM as AWS applies it; ``throttle.py``:
  AWS's request rates; ``quotas.py``: SageMaker's service quotas;
- ``account.py``: an emulated account with the project's stack; ``service.py``: one kept up for
  any number of commands (make standin-up).

Everything the stand-in does on AWS it does as the job's execution role: it assumes the role when
the job is created (as SageMaker does, refusing a role whose trust policy does not admit it), uses
those credentials for channels, checkpoints, artifacts and logs, and hands them, not the
launcher's, to the container. With ``iam.enforced()`` moto then checks each of those requests
against the role's policies.
"""

import threading
from datetime import UTC, datetime
from pathlib import Path

from training.standin import quotas, throttle, wiring
from training.standin.containers import check_can_run
from training.standin.hooks import Hooks
from training.standin.iam import CannotAssumeRole, role_credentials
from training.standin.jobs import Emulator, Interruption, JobRun
from training.standin.quotas import Quotas
from training.standin.throttle import Throttle
from training.standin.tuning import TuningRun

__all__ = ["Interruption", "StandIn", "check_can_run"]
STOP_TIMEOUT_SECONDS = 600


class StandIn:
    """Runs the jobs moto records in this process while started (see the module docstring)."""

    def __init__(
        self,
        endpoint_url: str,
        runs_dir: Path,
        region: str = "us-east-1",
        interruption: Interruption | None = None,
        throttle: Throttle | None = None,
        quotas: Quotas | None = None,
        capacity_fail: frozenset[str] = frozenset(),
    ) -> None:
        self.emulator = Emulator(endpoint_url, region, Path(runs_dir), interruption, capacity_fail)
        self.region = region
        self.throttle = throttle or Throttle()
        self.quotas = quotas or Quotas()
        self.runs: dict[str, JobRun] = {}  # every training job, by name
        self.tunings: dict[str, TuningRun] = {}
        self._hooks: list[Hooks] = []

    def start(self) -> "StandIn":
        self._hooks = [
            quotas.install(self.quotas),
            throttle.install(self.throttle),
            wiring.install(self),
        ]
        return self

    def stop(self) -> None:
        """Stops what still runs (a detached or abandoned job), waits for it, and unhooks."""
        self.halt()
        for hooks in reversed(self._hooks):
            hooks.restore()
        self._hooks = []

    def halt(self) -> None:
        """Stops every job and tuning job that still runs, as StopTrainingJob would, and waits
        for each to end."""
        for tuning in list(self.tunings.values()):
            if tuning.thread.is_alive() and not tuning.stopping:
                tuning.request_stop()
        for run in list(self.runs.values()):
            if not run.finished.is_set() and run.status == "InProgress":
                run.request_stop()
        for run in list(self.runs.values()):
            run.finished.wait(timeout=STOP_TIMEOUT_SECONDS)
        for tuning in list(self.tunings.values()):
            tuning.thread.join(timeout=STOP_TIMEOUT_SECONDS)

    # --- called from moto's request handling ------------------------------------------------------
    def adopt(self, backend, job, environment: dict | None, source_arn: str | None = None,
              on_end=None) -> JobRun:  # fmt: skip
        """Takes over a training job moto has just recorded: assumes its role as SageMaker does
        (a refusal deletes the record and answers SageMaker's ValidationException), then runs it
        in a thread of its own."""
        from moto.sagemaker.exceptions import ValidationError

        try:
            credentials = role_credentials(job.role_arn, source_arn or job.arn, self.region)
        except CannotAssumeRole as refusal:
            del backend.training_jobs[job.training_job_name]
            raise ValidationError(str(refusal)) from refusal
        job.environment = dict(environment or {})
        job.training_job_status, job.secondary_status = "InProgress", "Starting"
        job.secondary_status_transitions = []
        job.training_start_time = job.training_end_time = None
        job.final_metric_data_list = []
        job.training_time_in_seconds = job.billable_time_in_seconds = None
        job.creation_time = job.last_modified_time = datetime.now(UTC)
        run = JobRun(job, credentials, self.emulator, on_end=on_end)
        run.set_status("InProgress", "Starting")
        self.runs[run.name] = run
        threading.Thread(target=run.run, daemon=True, name=f"job-{run.name}").start()
        return run

    def check_quota(self, instance_type: str, count: int, spot: bool) -> None:
        """CreateTrainingJob's ResourceLimitExceeded: the account's jobs that hold instances
        (not yet ended) leave too little of the type's quota for ``count`` more."""
        from training.common.instances import quota_name
        from training.standin.quotas import service_error

        name = quota_name(instance_type, spot)
        quota = self.quotas.value(name) or 0.0
        used = sum(run.instance_count for run in self.runs.values()
                   if not run.finished.is_set() and run.instance_type == instance_type
                   and run.spot == spot)  # fmt: skip
        if used + count > quota:
            raise service_error(
                "ResourceLimitExceeded",
                f"The account-level service limit '{name}' is {quota:g} Instances, with current "
                f"utilization of {used:g} Instances and a request delta of {count} Instances. "
                "Please use AWS Service Quotas to request an increase for this quota.",
            )

    def create_training_job(self, backend, source_arn: str, on_end, environment=None, **request):
        """A training job as the tuning service creates one (no API call: SageMaker itself)."""
        from moto.sagemaker.models import SageMakerModelBackend

        metric_definitions = list(request["algorithm_specification"]["MetricDefinitions"])
        job = SageMakerModelBackend.create_training_job(backend, **request)
        job.algorithm_specification["MetricDefinitions"] = metric_definitions
        self.adopt(backend, job, environment, source_arn=source_arn, on_end=on_end)
        return job

    def tune(self, backend, name: str) -> TuningRun:
        """Takes over a tuning job moto has just recorded (its role is checked as a training
        job's is, with the tuning job as the source)."""
        from moto.sagemaker.exceptions import ValidationError

        tuning = backend.hyper_parameter_tuning_jobs[name]
        role = tuning.training_job_definition["RoleArn"]
        try:
            credentials = role_credentials(role, tuning.arn, self.region)
        except CannotAssumeRole as refusal:
            del backend.hyper_parameter_tuning_jobs[name]
            raise ValidationError(str(refusal)) from refusal
        run = TuningRun(self, tuning, backend, credentials)
        self.tunings[name] = run
        return run.start()

    @property
    def finished(self) -> dict[str, JobRun]:
        return {name: run for name, run in self.runs.items() if run.finished.is_set()}
