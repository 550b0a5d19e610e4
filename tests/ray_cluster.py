"""A two-node Ray cluster on this machine for the ``cluster`` tests (``make test-cluster``).

Each node is its own ``ray start --block`` process (a head, then a node joining its address),
with one CPU, its own temporary folder, free ports and token authentication on (Ray 2.60's
``ray start`` turns it on; a node joins only with ``RAY_AUTH_MODE=token`` and the cluster's
``RAY_AUTH_TOKEN``, which this test process also sets for its driver). Stopping sends SIGTERM to
exactly those two processes: ``ray start --block`` then stops the Ray processes it started
(GCS, raylet and their workers; measured: none is left, within two seconds); never ``ray stop``,
which stops every Ray on the machine.

Measured with Ray 2.60 on Linux: ``--node-ip-address 127.0.0.1`` is passed as asked, but Ray
advertises the host's reachable address instead (``services.resolve_ip_for_localhost``; the
switch that keeps loopback also refuses a second node) and the GCS and raylets listen on every
interface, so the token is what keeps other hosts out. The dashboard is off and the per-node
ports that have fixed defaults (client server 10001, dashboard agent 52365) get free ones, so a
test cluster never collides with a user's Ray.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

AUTH_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_command() -> list[str]:
    """The ``ray`` CLI run by the interpreter running the tests, as its console script does
    (whichever environment or path Ray was installed into)."""
    return [sys.executable, "-c", "import sys; from ray.scripts.scripts import main; "
                                  "sys.argv[0] = 'ray'; sys.exit(main())"]


@dataclass
class RayCluster:
    """The started cluster: its address, token and nodes' processes and folders."""

    address: str
    token: str
    processes: list[subprocess.Popen] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        """What a process needs in its environment to join (drivers and nodes alike)."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}

    @classmethod
    def start(cls, nodes: int = 2, cpus_per_node: int = 1) -> RayCluster:
        cluster = cls(address="", token=secrets.token_hex(32))
        try:
            port = free_port()
            cluster.address = f"127.0.0.1:{port}"
            for index in range(nodes):
                role = (["--head", "--port", str(port), "--include-dashboard", "false",
                         "--ray-client-server-port", str(free_port())] if index == 0
                        else ["--address", cluster.address])
                cluster._start_node(index, [*role, "--num-cpus", str(cpus_per_node),
                                            "--dashboard-agent-listen-port", str(free_port())])
                if index == 0:
                    cluster._wait_for_port(port)
            cluster.wait_for_nodes(nodes)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _start_node(self, index: int, args: list[str]) -> None:
        # Short folders: Ray's unix sockets live under them (108-byte path limit).
        folder = Path(tempfile.mkdtemp(prefix=f"sbr-ray{index}-"))
        self.folders.append(folder)
        log = folder / "ray_start.log"
        self.logs.append(log)
        env = {**{k: v for k, v in os.environ.items() if k not in AUTH_VARS}, **self.env,
               "RAY_USAGE_STATS_ENABLED": "0"}
        with open(log, "wb") as out:
            self.processes.append(subprocess.Popen(
                [*ray_command(), "start", "--block", "--node-ip-address", "127.0.0.1",
                 "--temp-dir", str(folder), "--disable-usage-stats", *args],
                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True))

    def _wait_for_port(self, port: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            self._check_running()
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.5)
        raise TimeoutError(f"the head's GCS did not listen on {port}: {self.tail()}")

    def _check_running(self) -> None:
        for process, log in zip(self.processes, self.logs):
            if process.poll() is not None:
                raise RuntimeError(f"`ray start` exited ({process.returncode}): "
                                   f"{log.read_text(errors='replace')[-2000:]}")

    def wait_for_nodes(self, count: int) -> None:
        """Block until ``count`` nodes are alive (queried through a short-lived driver)."""
        code = ("import json, ray; ray.init(address=%r, log_to_driver=False); "
                "print(json.dumps(sum(n['Alive'] for n in ray.nodes())))" % self.address)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            self._check_running()
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                  env={**os.environ, **self.env}, timeout=START_TIMEOUT_S)
            lines = done.stdout.split()
            if done.returncode == 0 and lines and int(lines[-1]) >= count:
                return
            time.sleep(1.0)
        raise TimeoutError(f"{count} nodes did not join: {self.tail()}")

    def tail(self) -> str:
        return " | ".join(log.read_text(errors="replace")[-500:] for log in self.logs
                          if log.is_file())

    def stop(self) -> None:
        """SIGTERM to the ``ray start --block`` processes started here, then their folders."""
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in reversed(self.processes):
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                # Its own session (start_new_session): the group holds what it started.
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for folder in self.folders:
            shutil.rmtree(folder, ignore_errors=True)
