"""Where the stand-in hooks into moto (pinned in requirements-dev.txt; each hook point is checked
by tests/launch/test_standin_wiring.py, so that a moto upgrade that moves one fails a test
instead of the rehearsal silently running nothing).

moto records a training or tuning job and marks it finished at once. The stand-in wraps the two
create calls of moto's SageMaker responses, so that each job runs for real (jobs.py, tuning.py),
and answers three calls moto lacks: StopTrainingJob, StopHyperParameterTuningJob and
ListTrainingJobsForHyperParameterTuningJob. moto still parses, authorises (with IAM enforcement
on) and serialises every request; only what SageMaker would do is the stand-in's.
"""

import copy

from training.standin.hooks import Hooks

# (class path, attribute): what is replaced or added. A test checks each replaced one exists.
REPLACED = ("create_training_job", "create_hyper_parameter_tuning_job")
ADDED = (
    "stop_training_job",
    "stop_hyper_parameter_tuning_job",
    "list_training_jobs_for_hyper_parameter_tuning_job",
)


class SageMakerSide:
    """What SageMaker does for the calls the stand-in takes over, given moto's response object
    (the parsed request, the account's backend) and moto's own create calls."""

    def __init__(self, standin, create_training, create_tuning) -> None:
        self.standin = standin
        self.moto_create_training, self.moto_create_tuning = create_training, create_tuning

    def create_training_job(self, response):
        resources = response._get_param("ResourceConfig") or {}
        self.standin.check_quota(resources.get("InstanceType", ""),
                                 int(resources.get("InstanceCount", 1)),
                                 bool(response._get_param("EnableManagedSpotTraining")))  # fmt: skip
        request = copy.deepcopy(response._get_param("AlgorithmSpecification") or {})
        result = self.moto_create_training(response)  # moto replaces MetricDefinitions
        job = response.sagemaker_backend.training_jobs[response._get_param("TrainingJobName")]
        job.algorithm_specification["MetricDefinitions"] = request.get("MetricDefinitions") or []
        self.standin.adopt(response.sagemaker_backend, job, response._get_param("Environment"))
        return result

    def create_hyper_parameter_tuning_job(self, response):
        result = self.moto_create_tuning(response)
        name = response._get_param("HyperParameterTuningJobName")
        self.standin.tune(response.sagemaker_backend, name)
        return result

    def stop_training_job(self, response):
        from moto.core.responses import EmptyResult
        from moto.sagemaker.exceptions import ValidationError

        name = response._get_param("TrainingJobName")
        run = self.standin.runs.get(name)
        if run is None:
            raise ValidationError(f"Requested resource not found: training job {name}")
        if run.status != "InProgress":
            raise ValidationError(
                f"The request was rejected because the training job is in status {run.status}."
            )
        run.request_stop()
        return EmptyResult()

    def tuning_run(self, response):
        from moto.sagemaker.exceptions import ResourceNotFound

        name = response._get_param("HyperParameterTuningJobName")
        run = self.standin.tunings.get(name)
        if run is None:
            raise ResourceNotFound(f"Amazon SageMaker can't find a tuning job named {name}")
        return run

    def stop_hyper_parameter_tuning_job(self, response):
        from moto.core.responses import EmptyResult
        from moto.sagemaker.exceptions import ValidationError

        run = self.tuning_run(response)
        status = run.tuning.hyper_parameter_tuning_job_status
        if status != "InProgress":
            raise ValidationError(
                f"The request was rejected because the tuning job is in status {status}."
            )
        run.request_stop()
        return EmptyResult()

    def list_training_jobs_for_hyper_parameter_tuning_job(self, response):
        from moto.core.responses import ActionResult

        return ActionResult({"TrainingJobSummaries": self.tuning_run(response).summaries()})


def install(standin) -> Hooks:
    """Patches moto's SageMakerResponse for ``standin``; returns the hooks to restore."""
    from moto.sagemaker.responses import SageMakerResponse

    side = SageMakerSide(standin, SageMakerResponse.create_training_job,
                         SageMakerResponse.create_hyper_parameter_tuning_job)  # fmt: skip
    hooks = Hooks()
    for name in REPLACED + ADDED:
        hooks.replace(SageMakerResponse, name, _method(getattr(side, name)))
    return hooks


def _method(call):
    """A function on moto's class (not a bound method), so that moto calls it with its response
    object."""

    def method(response):
        return call(response)

    return method
