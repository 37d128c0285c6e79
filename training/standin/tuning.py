"""A hyperparameter tuning job as SageMaker's automatic model tuning runs it, over the stand-in's
training jobs.

For CreateHyperParameterTuningJob the stand-in starts up to ``MaxNumberOfTrainingJobs`` training
jobs, at most ``MaxParallelTrainingJobs`` at once, each named ``<tuning job>-NNN-<8 hex>`` as
tuning names them, with the definition's static hyperparameters, one value drawn inside each range
(by its scaling) and ``_tuning_objective_metric``, which the tuning service adds to every job. Each
runs exactly as a training job does (jobs.py), through the image's own entrypoint, since the
tuning API takes no ContainerEntrypoint. Each job's objective is the latest value its objective
metric's regex matched in the log, as AWS takes it
(``FinalHyperParameterTuningJobObjectiveMetric``). DescribeHyperParameterTuningJob (status,
counters, ``BestTrainingJob``), ListTrainingJobsForHyperParameterTuningJob and
StopHyperParameterTuningJob answer from here.

Unlike SageMaker, the stand-in draws values at random whatever the strategy (Bayesian search
needs a model of earlier results to mean anything, and a rehearsal runs a handful of jobs), and
it stops no training job early. It says both when a tuning job starts.
"""

import math
import random
import secrets
import threading
import time
from datetime import UTC, datetime

STATUS_COUNTERS = ("Completed", "InProgress", "RetryableError", "NonRetryableError", "Stopped")


def draw(ranges: dict, rng: random.Random) -> dict[str, str]:
    """One value inside each range of a ParameterRanges structure, as the string CreateTrainingJob
    carries: uniform on a linear scale, log-uniform on a logarithmic one."""
    values = {}
    for spec in ranges.get("ContinuousParameterRanges", []):
        low, high = float(spec["MinValue"]), float(spec["MaxValue"])
        values[spec["Name"]] = repr(_scaled(low, high, spec.get("ScalingType", "Auto"), rng))
    for spec in ranges.get("IntegerParameterRanges", []):
        low, high = int(spec["MinValue"]), int(spec["MaxValue"])
        value = round(_scaled(low, high, spec.get("ScalingType", "Auto"), rng))
        values[spec["Name"]] = str(min(max(value, low), high))
    for spec in ranges.get("CategoricalParameterRanges", []):
        values[spec["Name"]] = rng.choice(spec["Values"])
    return values


def _scaled(low: float, high: float, scaling: str, rng: random.Random) -> float:
    if scaling == "Logarithmic" and low > 0:
        return math.exp(rng.uniform(math.log(low), math.log(high)))
    if scaling == "ReverseLogarithmic" and high < 1:
        return 1 - math.exp(rng.uniform(math.log(1 - high), math.log(1 - low)))
    return rng.uniform(low, high)  # Linear, and Auto (SageMaker picks; the stand-in goes linear)


class TuningRun:
    """One tuning job: schedules its training jobs and keeps moto's record of it current."""

    def __init__(self, standin, tuning, backend, credentials: dict) -> None:
        self.standin = standin
        self.tuning = tuning  # moto's HyperParameterTuningJob: what Describe… answers
        self.backend = backend
        self.credentials = credentials
        self.name = tuning.hyper_parameter_tuning_job_name
        config = tuning.hyper_parameter_tuning_job_config
        limits = config["ResourceLimits"]
        self.max_jobs = int(limits["MaxNumberOfTrainingJobs"])
        self.parallel = int(limits["MaxParallelTrainingJobs"])
        self.objective = config["HyperParameterTuningJobObjective"]
        self.ranges = config.get("ParameterRanges") or {}
        self.definition = tuning.training_job_definition
        self.rng = random.Random(config.get("RandomSeed", self.name))
        self.members: list = []  # JobRun, in launch order
        self.tuned: dict[str, dict] = {}  # training job → its drawn values
        self.stopping = False
        self.started = time.time()
        self._changed = threading.Condition()
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"tuning-{self.name}")

    def start(self) -> "TuningRun":
        self._record("InProgress")
        print(
            f"[stand-in] tuning job {self.name}: {self.max_jobs} training jobs, {self.parallel} "
            f"at once; values drawn at random inside the ranges (SageMaker's "
            f"{self.tuning.hyper_parameter_tuning_job_config.get('Strategy')} strategy is not "
            "emulated), and no training job is stopped early",
            flush=True,
        )
        self.thread.start()
        return self

    # --- scheduling ---------------------------------------------------------------------------------
    def _running(self) -> int:
        return sum(not run.finished.is_set() for run in self.members)

    def _run(self) -> None:
        try:
            for index in range(1, self.max_jobs + 1):
                with self._changed:
                    self._changed.wait_for(lambda: self.stopping or self._running() < self.parallel)
                    if self.stopping:
                        break
                self._launch(index)
            with self._changed:
                self._changed.wait_for(lambda: self._running() == 0)
            self._finish()
        except Exception as error:  # the stand-in's own failure becomes the tuning job's
            self.tuning.failure_reason = f"stand-in error: {error}"[:1024]
            self._record("Failed")

    def _launch(self, index: int) -> None:
        definition = self.definition
        tuned = draw(self.ranges, self.rng)
        name = f"{self.name}-{index:03d}-{secrets.token_hex(4)}"
        hyperparameters = {
            **(definition.get("StaticHyperParameters") or {}),
            **tuned,
            "_tuning_objective_metric": self.objective["MetricName"],
        }
        algorithm = definition["AlgorithmSpecification"]
        job = self.standin.create_training_job(
            self.backend,
            source_arn=self.tuning.arn,
            on_end=self._member_ended,
            training_job_name=name,
            hyper_parameters=hyperparameters,
            algorithm_specification={
                "TrainingImage": algorithm["TrainingImage"],
                "TrainingInputMode": algorithm.get("TrainingInputMode", "File"),
                "MetricDefinitions": algorithm.get("MetricDefinitions") or [],
            },
            role_arn=definition["RoleArn"],
            input_data_config=definition.get("InputDataConfig") or [],
            output_data_config=definition["OutputDataConfig"],
            resource_config=self.resource_config(),
            vpc_config=definition.get("VpcConfig"),
            stopping_condition=definition["StoppingCondition"],
            tags=[],
            enable_network_isolation=definition.get("EnableNetworkIsolation", False),
            enable_inter_container_traffic_encryption=False,
            enable_managed_spot_training=definition.get("EnableManagedSpotTraining", False),
            checkpoint_config=definition.get("CheckpointConfig"),
            debug_hook_config=None,
            debug_rule_configurations=None,
            tensor_board_output_config=None,
            experiment_config=None,
            environment=definition.get("Environment"),
        )
        job.tuning_job_arn = self.tuning.arn
        with self._changed:
            self.tuned[name] = tuned
            self.members.append(self.standin.runs[name])
            self._record("InProgress")

    def resource_config(self) -> dict:
        """A training job's ResourceConfig: the definition's, or with HyperParameterTuning-
        ResourceConfig (``AllocationStrategy: Prioritized``) the first of its InstanceConfigs
        with capacity, as SageMaker allocates them (the last one when none has any)."""
        definition = self.definition
        flexible = definition.get("HyperParameterTuningResourceConfig")
        if not flexible or not flexible.get("InstanceConfigs"):
            return definition["ResourceConfig"]
        configs = flexible["InstanceConfigs"]
        no_capacity = self.standin.emulator.capacity_fail
        chosen = next((c for c in configs if c["InstanceType"] not in no_capacity), configs[-1])
        return {"InstanceType": chosen["InstanceType"],
                "InstanceCount": chosen.get("InstanceCount", 1),
                "VolumeSizeInGB": chosen.get("VolumeSizeInGB", 30)}  # fmt: skip

    def _member_ended(self, run) -> None:
        with self._changed:
            self._record(self.tuning.hyper_parameter_tuning_job_status)
            self._changed.notify_all()

    def request_stop(self) -> None:
        """StopHyperParameterTuningJob: no new jobs, and the running ones stopped."""
        with self._changed:
            self.stopping = True
            self._record("Stopping")
            running = [run for run in self.members if not run.finished.is_set()]
            self._changed.notify_all()
        for run in running:
            run.request_stop()

    def _finish(self) -> None:
        with self._changed:
            if self.stopping:
                status = "Stopped"
            elif self.members and all(run.status == "Failed" for run in self.members):
                status = "Failed"
                self.tuning.failure_reason = "All training jobs failed"
            else:
                status = "Completed"
            self.tuning.hyper_parameter_tuning_end_time = datetime.now(UTC)
            self._record(status)

    # --- what SageMaker answers -----------------------------------------------------------------
    def objective_of(self, run) -> float | None:
        return run.metrics.get(self.objective["MetricName"])

    def summary(self, run) -> dict:
        """A TrainingJobSummary, as ListTrainingJobsForHyperParameterTuningJob answers."""
        job = run.job
        summary = {
            "TrainingJobName": run.name,
            "TrainingJobArn": job.arn,
            "TuningJobName": self.name,
            "CreationTime": job.creation_time,
            "TrainingJobStatus": run.status,
            "TunedHyperParameters": self.tuned[run.name],
        }
        if getattr(job, "training_start_time", None):
            summary["TrainingStartTime"] = job.training_start_time
        if run.finished.is_set():
            summary["TrainingEndTime"] = job.training_end_time
        if getattr(job, "failure_reason", None):
            summary["FailureReason"] = job.failure_reason
        value = self.objective_of(run)
        if value is not None and run.status in ("Completed", "Stopped"):
            summary["FinalHyperParameterTuningJobObjectiveMetric"] = {
                "Type": self.objective["Type"],
                "MetricName": self.objective["MetricName"],
                "Value": value,
            }
        summary["ObjectiveStatus"] = self._objective_status(run)
        return summary

    def _objective_status(self, run) -> str:
        if not run.finished.is_set():
            return "Pending"
        has_value = self.objective_of(run) is not None
        return "Succeeded" if has_value and run.status in ("Completed", "Stopped") else "Failed"

    def summaries(self) -> list[dict]:
        with self._changed:
            return [self.summary(run) for run in self.members]

    def _best(self) -> dict | None:
        scored = [
            run
            for run in self.members
            if run.finished.is_set() and self._objective_status(run) == "Succeeded"
        ]
        if not scored:
            return None
        sign = -1.0 if self.objective["Type"] == "Maximize" else 1.0
        best = min(scored, key=lambda run: sign * self.objective_of(run))
        return self.summary(best)

    def _record(self, status: str) -> None:
        """moto's record of the tuning job, as DescribeHyperParameterTuningJob answers it."""
        tuning = self.tuning
        counters = dict.fromkeys(STATUS_COUNTERS, 0)
        objectives = {"Succeeded": 0, "Pending": 0, "Failed": 0}
        for run in self.members:
            status_of = run.status if run.finished.is_set() else "InProgress"
            counters["NonRetryableError" if status_of == "Failed" else status_of] += 1
            objectives[self._objective_status(run)] += 1
        tuning.hyper_parameter_tuning_job_status = status
        tuning.training_job_status_counters = counters
        tuning.objective_status_counters = objectives
        tuning.best_training_job = self._best()
        tuning.OverallBestTrainingJob = None
        tuning.tuning_job_completion_details = None
        tuning.consumed_resources = {"RuntimeInSeconds": int(time.time() - self.started)}
        tuning.last_modified_time = datetime.now(UTC)
        if status in ("InProgress", "Stopping"):
            tuning.hyper_parameter_tuning_end_time = None
