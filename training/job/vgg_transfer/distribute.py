"""Chooses the tf.distribute strategy from the environment: CPU, one GPU, several GPUs on one
host (MirroredStrategy) or several hosts (MultiWorkerMirroredStrategy), overridable by the
``distribution`` hyperparameter.
"""

import json
import os
import sys
import time
from typing import Optional

import tensorflow as tf

from vgg_transfer import contract

WORKER_PORT = 2222  # port of the collective-ops server on each SageMaker host


class DistributionError(contract.JobError, ValueError):
    """A distribution setting this host cannot give (no GPU, no second host)."""


def tf_config_from_sagemaker(environ: dict[str, str]) -> Optional[dict]:
    """TF_CONFIG for a multi-host SageMaker job, built from SM_HOSTS and SM_CURRENT_HOST."""
    hosts = json.loads(environ.get("SM_HOSTS", "[]"))
    current = environ.get("SM_CURRENT_HOST")
    if len(hosts) < 2 or current not in hosts:
        return None
    hosts = sorted(hosts)  # algo-1 is the chief on every host
    return {
        "cluster": {"worker": [f"{host}:{WORKER_PORT}" for host in hosts]},
        "task": {"type": "worker", "index": hosts.index(current)},
    }


def worker_count(tf_config: Optional[dict]) -> int:
    if not tf_config:
        return 1
    return sum(len(v) for k, v in tf_config.get("cluster", {}).items() if k in ("worker", "chief"))


def is_chief(tf_config: Optional[dict]) -> bool:
    if not tf_config:
        return True
    task = tf_config.get("task", {})
    if "chief" in tf_config.get("cluster", {}):
        return task.get("type") == "chief"
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0


def resolve_tf_config(environ: dict[str, str]) -> Optional[dict]:
    if environ.get("TF_CONFIG"):
        return json.loads(environ["TF_CONFIG"])
    return tf_config_from_sagemaker(environ)


def device_names() -> list:
    """What trains: each GPU's model name (e.g. "NVIDIA A10G"), or ["CPU"] when there is none."""
    names = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        names.append(details.get("device_name", gpu.name))
    return names or ["CPU"]


def worker_shard() -> tuple[int, int]:
    """(number of workers, this worker's index) for sharding the input; (1, 0) on one host."""
    tf_config = resolve_tf_config(dict(os.environ))
    if worker_count(tf_config) < 2:
        return 1, 0
    task = tf_config.get("task", {})
    cluster = tf_config.get("cluster", {})
    # Chief first, then workers in order: the same numbering on every host.
    order = [("chief", i) for i in range(len(cluster.get("chief", [])))] + [
        ("worker", i) for i in range(len(cluster.get("worker", [])))
    ]
    return len(order), order.index((task.get("type"), int(task.get("index", 0))))


FINISH_BARRIER = "vgg_transfer/finished"
FINISH_TIMEOUT_MS = 30 * 60 * 1000  # the chief saves the model meanwhile


CHIEF_LINGER_SECONDS = 2.0  # after the barrier, time for the others' answers to reach them


def finish_together(workers: int, is_chief: bool) -> None:
    """Several hosts: wait until every worker has finished, then end the process at once.

    The coordination service runs in the chief's process. Whichever process exits first, TF's
    teardown in the other keeps sending heartbeats to a peer that has gone and exits only when
    they time out: 10-20 s between two local processes, 1-2 min between rehearsed hosts, billed
    on every instance. So all workers meet at a barrier after the chief has written its outputs,
    and then leave without that teardown (nothing is left to flush but stdout and stderr). The
    chief lingers a moment, so that every worker's barrier call gets its answer before the
    service goes; a worker that loses the chief at the barrier anyway has finished its own work
    (measured under load: the answer could lose the race with the chief's exit)."""
    if workers < 2:
        return
    from tensorflow.python.eager import context

    try:
        context.context().wait_at_barrier(FINISH_BARRIER, FINISH_TIMEOUT_MS)
    except tf.errors.UnavailableError:
        if is_chief:
            raise
        print("[done] the chief left the final barrier first; this worker's part is done",
              flush=True)  # fmt: skip
    if is_chief:
        time.sleep(CHIEF_LINGER_SECONDS)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def keras_major() -> int:
    import keras  # the package behind tf.keras: 2.x up to TF 2.15, 3.x from TF 2.16

    return int(keras.__version__.split(".")[0])


def choose_strategy(distribution: str) -> tuple[tf.distribute.Strategy, bool, str]:
    """Returns (strategy, is_chief, description). Call before any other TensorFlow work."""
    tf_config = resolve_tf_config(dict(os.environ))
    gpus = tf.config.list_physical_devices("GPU")
    if distribution == "auto":
        if worker_count(tf_config) > 1:
            distribution = "multi_worker"
        elif len(gpus) > 1:
            distribution = "mirrored"
        elif gpus:
            distribution = "gpu"
        else:
            distribution = "cpu"
    if distribution == "multi_worker":
        if not tf_config:
            raise DistributionError(
                "distribution=multi_worker needs TF_CONFIG or SM_HOSTS with two or more hosts"
            )
        os.environ["TF_CONFIG"] = json.dumps(tf_config)
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        if keras_major() >= 3:
            strategy = reduce_like_mirrored(strategy)
        return strategy, is_chief(tf_config), f"multi_worker x{worker_count(tf_config)}"
    if distribution == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
        return strategy, True, f"mirrored x{strategy.num_replicas_in_sync}"
    if distribution == "gpu":
        if not gpus:
            raise DistributionError("distribution=gpu but TensorFlow sees no GPU")
        return tf.distribute.OneDeviceStrategy("/gpu:0"), True, "one GPU"
    return tf.distribute.OneDeviceStrategy("/cpu:0"), True, "CPU"


def _rank(value) -> int:
    values = getattr(value, "values", None)  # a PerReplica holds one tensor per local replica
    return (values[0] if values else value).shape.rank


def reduce_like_mirrored(strategy: tf.distribute.Strategy) -> tf.distribute.Strategy:
    """Keras 3's fit() calls ``strategy.reduce`` in two ways MultiWorkerMirroredStrategy rejects
    (Keras 2 makes neither call, so the TF 2.11 image never needs this):
    - on the whole (images, labels) batch, to build the model: a structure, not one value;
    - with ``axis=0`` on each step's scalar loss and metrics, meaning the mean over replicas.
    Reducing element by element, and scalars over replicas only, is what MirroredStrategy does.
    """
    reduce_one = strategy.reduce

    def reduce(reduce_op, value, axis=None):
        def one(item):
            return reduce_one(reduce_op, item, None if _rank(item) == 0 else axis)

        return tf.nest.map_structure(one, value)

    strategy.reduce = reduce
    return strategy
