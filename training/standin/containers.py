"""One training container: the image's environment and entrypoint, ``/opt/ml`` mapped to a host's
volume, SageMaker's own variables, and nothing else from the workstation.

How ``/opt/ml`` maps to the run folder: each container runs in its own mount namespace
(``unshare --mount``; Linux, as root or with unprivileged user namespaces), where a private tmpfs
covers ``/opt`` (its entries bound back in), the host's volume is bind-mounted at ``/opt/ml`` and a
hosts file naming algo-1…N at ``/etc/hosts``. The container's processes see SageMaker's paths;
nothing changes on the host. The "image" is a Python environment of this project: ``.venv-compat``
(TF 2.12, Keras 2, with AWS's toolkits at the versions of the TF 2.11 image) for TF 2.11 images,
``.venv`` otherwise.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# What AWS's TensorFlow training images set (the ENV lines of their Dockerfiles) that a job can
# notice. PATH puts the stand-in's image environment first; HOME is a fresh folder per container.
IMAGE_ENVIRONMENT = {
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
    "PYTHONIOENCODING": "UTF-8",
    # The image's toolkit (sagemaker-training) hands the job to AWS's TensorFlow toolkit.
    "SAGEMAKER_TRAINING_MODULE": "sagemaker_tensorflow_container.training:main",
}
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# SageMaker starts a container as `docker run <image> train`; in AWS's framework images `train`
# is the sagemaker-training toolkit's command. A request's ContainerEntrypoint replaces it.
DEFAULT_COMMAND = ["train"]
MOUNT_SCRIPT = r"""
set -e
opt_ml=$1 hosts=$2
shift 2
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
mount --bind "$opt_ml" /opt/ml
mount --bind "$hosts" /etc/hosts
exec "$@"
"""


def image_bin(image: str) -> Path:
    """The environment that plays the image: Keras 2 for the P2 image's TF 2.11, else Keras 3."""
    venv = ".venv-compat" if ":2.11-" in image else ".venv"
    return REPO / venv / "bin"


def command_of(algorithm: dict) -> list[str]:
    """What the container runs: the request's entrypoint and arguments, else the image's own."""
    command = list(algorithm.get("ContainerEntrypoint") or []) + list(
        algorithm.get("ContainerArguments") or []
    )
    return command or list(DEFAULT_COMMAND)


def environment(image: str, home: Path, sagemaker: dict[str, str]) -> dict[str, str]:
    """The image's variables, then SageMaker's (job name and ARN, region, the execution role's
    credentials, the request's Environment, the emulator's endpoint), and nothing else: a job
    that leaned on a workstation variable would pass the rehearsal and fail on AWS."""
    home.mkdir(parents=True, exist_ok=True)
    return {
        **IMAGE_ENVIRONMENT,
        "PATH": f"{image_bin(image)}{os.pathsep}{SYSTEM_PATH}",
        "HOME": str(home.resolve()),
        **sagemaker,
    }


def start(
    command: list[str],
    env: dict[str, str],
    opt_ml: Path,
    hosts_file: Path,
    namespace: str | None = None,
) -> subprocess.Popen:
    """Starts the container's first process (output on a pipe, its own process group). The
    wrappers exec into it, so a signal to the Popen reaches the entrypoint, as SageMaker's do."""
    wrapper = ["unshare", "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        wrapper[1:1] = ["--user", "--map-root-user"]
    if namespace:
        wrapper = ["ip", "netns", "exec", namespace, *wrapper]
    return subprocess.Popen(
        [
            *wrapper,
            "bash",
            "-c",
            MOUNT_SCRIPT,
            "container",
            str(opt_ml.resolve()),
            str(hosts_file),
            *command,
        ],  # fmt: skip
        env=env,
        cwd="/",  # the images' WORKDIR
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def check_can_run() -> None:
    if shutil.which("unshare") is None or not sys.platform.startswith("linux"):
        raise RuntimeError("the SageMaker stand-in needs Linux and `unshare` (util-linux)")
