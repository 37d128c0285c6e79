"""A SageMaker stand-in over moto: it runs each CreateTrainingJob request the way SageMaker would,
so that the whole cloud path can be rehearsed offline (``make rehearse``) and tested.

For every training job moto records, in this process, the stand-in:
- downloads every channel from S3 into ``<run>/opt_ml/input/data/<channel>``, the SDK's ``code``
  and ``sm_drivers`` channels included, and writes ``input/config/hyperparameters.json``,
  ``inputdataconfig.json`` and ``resourceconfig.json`` as SageMaker does;
- restores ``CheckpointConfig.S3Uri`` into ``<run>/opt_ml/checkpoints``, and while the job runs
  uploads what appears there in a background thread, in no set order, mirroring deletes;
- runs the request's ``ContainerEntrypoint`` + ``ContainerArguments`` (the SDK's own
  ``sm_train.sh`` → ``environment.py`` → ``basic_script_driver.py`` → ``train.py``) unchanged,
  streaming the output to CloudWatch Logs (``/aws/sagemaker/TrainingJobs``, stream
  ``<job>/algo-1-<epoch seconds>``);
- packs ``model.tar.gz`` and ``output.tar.gz`` under ``S3OutputPath/<job>/output/`` and sets the
  job's status, ``SecondaryStatus``, ``FailureReason`` (from ``/opt/ml/output/failure``),
  ``TrainingTimeInSeconds`` and ``BillableTimeInSeconds``;
- on request, interrupts the job as a spot reclaim does (SIGTERM to the container's process 1,
  SIGKILL after a grace period), restarts it on a fresh volume with the checkpoints restored from
  S3, and bills only the seconds that ran.

How ``/opt/ml`` maps to the run folder: each container runs in its own mount namespace
(``unshare --mount``; Linux, as root or with unprivileged user namespaces), where a private tmpfs
covers ``/opt`` (its entries bound back in) and ``<run>/opt_ml`` is bind-mounted at ``/opt/ml``.
The container's processes see SageMaker's paths; nothing changes on the host. The "image" is a
Python environment of this project: ``.venv-compat`` (TF 2.12, Keras 2) for TF 2.11 images,
``.venv`` otherwise.

Several instances (``InstanceCount`` > 1) run as one container per host, ``algo-1``…``algo-N``, each
with its own ``resourceconfig.json`` and volume, in a network namespace of its own (as root) linked
to the others by a bridge, with an ``/etc/hosts`` naming them; the chief's model and outputs are
packed.

Everything the stand-in does on AWS it does as the job's execution role: it assumes the role when
the job is created (as SageMaker does, refusing a role whose trust policy does not admit it) and
uses those credentials for channels, checkpoints, artifacts and logs, and hands them, not the
launcher's, to the container. With ``standin_iam.enforced()`` moto then checks each of those
requests against the role's policies.
"""

import contextlib
import io
import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import boto3
from botocore.exceptions import ClientError

from training.launch.common import split_s3_uri
from training.standin_iam import CannotAssumeRole, role_credentials

REPO = Path(__file__).resolve().parents[1]
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
GRACE_SECONDS = 5  # SageMaker gives a reclaimed spot instance 120 s; a rehearsal needs less
SYNC_SECONDS = 0.5
MESSAGES = {  # the StatusMessage of each secondary status the stand-in sets
    "Downloading": "Downloading input data",
    "Training": "Downloading the training image completed. Training in progress.",
    "Interrupted": "The spot instance was reclaimed; the job restarts from its S3 checkpoints",
    "Uploading": "Uploading generated training model",
    "Completed": "Training job completed",
    "Failed": "Training job failed",
}
CALLER_CREDENTIALS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
)
MOUNT_SCRIPT = r"""
set -e
scratch=$(mktemp -d)
mkdir -p "$scratch/opt"
mount --rbind /opt "$scratch/opt"
mount -t tmpfs tmpfs /opt
for entry in "$scratch"/opt/* ; do
  [ -e "$entry" ] || continue
  name=$(basename "$entry")
  if [ -d "$entry" ]; then mkdir "/opt/$name"; else touch "/opt/$name"; fi
  mount --rbind "$entry" "/opt/$name"
done
mkdir /opt/ml
mount --bind "$STANDIN_OPT_ML" /opt/ml
if [ -n "$STANDIN_HOSTS" ]; then mount --bind "$STANDIN_HOSTS" /etc/hosts; fi
exec "$@"
"""


def python_for(image: str) -> Path:
    """The environment that plays the image: Keras 2 for the P2 image's TF 2.11, else Keras 3."""
    venv = ".venv-compat" if ":2.11-" in image else ".venv"
    return REPO / venv / "bin"


@dataclass
class Interruption:
    """A spot reclaim: after ``after_line`` appears in the job's output (once)."""

    after_line: str
    done: bool = False


class DownloadFailed(Exception):
    def __init__(self, bucket: str, key: str, error: ClientError) -> None:
        response = error.response
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = response.get("Error", {}).get("Code", "")
        if code in ("403", "Forbidden"):  # a HEAD answer carries no body, so no error code
            code = "AccessDenied"
        super().__init__(f"Data download failed: {code} ({status}) on s3://{bucket}/{key}")


@dataclass
class JobRun:
    name: str
    request: dict
    root: Path
    credentials: dict  # the execution role's, for everything the job does on AWS
    billable: float = 0.0
    attempts: int = 0


class StandIn:
    """Runs the training jobs that moto records in this process (see the module docstring)."""

    def __init__(
        self,
        endpoint_url: str,
        runs_dir: Path,
        region: str = "us-east-1",
        interruption: Interruption | None = None,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.region = region
        self.runs_dir = Path(runs_dir)
        self.interruption = interruption
        self.jobs: queue.Queue = queue.Queue()
        self.finished: dict[str, JobRun] = {}
        self._thread: threading.Thread | None = None
        self._unpatch = None

    # --- wiring into moto ---------------------------------------------------------------------
    def start(self) -> "StandIn":
        from moto.sagemaker.exceptions import ValidationError
        from moto.sagemaker.models import SageMakerModelBackend

        original = SageMakerModelBackend.create_training_job
        stand_in = self

        def create_training_job(backend, training_job_name, *args, **kwargs):
            job = original(backend, training_job_name, *args, **kwargs)
            try:  # SageMaker refuses a role it cannot assume at once, before the job exists
                credentials = role_credentials(job.role_arn, job.arn, stand_in.region)
            except CannotAssumeRole as refusal:
                del backend.training_jobs[training_job_name]
                raise ValidationError(str(refusal)) from refusal
            # moto marks a job Completed at once; SageMaker starts it.
            job.training_job_status, job.secondary_status = "InProgress", "Starting"
            stand_in.jobs.put((job, credentials))
            return job

        SageMakerModelBackend.create_training_job = create_training_job
        self._unpatch = lambda: setattr(SageMakerModelBackend, "create_training_job", original)
        self._thread = threading.Thread(target=self._work, daemon=True, name="sagemaker-standin")
        self._thread.start()
        return self

    def stop(self) -> None:
        self.jobs.put(None)
        if self._thread:
            self._thread.join(timeout=600)
        if self._unpatch:
            self._unpatch()

    def _client(self, service: str, credentials: dict):
        """A client acting as the job's execution role, as SageMaker does for its instances."""
        return boto3.client(
            service, region_name=self.region, endpoint_url=self.endpoint_url, **credentials
        )

    def _work(self) -> None:
        while True:
            item = self.jobs.get()
            if item is None:
                return
            job, credentials = item
            try:
                self.run_job(job, credentials)
            except (ClientError, DownloadFailed) as error:  # AWS refused the role something
                self._set(job, "Failed", "Failed", failure=f"ClientError: {error}"[:1024])
            except Exception as error:  # the stand-in's own failure becomes the job's
                self._set(job, "Failed", "Failed", failure=f"stand-in error: {error}")

    # --- one job --------------------------------------------------------------------------------
    def _set(self, job, status: str, secondary: str, failure: str | None = None) -> None:
        """The job's status, and a SecondaryStatusTransitions entry as SageMaker keeps them."""
        job.training_job_status, job.secondary_status = status, secondary
        if failure is not None:
            job.failure_reason = failure
        now = datetime.now(UTC)
        transitions = job.secondary_status_transitions
        if transitions and "EndTime" not in transitions[-1]:
            transitions[-1]["EndTime"] = now
        transitions.append(
            {"Status": secondary, "StartTime": now, "StatusMessage": failure or MESSAGES[secondary]}
        )

    def request_of(self, job) -> dict:
        return {
            "TrainingJobName": job.training_job_name,
            "AlgorithmSpecification": job.algorithm_specification,
            "HyperParameters": job.hyper_parameters or {},
            "InputDataConfig": job.input_data_config or [],
            "OutputDataConfig": job.output_data_config,
            "ResourceConfig": job.resource_config,
            "CheckpointConfig": job.checkpoint_config or {},
            "EnableManagedSpotTraining": bool(job.enable_managed_spot_training),
        }

    def run_job(self, job, credentials: dict) -> JobRun:
        request = self.request_of(job)
        run = JobRun(
            request["TrainingJobName"],
            request,
            self.runs_dir / request["TrainingJobName"],
            credentials,
        )
        self.finished[run.name] = run
        count = int(request["ResourceConfig"].get("InstanceCount", 1))
        hosts = [f"algo-{i}" for i in range(1, count + 1)]
        started = time.time()
        with HostNetwork(run.name, hosts) as network:
            while True:
                run.attempts += 1
                self._set(job, "InProgress", "Downloading")
                volumes = {host: self.prepare(run, host, hosts) for host in hosts}
                self._set(job, "InProgress", "Training")
                interrupt = (
                    self.interruption
                    if self.interruption
                    and not self.interruption.done
                    and request["EnableManagedSpotTraining"]
                    else None
                )
                attempt_started = time.time()
                codes, interrupted = self.run_containers(run, volumes, network, interrupt)
                run.billable += time.time() - attempt_started  # per instance, as SageMaker counts
                if not interrupted:
                    break
                self._set(job, "InProgress", "Interrupted")
        self._set(job, "InProgress", "Uploading")
        failed = [host for host, code in codes.items() if code != 0]
        if not failed:
            self.upload_artifacts(run, volumes[hosts[0]])  # the chief's model and outputs
            status, failure = "Completed", None
        else:
            status = "Failed"
            failure_file = volumes[failed[0]] / "output" / "failure"
            reason = failure_file.read_text().strip() if failure_file.exists() else ""
            failure = f"AlgorithmError: {reason or f'exit code {codes[failed[0]]}'}"[:1024]
        job.training_time_in_seconds = int(round(time.time() - started))
        job.billable_time_in_seconds = int(round(run.billable))
        self._set(job, status, status, failure)
        return run

    def prepare(self, run: JobRun, host: str, hosts: list[str]) -> Path:
        """A fresh volume for one host: channels, config files and the restored checkpoints."""
        opt_ml = run.root / f"attempt-{run.attempts}" / host / "opt_ml"
        for folder in ("input/config", "input/data", "model", "output/data", "checkpoints"):
            (opt_ml / folder).mkdir(parents=True, exist_ok=True)
        s3 = self._client("s3", run.credentials)
        request = run.request
        channels = {}
        for channel in request["InputDataConfig"]:
            name = channel["ChannelName"]
            bucket, prefix = split_s3_uri(channel["DataSource"]["S3DataSource"]["S3Uri"])
            self._download(s3, bucket, prefix, opt_ml / "input" / "data" / name)
            channels[name] = {
                "TrainingInputMode": channel.get("InputMode", "File"),
                "S3DistributionType": channel["DataSource"]["S3DataSource"].get(
                    "S3DataDistributionType", "FullyReplicated"
                ),
                "RecordWrapperType": "None",
            }
        config = opt_ml / "input" / "config"
        (config / "hyperparameters.json").write_text(json.dumps(request["HyperParameters"]))
        (config / "inputdataconfig.json").write_text(json.dumps(channels))
        instance_type = request["ResourceConfig"]["InstanceType"]
        (config / "resourceconfig.json").write_text(
            json.dumps(
                {
                    "current_host": host,
                    "current_instance_type": instance_type,
                    "current_group_name": "homogeneousCluster",
                    "hosts": hosts,
                    "instance_groups": [
                        {
                            "instance_group_name": "homogeneousCluster",
                            "instance_type": instance_type,
                            "hosts": hosts,
                        }
                    ],
                    "network_interface_name": "eth0",
                }
            )
        )
        checkpoint = request["CheckpointConfig"].get("S3Uri")
        if checkpoint:
            bucket, prefix = split_s3_uri(checkpoint)
            self._download(s3, bucket, prefix, opt_ml / "checkpoints")
        return opt_ml

    @staticmethod
    def _download(s3, bucket: str, prefix: str, target: Path) -> None:
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
                    raise DownloadFailed(bucket, item["Key"], error) from error

    # --- the containers -------------------------------------------------------------------------
    def start_container(self, run: JobRun, host: str, opt_ml: Path, network) -> subprocess.Popen:
        algorithm = run.request["AlgorithmSpecification"]
        command = list(algorithm.get("ContainerEntrypoint") or []) + list(
            algorithm.get("ContainerArguments") or []
        )
        if not command:
            raise RuntimeError("the request has no ContainerEntrypoint (script mode needs one)")
        bin_dir = python_for(algorithm["TrainingImage"])
        env = {key: value for key, value in os.environ.items() if key not in CALLER_CREDENTIALS}
        env.update(
            # The container acts as the execution role (SageMaker serves the role's credentials
            # to it), never as whoever launched the job.
            {key.upper(): value for key, value in run.credentials.items()},
            AWS_REGION=self.region,
            PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            TRAINING_JOB_NAME=run.name,
            STANDIN_OPT_ML=str(opt_ml.resolve()),
            STANDIN_HOSTS=str(network.hosts_file) if network.hosts_file else "",
            PYTHONUNBUFFERED="1",
        )
        env.pop("VIRTUAL_ENV", None)
        wrapper = ["unshare", "--mount", "--propagation", "private"]
        if os.geteuid() != 0:
            wrapper[1:1] = ["--user", "--map-root-user"]
        namespace = network.namespace(host)
        if namespace:
            wrapper = ["ip", "netns", "exec", namespace, *wrapper]
        return subprocess.Popen(
            [*wrapper, "bash", "-c", MOUNT_SCRIPT, "container", *command],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def run_containers(
        self, run: JobRun, volumes: dict[str, Path], network, interrupt: Interruption | None
    ):
        """Runs one container per host; returns ({host: exit code}, interrupted)."""
        logs = self._client("logs", run.credentials)
        with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
            logs.create_log_group(logGroupName=LOG_GROUP)
        chief = next(iter(volumes))
        processes, streams = {}, {}
        lines: queue.Queue = queue.Queue()
        for host, opt_ml in volumes.items():
            processes[host] = self.start_container(run, host, opt_ml, network)
            streams[host] = f"{run.name}/{host}-{int(time.time())}"
            logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=streams[host])
            threading.Thread(
                target=_pump, args=(host, processes[host].stdout, lines), daemon=True
            ).start()
        # SageMaker syncs each host's folder; only the chief writes checkpoints in this job.
        sync = CheckpointSync(
            self._client("s3", run.credentials), run.request["CheckpointConfig"], volumes[chief]
        )
        sync.start()
        interrupted = False
        pending: dict[str, list[str]] = {host: [] for host in volumes}
        open_pipes, last_flush = len(processes), time.time()
        while open_pipes:
            host, line = lines.get()
            if line is None:
                open_pipes -= 1
                continue
            if line.strip():  # CloudWatch takes no empty events
                pending[host].append(line)
            if time.time() - last_flush > 0.5:
                self._flush(logs, streams, pending)
                last_flush = time.time()
            if interrupt and not interrupt.done and interrupt.after_line in line:
                interrupt.done = interrupted = True
                for process in processes.values():
                    self._reclaim(process)
        codes = {host: process.wait() for host, process in processes.items()}
        self._flush(logs, streams, pending)
        sync.stop(flush=not interrupted)  # reclaimed: what was not uploaded is lost
        return codes, interrupted

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

    @staticmethod
    def _reclaim(process: subprocess.Popen) -> None:
        """A spot reclaim: SIGTERM to the container's process 1, SIGKILL after the grace."""
        process.send_signal(signal.SIGTERM)
        deadline = time.time() + GRACE_SECONDS
        while process.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        # Then the instance goes: every process of the container, whatever PID 1 did.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    # --- the end --------------------------------------------------------------------------------
    def upload_artifacts(self, run: JobRun, opt_ml: Path) -> None:
        bucket, prefix = split_s3_uri(run.request["OutputDataConfig"]["S3OutputPath"])
        s3 = self._client("s3", run.credentials)
        for folder, archive in (("model", "model.tar.gz"), ("output/data", "output.tar.gz")):
            path = opt_ml.parent / archive
            with tarfile.open(path, "w:gz") as tar:
                for item in sorted((opt_ml / folder).iterdir()):
                    tar.add(item, arcname=item.name)
            key = f"{prefix.rstrip('/')}/{run.name}/output/{archive}".lstrip("/")
            s3.upload_file(str(path), bucket, key)


def _pump(host: str, pipe, lines: queue.Queue) -> None:
    for line in pipe:
        lines.put((host, line.rstrip("\n")))
    lines.put((host, None))


class HostNetwork:
    """Several instances: a network namespace per host, linked by a bridge in a switch namespace,
    and an /etc/hosts naming algo-1…algo-N, so each host's workers can bind the same fixed port
    and reach the others by name, as on SageMaker. One instance needs none of it."""

    def __init__(self, job: str, hosts: list[str]) -> None:
        self.hosts = hosts
        tag = f"{zlib.crc32(job.encode()) % 100000:05d}"
        self.switch = f"sm{tag}-sw"
        self.names = {host: f"sm{tag}-{i}" for i, host in enumerate(hosts, 1)}
        self.subnet = f"10.213.{zlib.crc32(job.encode()) % 250}"
        self.hosts_file: Path | None = None
        self._folder: tempfile.TemporaryDirectory | None = None

    def namespace(self, host: str) -> str | None:
        return self.names[host] if len(self.hosts) > 1 else None

    @staticmethod
    def _ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, text=True)

    def __enter__(self) -> "HostNetwork":
        if len(self.hosts) == 1:
            return self
        if os.geteuid() != 0 or shutil.which("ip") is None:
            raise RuntimeError(
                "rehearsing several instances needs root and iproute2 (a network namespace per "
                "host); rehearse with INSTANCE_COUNT=1"
            )
        self._ip("netns", "add", self.switch)
        self._ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        self._ip("-n", self.switch, "link", "set", "br0", "up")
        entries = ["127.0.0.1 localhost"]
        for i, host in enumerate(self.hosts, 1):
            namespace, address = self.names[host], f"{self.subnet}.{i}"
            self._ip("netns", "add", namespace)
            self._ip("link", "add", f"{namespace}-v", "netns", self.switch, "type", "veth",
                     "peer", "name", "eth0", "netns", namespace)  # fmt: skip
            self._ip("-n", self.switch, "link", "set", f"{namespace}-v", "master", "br0", "up")
            self._ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
            self._ip("-n", namespace, "link", "set", "eth0", "up")
            self._ip("-n", namespace, "link", "set", "lo", "up")
            entries.append(f"{address} {host}")
        self._folder = tempfile.TemporaryDirectory(prefix="standin-hosts-")
        self.hosts_file = Path(self._folder.name) / "hosts"
        self.hosts_file.write_text("\n".join(entries) + "\n")
        return self

    def __exit__(self, *exc) -> None:
        if len(self.hosts) == 1:
            return
        for namespace in [*self.names.values(), self.switch]:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        if self._folder:
            self._folder.cleanup()


class CheckpointSync:
    """SageMaker's checkpoint upload: in the background, new and changed files go up in no set
    order, deleted files are deleted in S3 too."""

    def __init__(self, s3, checkpoint_config: dict, opt_ml: Path) -> None:
        self.s3 = s3
        self.uri = checkpoint_config.get("S3Uri")
        self.folder = opt_ml / "checkpoints"
        self.uploaded: dict[str, float] = {p: 0.0 for p in self._files()}  # restored ones
        for relative in self.uploaded:
            self.uploaded[relative] = (self.folder / relative).stat().st_mtime
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _files(self) -> list[str]:
        return [
            str(path.relative_to(self.folder)) for path in self.folder.rglob("*") if path.is_file()
        ]

    def start(self) -> None:
        if self.uri:
            self._thread.start()

    def stop(self, flush: bool) -> None:
        if not self.uri:
            return
        self._stop.set()
        self._thread.join(timeout=60)
        if flush:
            self.sync_once(shuffle=False)

    def _loop(self) -> None:
        while not self._stop.wait(SYNC_SECONDS):
            self.sync_once(shuffle=True)

    def sync_once(self, shuffle: bool) -> None:
        bucket, prefix = split_s3_uri(self.uri)
        present = self._files()
        changed = []
        for relative in present:
            try:
                mtime = (self.folder / relative).stat().st_mtime
            except FileNotFoundError:
                continue
            if self.uploaded.get(relative) != mtime:
                changed.append((relative, mtime))
        if shuffle:
            random.shuffle(changed)
        for relative, mtime in changed:
            try:
                # One read, then the upload: a file the job rewrites meanwhile may go up torn, as
                # it could on SageMaker, but never with a checksum of other bytes than it holds
                # (S3 would refuse that upload; moto stores it and the restore then fails).
                snapshot = io.BytesIO((self.folder / relative).read_bytes())
            except OSError:
                continue  # replaced meanwhile: the next round takes the new one
            self.s3.upload_fileobj(snapshot, bucket, prefix + relative)
            self.uploaded[relative] = mtime
        for relative in set(self.uploaded) - set(present):
            self.s3.delete_object(Bucket=bucket, Key=prefix + relative)
            del self.uploaded[relative]


def check_can_run() -> None:
    if shutil.which("unshare") is None or not sys.platform.startswith("linux"):
        raise RuntimeError("the SageMaker stand-in needs Linux and `unshare` (util-linux)")
