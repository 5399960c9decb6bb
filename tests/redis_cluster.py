"""A real three-master Redis Cluster on loopback ports, from Debian's
redis-server: each node in a directory of its own, joined with
`redis-cli --cluster create`, stopped (and its files removed) afterwards."""

from __future__ import annotations

import functools
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

MASTERS = 3


class ClusterFailed(Exception):
    pass


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ports(count: int) -> list[int]:
    """Ports free both for clients and for the cluster bus (port + 10000)."""
    ports: list[int] = []
    for _ in range(200):
        port = random.randrange(20000, 55000)
        if port in ports or port + 10000 in ports:
            continue
        if _free(port) and _free(port + 10000):
            ports.append(port)
            if len(ports) == count:
                return ports
    raise ClusterFailed("no free loopback ports for a Redis Cluster")


def _cli(*args: str, timeout: float = 30) -> str:
    binary = shutil.which("redis-cli")
    if binary is None:
        raise ClusterFailed("redis-cli is not installed (scripts/test installs redis-server)")
    done = subprocess.run(
        [binary, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise ClusterFailed(f"redis-cli {' '.join(args)}: {done.stdout}{done.stderr}")
    return done.stdout


def _pong(port: int) -> bool:
    return _cli("-p", str(port), "ping").strip() == "PONG"


def _state_ok(port: int) -> bool:
    return "cluster_state:ok" in _cli("-p", str(port), "cluster", "info")


@dataclass
class RedisCluster:
    directory: Path
    ports: list[int] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        """Any node is a seed: the client learns the rest from it."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> RedisCluster:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ClusterFailed("redis-server is not installed (scripts/test installs it)")
        self.ports = _ports(MASTERS)
        for port in self.ports:
            node = self.directory / str(port)
            node.mkdir(parents=True, exist_ok=True)
            options = {
                "port": str(port),
                "bind": "127.0.0.1",
                "dir": str(node),
                "cluster-enabled": "yes",
                "cluster-config-file": "nodes.conf",
                "cluster-node-timeout": "2000",
                "save": "",
                "appendonly": "no",
            }
            argv = [binary]
            for name, value in options.items():
                argv += [f"--{name}", value]
            self.processes.append(
                subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        try:
            for port in self.ports:
                self._until(functools.partial(_pong, port))
            nodes = [f"127.0.0.1:{p}" for p in self.ports]
            _cli("--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes")
            for port in self.ports:
                self._until(functools.partial(_state_ok, port))
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        self.processes.clear()
        shutil.rmtree(self.directory, ignore_errors=True)

    @staticmethod
    def _until(ready: Callable[[], bool], seconds: float = 20) -> None:
        deadline = time.monotonic() + seconds
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                if ready():
                    return
            except ClusterFailed as exc:
                last = exc
            time.sleep(0.1)
        raise ClusterFailed(f"the Redis Cluster did not come up: {last}")
