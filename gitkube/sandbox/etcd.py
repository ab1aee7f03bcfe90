"""A throwaway etcd cluster on loopback for tests and benches: N members of Debian's `etcd` (3.4), each with its
own data dir, client and peer port; started together, stopped (or paused) one at a time, removed with its dirs."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"


@dataclass
class EtcdCluster:
    """`EtcdCluster(tmp_dir, size=3).start()`; `.url` is gitkube's --store value; `.stop()` kills every member."""

    base: Path
    size: int = 3
    members: list[Member] = field(default_factory=list)

    def __post_init__(self):
        self.base = Path(self.base)
        ports = _free_ports(2 * self.size)
        self.members = [Member(f"m{i}", ports[2 * i], ports[2 * i + 1], self.base / f"m{i}")
                        for i in range(self.size)]

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    def url(self, prefix: str = "") -> str:
        """The `--store` value naming every member (and a key prefix when given)."""
        return "etcd://" + ",".join(self.endpoints) + (f"/{prefix}" if prefix else "")

    def start(self, timeout: float = 60) -> EtcdCluster:
        if not shutil.which("etcd"):
            raise RuntimeError("etcd is not installed (Debian's etcd-server; scripts/setup.sh installs it)")
        for m in self.members:
            self._spawn(m, "new")
        self.wait_healthy(timeout)
        return self

    def _spawn(self, m: Member, state: str) -> None:
        m.data_dir.mkdir(parents=True, exist_ok=True)
        initial = ",".join(f"{o.name}=http://127.0.0.1:{o.peer_port}" for o in self.members)
        log = open(self.base / f"{m.name}.log", "ab")
        m.proc = subprocess.Popen(
            ["etcd", "--name", m.name, "--data-dir", str(m.data_dir),
             "--listen-client-urls", f"http://127.0.0.1:{m.client_port}",
             "--advertise-client-urls", f"http://127.0.0.1:{m.client_port}",
             "--listen-peer-urls", f"http://127.0.0.1:{m.peer_port}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{m.peer_port}",
             "--initial-cluster", initial, "--initial-cluster-state", state,
             "--initial-cluster-token", f"gitkube-test-{os.getpid()}-{self.members[0].client_port}",
             "--logger", "zap", "--log-level", "warn", "--log-outputs", "stderr"],
            stdout=log, stderr=log, start_new_session=True)
        log.close()

    def healthy(self, m: Member) -> bool:
        try:
            with urllib.request.urlopen(f"http://{m.endpoint}/health", timeout=2) as r:
                return b'"true"' in r.read()
        except OSError:
            return False

    def wait_healthy(self, timeout: float = 60, members: list[Member] | None = None) -> None:
        deadline = time.monotonic() + timeout
        for m in members or [x for x in self.members if x.proc is not None]:
            while not self.healthy(m):
                if m.proc is not None and m.proc.poll() is not None:
                    raise RuntimeError(f"etcd member {m.name} exited {m.proc.returncode}: "
                                       f"{(self.base / f'{m.name}.log').read_text()[-2000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"etcd member {m.name} not healthy within {timeout}s")
                time.sleep(0.2)

    def stop_member(self, i: int) -> None:
        """Stops one member (SIGTERM, then SIGKILL); its data stays for restart_member."""
        m = self.members[i]
        if m.proc is not None and m.proc.poll() is None:
            m.proc.terminate()
            try:
                m.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                m.proc.kill()
                m.proc.wait(timeout=10)
        m.proc = None

    def restart_member(self, i: int, timeout: float = 60) -> None:
        m = self.members[i]
        self._spawn(m, "existing")
        self.wait_healthy(timeout, [m])

    def stop(self) -> None:
        """Kills every member and removes their data dirs."""
        for m in self.members:
            if m.proc is not None and m.proc.poll() is None:
                try:
                    os.killpg(m.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                m.proc.wait(timeout=10)
            m.proc = None
            shutil.rmtree(m.data_dir, ignore_errors=True)

    def __enter__(self) -> EtcdCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
