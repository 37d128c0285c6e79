"""One training job as SageMaker runs it, from CreateTrainingJob to its final status.

For each attempt (a spot reclaim starts another):
- every channel is downloaded from S3 into ``<run>/opt_ml/input/data/<channel>`` (the SDK's
  ``code`` and ``sm_drivers`` channels included), ``input/config/hyperparameters.json``,
  ``inputdataconfig.json`` and ``resourceconfig.json`` are written as SageMaker writes them, and
  ``CheckpointConfig.S3Uri`` is restored into ``checkpoints/``;
- one container per host runs the request's ``ContainerEntrypoint`` (the SDK's ``sm_train.sh`` and
  drivers), or without one the image's own (AWS's toolkits, as tuning jobs run), with the output
  streamed to CloudWatch Logs (``/aws/sagemaker/TrainingJobs``, stream ``<job>/algo-N-<seconds>``)
  and matched against the request's ``MetricDefinitions``;
- the checkpoint folder is uploaded in the background (checkpoints.py).

``StoppingCondition`` is enforced: past ``MaxRuntimeInSeconds`` of training (or, for spot,
``MaxWaitTimeInSeconds`` since the job was created) the containers get SIGTERM, then the kill after
a grace period, and the job ends ``Stopped`` with ``MaxRuntimeExceeded`` (``MaxWaitTimeExceeded``);
StopTrainingJob does the same with ``Stopped``. What ``/opt/ml/model`` and ``/opt/ml/output/data``
hold is uploaded as ``model.tar.gz`` and ``output.tar.gz`` whenever the job did not fail, as
SageMaker does. The job's status, ``SecondaryStatusTransitions``, ``FailureReason`` (from
``/opt/ml/output/failure``), ``FinalMetricDataList``, ``TrainingTimeInSeconds`` and
``BillableTimeInSeconds`` are set on moto's record of it.
"""

import contextlib
import json
import os
import queue
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import boto3
from botocore.exceptions import ClientError
from vgg_transfer.contract import FINE_TUNED, OptMl, pack_artifacts

from training.common.aws import split_s3_uri
from training.common.sagemaker import LOG_GROUP
from training.standin import containers
from training.standin.checkpoints import CheckpointSync
from training.standin.network import HostNetwork

GRACE_SECONDS = 5  # SageMaker gives 120 s after SIGTERM; a rehearsal needs less
WATCH_SECONDS = 0.2
MESSAGES = {  # the StatusMessage of each secondary status the stand-in sets
    "Starting": "Preparing the instances for training",
    "Waiting": "Insufficient capacity: waiting for spot capacity to launch the instances",
    "Downloading": "Downloading input data",
    "Training": "Downloading the training image completed. Training in progress.",
    "Interrupted": "The spot instance was reclaimed; the job restarts from its S3 checkpoints",
    "Uploading": "Uploading generated training model",
    "Stopping": "Stopping the training job",
    "Stopped": "Training job stopped",
    "MaxRuntimeExceeded": "Training job runtime exceeded MaxRuntimeInSeconds provided",
    "MaxWaitTimeExceeded": "Training job wait time exceeded MaxWaitTimeInSeconds provided",
    "Completed": "Training job completed",
    "Failed": "Training job failed",
}
STOPS = ("Stopped", "MaxRuntimeExceeded", "MaxWaitTimeExceeded")
CAPACITY_ERROR = ("CapacityError: Unable to provision requested ML compute capacity. Please retry "
                  "using a different ML instance type.")  # AWS's words  # fmt: skip


@dataclass
class Interruption:
    """A spot reclaim, once per rehearsal, when the first fine-tuning epoch has ended.

    ``when``: "checkpoint" reclaims right after that epoch's checkpoint reached S3, so the restart
    resumes inside the phase (the containers are paused for the upload, so the job cannot finish
    another epoch meanwhile, however short its epochs); "early" reclaims at once, before the
    checkpoint sync has caught up, so the restart may train that epoch again."""

    when: str = "checkpoint"
    phase: str = FINE_TUNED
    done: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def due(self, line: str) -> bool:
        return not self.done and f"[epoch] phase={self.phase} epoch=1/" in line

    def claim(self) -> bool:
        """True once: the caller reclaims its job's instances."""
        with self._lock:
            if self.done:
                return False
            self.done = True
            return True


class DownloadFailed(Exception):
    def __init__(self, bucket: str, key: str, error: ClientError) -> None:
        response = error.response
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = response.get("Error", {}).get("Code", "")
        if code in ("403", "Forbidden"):  # a HEAD answer carries no body, so no error code
            code = "AccessDenied"
        super().__init__(f"Data download failed: {code} ({status}) on s3://{bucket}/{key}")


class Attempt:
    """The containers of one attempt; ``end(reason)`` takes them down once, as SageMaker does:
    SIGTERM to each container's first process, then the kill after the grace period."""

    def __init__(self) -> None:
        self.processes: list = []
        self.reason: str | None = None  # "Interrupted" or one of STOPS
        self.over = False  # every container has exited
        self._lock = threading.Lock()

    def end(self, reason: str) -> None:
        with self._lock:
            if self.reason or self.over:
                return
            self.reason = reason
        threading.Thread(target=self._terminate, daemon=True, name=f"end-{reason}").start()

    def close(self) -> None:
        with self._lock:
            self.over = True

    def pause(self) -> None:
        """Freezes every process of every container (SIGSTOP); end() lets them go."""
        self._signal_groups(signal.SIGSTOP)

    def _signal_groups(self, signum: int) -> None:
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signum)

    def _terminate(self) -> None:
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        self._signal_groups(signal.SIGCONT)  # a paused container takes its SIGTERM now
        deadline = time.time() + GRACE_SECONDS
        while time.time() < deadline and any(p.poll() is None for p in self.processes):
            time.sleep(0.1)
        self._signal_groups(signal.SIGKILL)  # then the instance goes, every process on it


@dataclass(frozen=True)
class Emulator:
    """Where the stand-in's jobs run: the emulator's endpoint and region, the folder for their
    volumes, and the one spot interruption of the rehearsal, if any."""

    endpoint_url: str
    region: str
    runs_dir: Path
    interruption: Interruption | None = None
    capacity_fail: frozenset[str] = frozenset()  # types without capacity (CAPACITY_FAIL)


class JobRun:
    """Runs one training job that moto recorded (see the module docstring)."""

    def __init__(
        self, job, credentials: dict, emulator: Emulator, on_end: Callable | None = None
    ) -> None:
        self.job = job  # moto's FakeTrainingJob: what DescribeTrainingJob answers
        self.name = job.training_job_name
        self.credentials = credentials  # the execution role's, for everything done on AWS
        self.endpoint_url = emulator.endpoint_url
        self.region = emulator.region
        self.root = Path(emulator.runs_dir) / self.name
        self.interruption = emulator.interruption
        self.on_end = on_end
        self.attempts = 0
        self.billable = 0.0
        self.metrics: dict[str, float] = {}  # each metric's latest value in the log
        self.stop_requested = threading.Event()
        self.finished = threading.Event()
        self.attempt: Attempt | None = None
        self.created = time.time()
        request_metrics = job.algorithm_specification.get("MetricDefinitions") or []
        self.metric_patterns = [(m["Name"], re.compile(m["Regex"])) for m in request_metrics]
        self.instance_type = job.resource_config["InstanceType"]
        self.instance_count = int(job.resource_config["InstanceCount"])
        self.spot = bool(job.enable_managed_spot_training)
        self.no_capacity = self.instance_type in emulator.capacity_fail
        self.hosts = [f"algo-{i}" for i in range(1, self.instance_count + 1)]

    # --- status ---------------------------------------------------------------------------------
    @property
    def status(self) -> str:
        return self.job.training_job_status

    def set_status(self, status: str, secondary: str, failure: str | None = None,
                   message: str | None = None) -> None:  # fmt: skip
        """The job's status, and a SecondaryStatusTransitions entry as SageMaker keeps them."""
        job = self.job
        job.training_job_status, job.secondary_status = status, secondary
        if failure is not None:
            job.failure_reason = failure
        now = datetime.now(UTC)
        job.last_modified_time = now
        transitions = job.secondary_status_transitions
        if transitions and "EndTime" not in transitions[-1]:
            transitions[-1]["EndTime"] = now
        transitions.append(
            {
                "Status": secondary,
                "StartTime": now,
                "StatusMessage": failure or message or MESSAGES[secondary],
            }  # fmt: skip
        )

    def request_stop(self) -> None:
        """StopTrainingJob."""
        self.set_status("Stopping", "Stopping")
        self.stop_requested.set()
        if self.attempt:
            self.attempt.end("Stopped")

    def client(self, service: str):
        """A client acting as the job's execution role, as SageMaker does for its instances."""
        return boto3.client(
            service, region_name=self.region, endpoint_url=self.endpoint_url, **self.credentials
        )

    # --- the job ----------------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._run()
        except (ClientError, DownloadFailed) as error:  # AWS refused the role something
            self.set_status("Failed", "Failed", failure=f"ClientError: {error}"[:1024])
        except Exception as error:  # the stand-in's own failure becomes the job's
            self.set_status("Failed", "Failed", failure=f"stand-in error: {error}"[:1024])
        finally:
            self.job.training_end_time = datetime.now(UTC)
            self.finished.set()
            if self.on_end:
                self.on_end(self)

    def _run(self) -> None:
        if self.no_capacity:
            self.wait_for_capacity()
            return
        self.job.training_start_time = datetime.now(UTC)
        started = time.time()
        with HostNetwork(self.name, self.hosts) as network:
            while True:
                self.attempts += 1
                self.set_status("InProgress", "Downloading")
                volumes = {host: self.prepare(host) for host in self.hosts}
                if self.stop_requested.is_set():
                    codes, ended = {}, "Stopped"
                    break
                self.set_status("InProgress", "Training")
                attempt_started = time.time()
                codes, ended = self.run_containers(volumes, network)
                self.billable += time.time() - attempt_started  # per instance, as AWS counts
                if ended != "Interrupted":
                    break
                self.set_status("InProgress", "Interrupted")
        chief = volumes[self.hosts[0]]
        failed = [host for host, code in codes.items() if code != 0]
        self.job.training_time_in_seconds = int(round(time.time() - started))
        self.job.billable_time_in_seconds = int(round(self.billable))
        self.job.final_metric_data_list = [
            {"MetricName": name, "Value": value, "Timestamp": datetime.now(UTC)}
            for name, value in self.metrics.items()
        ]
        if ended in STOPS:
            # What the job saved before the stop is kept, as SageMaker uploads it after SIGTERM.
            self.set_status("Stopping", "Uploading")
            self.upload_artifacts(chief)
            self.set_status("Stopped", ended)
        elif not failed:
            self.set_status("InProgress", "Uploading")
            self.upload_artifacts(chief)
            self.set_status("Completed", "Completed")
        else:
            failure_file = Path(OptMl(str(volumes[failed[0]])).failure)
            reason = failure_file.read_text().strip() if failure_file.exists() else ""
            failure = f"AlgorithmError: {reason or f'exit code {codes[failed[0]]}'}"
            self.set_status("Failed", "Failed", failure[:1024])

    def wait_for_capacity(self) -> None:
        """CAPACITY_FAIL: SageMaker has no instance of the type. An on-demand job fails at once;
        a spot job waits in Starting until it is stopped or its max wait runs out. Either way
        nothing ran and nothing is billed."""
        self.job.training_time_in_seconds = self.job.billable_time_in_seconds = 0
        if not self.spot:
            self.set_status("Failed", "Failed", failure=CAPACITY_ERROR)
            return
        self.set_status("InProgress", "Starting", message=MESSAGES["Waiting"])
        max_wait = (self.job.stopping_condition or {}).get("MaxWaitTimeInSeconds")
        while not self.stop_requested.wait(WATCH_SECONDS):
            if max_wait and time.time() - self.created > max_wait:
                self.set_status("Stopped", "MaxWaitTimeExceeded")
                return
        self.set_status("Stopped", "Stopped")

    def prepare(self, host: str) -> Path:
        """A fresh volume for one host: channels, config files and the restored checkpoints."""
        opt_ml = self.root / f"attempt-{self.attempts}" / host / "opt_ml"
        contract = OptMl(str(opt_ml))
        for folder in contract.folders():
            Path(folder).mkdir(parents=True, exist_ok=True)
        s3 = self.client("s3")
        job = self.job
        channels = {}
        for channel in job.input_data_config or []:
            name = channel["ChannelName"]
            source = channel["DataSource"]["S3DataSource"]
            bucket, prefix = split_s3_uri(source["S3Uri"])
            self._download(s3, bucket, prefix, Path(contract.channel(name)))
            channels[name] = {
                "TrainingInputMode": channel.get("InputMode", "File"),
                "S3DistributionType": source.get("S3DataDistributionType", "FullyReplicated"),
                "RecordWrapperType": "None",
            }
        config = Path(contract.input_config)
        (config / "hyperparameters.json").write_text(json.dumps(job.hyper_parameters or {}))
        (config / "inputdataconfig.json").write_text(json.dumps(channels))
        instance_type = job.resource_config["InstanceType"]
        (config / "resourceconfig.json").write_text(
            json.dumps(
                {
                    "current_host": host,
                    "current_instance_type": instance_type,
                    "current_group_name": "homogeneousCluster",
                    "hosts": self.hosts,
                    "instance_groups": [
                        {
                            "instance_group_name": "homogeneousCluster",
                            "instance_type": instance_type,
                            "hosts": self.hosts,
                        }
                    ],
                    "network_interface_name": "eth0",
                }
            )
        )
        checkpoint = (job.checkpoint_config or {}).get("S3Uri")
        if checkpoint:
            bucket, prefix = split_s3_uri(checkpoint)
            # The tuning jobs' training jobs share one location, and each deletes files there
            # as it goes: one that vanished since the listing is no longer in the checkpoint.
            self._download(s3, bucket, prefix, Path(contract.checkpoints), vanished_ok=True)
        return opt_ml

    @staticmethod
    def _download(s3, bucket: str, prefix: str, target: Path, vanished_ok: bool = False) -> None:
        target.mkdir(parents=True, exist_ok=True)
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                relative = item["Key"][len(prefix) :].lstrip("/")
                if not relative:
                    continue
                path = target / relative
                path.parent.mkdir(parents=True, exist_ok=True)
                try:
                    s3.download_file(bucket, item["Key"], str(path))
                except ClientError as error:
                    code = error.response.get("Error", {}).get("Code")
                    if vanished_ok and code in ("404", "NoSuchKey"):
                        path.unlink(missing_ok=True)
                        continue
                    raise DownloadFailed(bucket, item["Key"], error) from error

    # --- the containers ---------------------------------------------------------------------------
    def sagemaker_environment(self) -> dict[str, str]:
        """What SageMaker adds to a container's environment, plus the emulator's endpoint."""
        job = self.job
        return {
            **(getattr(job, "environment", None) or {}),
            "TRAINING_JOB_NAME": self.name,
            "TRAINING_JOB_ARN": job.arn,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            # On AWS the role's credentials come from the container credentials endpoint.
            **{key.upper(): value for key, value in self.credentials.items()},
            "AWS_ENDPOINT_URL": self.endpoint_url,
        }

    def run_containers(self, volumes: dict[str, Path], network: HostNetwork):
        """One container per host until all exit or the attempt is ended; returns ({host: exit
        code}, how it ended: None, "Interrupted" or one of STOPS)."""
        logs = self.client("logs")
        with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
            logs.create_log_group(logGroupName=LOG_GROUP)
        attempt = self.attempt = Attempt()
        lines: queue.Queue = queue.Queue()
        streams = {host: self._start(host, opt_ml, network, attempt, lines, logs)
                   for host, opt_ml in volumes.items()}  # fmt: skip
        # SageMaker syncs each host's folder; only the chief writes checkpoints in this job.
        sync = CheckpointSync(
            self.client("s3"),
            (self.job.checkpoint_config or {}).get("S3Uri"),
            volumes[self.hosts[0]] / "checkpoints",
        )
        sync.start()
        threading.Thread(target=self._watch, args=(attempt,), daemon=True).start()
        pending: dict[str, list[str]] = {host: [] for host in volumes}
        open_pipes, last_flush = len(volumes), time.time()
        while open_pipes:
            host, line = lines.get()
            if line is None:
                open_pipes -= 1
                continue
            if line.strip():  # CloudWatch takes no empty events
                pending[host].append(line)
                self._match_metrics(line)
            if time.time() - last_flush > 0.5:
                self._flush(logs, streams, pending)
                last_flush = time.time()
            # The first host's line: its checkpoints are the ones synced, saved before it prints
            # the line; another host's line can come first, while algo-1 is still saving.
            if self.interruption and host == self.hosts[0] and self.interruption.due(line):
                self._reclaim(attempt, sync)
        codes = {h: p.wait() for h, p in zip(volumes, attempt.processes, strict=True)}
        attempt.close()
        self._flush(logs, streams, pending)
        sync.stop(flush=attempt.reason != "Interrupted")  # reclaimed: what was not uploaded is lost
        return codes, attempt.reason

    def _start(self, host: str, opt_ml: Path, network: HostNetwork, attempt: Attempt,
               lines: queue.Queue, logs) -> str:  # fmt: skip
        """Starts the host's container with its output pumped into ``lines``; returns the name
        of its log stream."""
        algorithm = self.job.algorithm_specification
        env = containers.environment(
            algorithm["TrainingImage"], opt_ml.parent / "home", self.sagemaker_environment()
        )
        process = containers.start(
            containers.command_of(algorithm), env, opt_ml, network.hosts_file,
            network.namespace(host),
        )  # fmt: skip
        attempt.processes.append(process)
        stream = f"{self.name}/{host}-{int(time.time())}"
        logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
        threading.Thread(target=_pump, args=(host, process.stdout, lines), daemon=True).start()
        return stream

    def _reclaim(self, attempt: Attempt, sync: CheckpointSync) -> None:
        interruption = self.interruption
        if not self.spot or not interruption.claim():
            return
        if interruption.when == "checkpoint":
            attempt.pause()
            sync.sync_once(shuffle=True)
        epochs = sync.epochs_in_s3(interruption.phase)
        print(
            f"[stand-in] reclaiming the spot instance of {self.name}: {interruption.phase} "
            f"epochs in S3: {epochs}",
            flush=True,
        )
        attempt.end("Interrupted")

    def _watch(self, attempt: Attempt) -> None:
        """The job's StoppingCondition, and StopTrainingJob, while the attempt runs."""
        condition = self.job.stopping_condition or {}
        max_runtime = condition.get("MaxRuntimeInSeconds")
        max_wait = condition.get("MaxWaitTimeInSeconds")
        if not self.spot:
            max_wait = None  # on-demand jobs wait for no capacity
        started = time.time()
        while attempt.reason is None and not attempt.over:
            if self.stop_requested.is_set():
                attempt.end("Stopped")
            elif max_runtime and self.billable + time.time() - started > max_runtime:
                attempt.end("MaxRuntimeExceeded")
            elif max_wait and time.time() - self.created > max_wait:
                attempt.end("MaxWaitTimeExceeded")
            time.sleep(WATCH_SECONDS)

    def _match_metrics(self, line: str) -> None:
        """SageMaker keeps the latest value each metric definition matches in the log."""
        for name, pattern in self.metric_patterns:
            match = pattern.search(line)
            if match:
                try:
                    self.metrics[name] = float(match.group(1))
                except (IndexError, ValueError):
                    continue

    def _flush(self, logs, streams: dict[str, str], pending: dict[str, list[str]]) -> None:
        now = int(time.time() * 1000)
        for host, lines in pending.items():
            if lines:
                logs.put_log_events(
                    logGroupName=LOG_GROUP,
                    logStreamName=streams[host],
                    logEvents=[{"timestamp": now + i, "message": m} for i, m in enumerate(lines)],
                )
                lines.clear()

    # --- the end ------------------------------------------------------------------------------------
    def upload_artifacts(self, opt_ml: Path) -> None:
        bucket, prefix = split_s3_uri(self.job.output_data_config["S3OutputPath"])
        s3 = self.client("s3")
        for archive in pack_artifacts(OptMl(str(opt_ml)), str(opt_ml.parent)):
            name = Path(archive).name
            key = f"{prefix.rstrip('/')}/{self.name}/output/{name}".lstrip("/")
            s3.upload_file(archive, bucket, key)


def _pump(host: str, pipe, lines: queue.Queue) -> None:
    for line in pipe:
        lines.put((host, line.rstrip("\n")))
    lines.put((host, None))
