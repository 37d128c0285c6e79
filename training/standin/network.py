"""The hosts of one training job: algo-1 … algo-N, each reachable by its name, as on SageMaker.

One instance: an ``/etc/hosts`` that names ``algo-1`` (AWS's container toolkit waits until the
host names resolve before it starts the script). Several: a network namespace per host, linked
by a bridge in a switch namespace, so each host's workers can bind the same fixed port and reach
the others by name (root only)."""

import os
import shutil
import subprocess
import tempfile
import zlib
from pathlib import Path


class HostNetwork:
    def __init__(self, job: str, hosts: list[str]) -> None:
        self.hosts = hosts
        tag = f"{zlib.crc32(job.encode()) % 100000:05d}"
        self.switch = f"sm{tag}-sw"
        self.names = {host: f"sm{tag}-{i}" for i, host in enumerate(hosts, 1)}
        self.subnet = f"10.213.{zlib.crc32(job.encode()) % 250}"
        self.hosts_file: Path | None = None
        self._folder: tempfile.TemporaryDirectory | None = None

    @property
    def several(self) -> bool:
        return len(self.hosts) > 1

    def namespace(self, host: str) -> str | None:
        return self.names[host] if self.several else None

    @staticmethod
    def _ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, text=True)

    def __enter__(self) -> "HostNetwork":
        entries = ["127.0.0.1 localhost"]
        if self.several:
            entries += self._link_hosts()
        else:
            entries[0] += f" {self.hosts[0]}"
        self._folder = tempfile.TemporaryDirectory(prefix="standin-hosts-")
        self.hosts_file = Path(self._folder.name) / "hosts"
        self.hosts_file.write_text("\n".join(entries) + "\n")
        return self

    def _link_hosts(self) -> list[str]:
        if os.geteuid() != 0 or shutil.which("ip") is None:
            raise RuntimeError(
                "rehearsing several instances needs root and iproute2 (a network namespace per "
                "host); rehearse with INSTANCE_COUNT=1"
            )
        self._ip("netns", "add", self.switch)
        self._ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        self._ip("-n", self.switch, "link", "set", "br0", "up")
        entries = []
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
        return entries

    def __exit__(self, *exc) -> None:
        if self.several:
            for namespace in [*self.names.values(), self.switch]:
                subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        if self._folder:
            self._folder.cleanup()
