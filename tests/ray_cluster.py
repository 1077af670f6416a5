"""A real Ray cluster of several nodes on one machine, for tests: a head and worker raylets, each started by its
own ``ray start --block`` in its own process group, each declaring its own resources, all stopped by the
process-group ids this module started (never ``ray stop``, which would end other people's Ray on the machine).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ray_cli() -> str:
    return str(Path(sys.executable).with_name("ray"))


@dataclass
class RayCluster:
    address: str
    logs: Path
    nodes: list[subprocess.Popen] = field(default_factory=list)

    def node_ids(self) -> dict[str, str]:
        """Alive nodes: node id -> the custom resource that names it (``cluster_node_<i>``)."""
        script = (
            "import json, sys, ray; ray.init(address=sys.argv[1], logging_level='ERROR', log_to_driver=False);"
            "print(json.dumps({n['NodeID']: [k for k in n['Resources'] if k.startswith('cluster_node_')][0]"
            " for n in ray.nodes() if n['Alive']}))"
        )
        command = [sys.executable, "-c", script, self.address]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"cannot list the cluster's nodes: {done.stderr[-2000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    def stop(self) -> None:
        for node in reversed(self.nodes):
            _stop_group(node)
        # `ray start --head` leaves the cluster's address in Ray's temp folder, and a later ray.init() without an
        # address would try to join it; `ray stop` would remove it, but ends every Ray on the machine.
        port = self.address.rsplit(":", 1)[1]
        marker = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        try:
            if marker.read_text().strip().endswith(f":{port}"):
                marker.unlink()
        except OSError:
            pass


def _stop_group(process: subprocess.Popen, grace_s: float = 20) -> None:
    """SIGTERM to the node's process group (``ray start --block`` then stops its raylet and children), then
    SIGKILL to what is left of it."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait(timeout=30)


def _start_node(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    ports = {
        "--node-manager-port": free_port(),
        "--object-manager-port": free_port(),
        "--dashboard-agent-listen-port": free_port(),
        "--dashboard-agent-grpc-port": free_port(),
        "--metrics-export-port": free_port(),
        "--runtime-env-agent-port": free_port(),
    }
    command = [_ray_cli(), "start", "--block", "--disable-usage-stats", *args]
    command += [f"{flag}={port}" for flag, port in ports.items()]
    with log.open("w") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


@contextmanager
def ray_cluster(
    work: Path, nodes: int = 2, cpus_per_node: int = 16, gpus_per_node: int = 1, env: dict[str, str] | None = None
) -> Iterator[RayCluster]:
    """``nodes`` raylets on this machine; yields once all are alive; stops every one of them on exit."""
    env = {**os.environ, **(env or {})}
    env.pop("RAY_ADDRESS", None)
    port = free_port()
    address = f"127.0.0.1:{port}"
    work.mkdir(parents=True, exist_ok=True)
    cluster = RayCluster(address=address, logs=work)
    common = ["--node-ip-address=127.0.0.1", f"--num-cpus={cpus_per_node}", f"--num-gpus={gpus_per_node}"]
    try:
        head = [*common, "--head", f"--port={port}", "--include-dashboard=false", '--resources={"cluster_node_0": 1}']
        cluster.nodes.append(_start_node(head, work / "node0.log", env))
        _wait_for(cluster, 1)
        for index in range(1, nodes):
            worker = [*common, f"--address={address}", f'--resources={{"cluster_node_{index}": 1}}']
            cluster.nodes.append(_start_node(worker, work / f"node{index}.log", env))
            _wait_for(cluster, index + 1)
        yield cluster
    finally:
        cluster.stop()


def _wait_for(cluster: RayCluster, count: int, timeout_s: float = 180) -> None:
    """Until the newest node says it started (its log), then until the cluster lists ``count`` alive nodes."""
    deadline = time.monotonic() + timeout_s
    log = cluster.logs / f"node{len(cluster.nodes) - 1}.log"
    while "Ray runtime started." not in log.read_text(errors="replace"):
        for node in cluster.nodes:
            if node.poll() is not None:
                raise RuntimeError(f"a Ray node exited ({node.returncode}); logs in {cluster.logs}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"Ray node {log.stem} did not start in {timeout_s} s; see {log}")
        time.sleep(0.5)
    while len(cluster.node_ids()) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} Ray node(s) not alive after {timeout_s} s; logs in {cluster.logs}")
        time.sleep(1)
