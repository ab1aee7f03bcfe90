"""Heartbeats of a node that does not answer: the first one waits the full timeout, later ones do not hold the
pass (its reconnect goes on in the background, one at a time). (A node that returns: tests/integration, cut/heal.)

The silent node is a loopback listener that accepts TCP and never speaks SSH, so the client waits for the banner
until its connect timeout, as with a host behind a dropped route."""
from __future__ import annotations

import socket
import threading
import time
from dataclasses import replace

import pytest

from gitkube.nodes.transport.fleet import Fleet
from gitkube.nodes.inventory import NodeConfig

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHc0V1d2Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1"


class Silent:
    """Accepts connections and says nothing; counts them."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(c)

    def close(self):
        self.sock.close()
        for c in self.accepted:
            c.close()


@pytest.fixture
def silent():
    s = Silent()
    yield s
    s.close()


def fleet_for(port: int, tmp_path, connect_timeout: float) -> Fleet:
    n = NodeConfig(name="quiet", host="127.0.0.1", port=port, user="root", identity_file=str(tmp_path / "unused"),
                   host_keys=(KEY,), labels={}, capacity=None, pod_cidr=None, docker_host=None, unschedulable=False)
    f = Fleet([n])
    ssh = f.nodes["quiet"].ssh
    ssh.target = replace(ssh.target, connect_timeout=connect_timeout)
    return f


def test_a_silent_node_holds_only_the_first_heartbeat(silent, tmp_path):
    f = fleet_for(silent.sock.getsockname()[1], tmp_path, connect_timeout=2.0)
    try:
        t = time.monotonic()
        r = f.probe(timeout=6.0, down_timeout=0.3)["quiet"]
        first = time.monotonic() - t
        assert not r.ok and r.reason == "NodeUnreachable" and 1.8 < first < 5.0, (r, first)
        # Known down: the next heartbeats answer within down_timeout while one reconnect attempt runs.
        times = []
        for _ in range(3):
            t = time.monotonic()
            r = f.probe(timeout=6.0, down_timeout=0.3)["quiet"]
            times.append(time.monotonic() - t)
            assert not r.ok and r.reason == "NodeUnreachable", r
        assert max(times) < 1.0, times
        assert len(silent.accepted) == 2, len(silent.accepted)  # the first attempt, then one at a time
    finally:
        f.close()
