"""The Docker client over dial-stdio channels (gitkube.nodes.transport.docker_api), each channel here one end of a
local socket pair whose other end plays the engine: a read-only call whose channel closes before it answers is
asked again once, on a new channel; a call that changes something, or one that timed out, is not."""
from __future__ import annotations

import socket
import threading
from types import SimpleNamespace

import pytest

from gitkube.nodes.transport.docker_api import DockerUnavailable, NodeDocker


class FakeSSH:
    """exec_channel gives a socket whose peer acts out the next behaviour: "drop" (read the request, close),
    "ok" (answer 200 with a JSON list), "hang" (read the request, never answer)."""

    def __init__(self, *behaviours: str):
        self.target = SimpleNamespace(name="n1", user="root")
        self.behaviours = list(behaviours)
        self.opened = 0
        self.connected = True
        self._keep: list[socket.socket] = []

    def exec_channel(self, argv, timeout=None):
        ours, theirs = socket.socketpair()
        what = self.behaviours.pop(0) if self.behaviours else "ok"
        self.opened += 1
        self._keep.append(theirs)
        threading.Thread(target=self._serve, args=(theirs, what), daemon=True).start()
        return ours

    @staticmethod
    def _serve(sock: socket.socket, what: str) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return
            data += chunk
        if what == "drop":
            sock.close()
        elif what == "ok":
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n[]")

    def close(self) -> None:
        self.connected = False


def test_a_read_whose_channel_dropped_is_asked_again_on_a_new_channel():
    ssh = FakeSSH("drop", "ok")
    assert NodeDocker(ssh, timeout=5).list(["io.gitkube.managed=true"]) == []
    assert ssh.opened == 2 and ssh.connected  # the connection itself is kept


def test_a_read_is_retried_once_only():
    ssh = FakeSSH("drop", "drop", "ok")
    with pytest.raises(DockerUnavailable):
        NodeDocker(ssh, timeout=5).list(["io.gitkube.managed=true"])
    assert ssh.opened == 2


def test_a_change_is_never_sent_twice():
    ssh = FakeSSH("drop", "ok")
    with pytest.raises(DockerUnavailable):
        NodeDocker(ssh, timeout=5).start("0123abcd")
    assert ssh.opened == 1


def test_a_timeout_is_not_retried():
    ssh = FakeSSH("hang", "ok")
    with pytest.raises(DockerUnavailable, match="timed out"):
        NodeDocker(ssh, timeout=0.3).list(["io.gitkube.managed=true"])
    assert ssh.opened == 1
