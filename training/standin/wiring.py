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


def install(standin) -> Hooks:
    """Patches moto's SageMakerResponse for ``standin``; returns the hooks to restore."""
    from moto.core.responses import ActionResult, EmptyResult
    from moto.sagemaker.exceptions import ResourceNotFound, ValidationError
    from moto.sagemaker.responses import SageMakerResponse

    create_training_job = SageMakerResponse.create_training_job
    create_tuning_job = SageMakerResponse.create_hyper_parameter_tuning_job

    def create_training(response):
        request = copy.deepcopy(response._get_param("AlgorithmSpecification") or {})
        result = create_training_job(response)  # moto replaces MetricDefinitions with its own
        job = response.sagemaker_backend.training_jobs[response._get_param("TrainingJobName")]
        job.algorithm_specification["MetricDefinitions"] = request.get("MetricDefinitions") or []
        standin.adopt(response.sagemaker_backend, job, response._get_param("Environment"))
        return result

    def create_tuning(response):
        result = create_tuning_job(response)
        name = response._get_param("HyperParameterTuningJobName")
        standin.tune(response.sagemaker_backend, name)
        return result

    def stop_training(response):
        name = response._get_param("TrainingJobName")
        run = standin.runs.get(name)
        if run is None:
            raise ValidationError(f"Requested resource not found: training job {name}")
        if run.status != "InProgress":
            raise ValidationError(
                f"The request was rejected because the training job is in status {run.status}."
            )
        run.request_stop()
        return EmptyResult()

    def tuning_run(response):
        name = response._get_param("HyperParameterTuningJobName")
        run = standin.tunings.get(name)
        if run is None:
            raise ResourceNotFound(f"Amazon SageMaker can't find a tuning job named {name}")
        return run

    def stop_tuning(response):
        run = tuning_run(response)
        if run.tuning.hyper_parameter_tuning_job_status != "InProgress":
            raise ValidationError(
                "The request was rejected because the tuning job is in status "
                f"{run.tuning.hyper_parameter_tuning_job_status}."
            )
        run.request_stop()
        return EmptyResult()

    def list_tuning_training_jobs(response):
        return ActionResult({"TrainingJobSummaries": tuning_run(response).summaries()})

    patches = {
        "create_training_job": create_training,
        "create_hyper_parameter_tuning_job": create_tuning,
        "stop_training_job": stop_training,
        "stop_hyper_parameter_tuning_job": stop_tuning,
        "list_training_jobs_for_hyper_parameter_tuning_job": list_tuning_training_jobs,
    }
    hooks = Hooks()
    for name, function in patches.items():
        hooks.replace(SageMakerResponse, name, function)
    return hooks
