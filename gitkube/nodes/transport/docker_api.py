"""The one Docker seam: the docker SDK's APIClient speaking to a node's engine through `docker system dial-stdio`
channels of that node's warm SSH connection. Nothing else in gitkube imports the docker SDK."""
from __future__ import annotations

import logging
import threading
import time

import docker
import requests.adapters
import urllib3.connection
import urllib3.connectionpool
import urllib3.exceptions
import urllib3.util
from docker.errors import APIError, ImageNotFound, NotFound  # re-exported for the runtime

from gitkube import instruments
from gitkube.nodes.transport.ssh import SSHConnection, SSHError

log = logging.getLogger(__name__)

__all__ = ["NodeDocker", "APIError", "NotFound", "ImageNotFound", "DockerUnavailable"]

# The engine API version gitkube speaks: Docker 20.10 (Debian bookworm's docker.io) and newer.
API_VERSION = "1.41"
# Prefix the docker SDK recognises as SSH, so attach/exec streams are read from the paramiko channel.
BASE_URL = "http+docker://ssh-gitkube"


class DockerUnavailable(Exception):
    """The node answered SSH but its Docker engine did not; the message says what to check."""


class _ChannelHTTPConnection(urllib3.connection.HTTPConnection):
    def __init__(self, ssh: SSHConnection, dial: list[str], timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._ssh = ssh
        self._dial = dial
        self._timeout = timeout

    def connect(self):
        chan = self._ssh.exec_channel(self._dial)
        chan.settimeout(self._timeout)
        self.sock = chan


class _ChannelPool(urllib3.connectionpool.HTTPConnectionPool):
    def __init__(self, ssh: SSHConnection, dial: list[str], timeout: float, maxsize: int):
        super().__init__("localhost", timeout=timeout, maxsize=maxsize, block=False)
        self._ssh, self._dial, self._t = ssh, dial, timeout

    def _new_conn(self):
        return _ChannelHTTPConnection(self._ssh, self._dial, self._t)


class _RetryDropped(urllib3.util.Retry):
    """Ask again, once, when a read-only request's channel closed before it answered (its `docker system
    dial-stdio` ended: seen on the sandbox now and then, e.g. right after a heartbeat on the same channel). Never
    a timeout (a slow engine is not asked twice), never a request that changes something (POST: urllib3's
    default allowed methods)."""

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        if isinstance(error, urllib3.exceptions.ReadTimeoutError):
            raise error
        return super().increment(method, url, response, error, _pool, _stacktrace)


# One retry, of the dropped-channel kind only (no connect, redirect or status retries).
DROPPED_RETRY = _RetryDropped(total=1, connect=0, read=1, redirect=0, status=0, other=0, raise_on_status=False)


class _ChannelAdapter(requests.adapters.HTTPAdapter):
    """Routes every request of one APIClient over dial-stdio channels of one SSH connection."""

    def __init__(self, ssh: SSHConnection, dial: list[str], timeout: float, maxsize: int = 8):
        self._pool = _ChannelPool(ssh, dial, timeout, maxsize)
        super().__init__(max_retries=DROPPED_RETRY)

    def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):
        return self._pool

    def get_connection(self, url, proxies=None):
        return self._pool

    def request_url(self, request, proxies):
        return request.path_url

    def close(self):
        self._pool.close()


# Container events that change what a list shows (state, existence); exec_*, attach, copy, top... do not.
STATE_EVENTS = ("create", "start", "restart", "die", "kill", "oom", "stop", "pause", "unpause", "destroy", "rename",
                "update")


class ContainerEvents:
    """The engine's event stream for containers carrying `labels` (GET /events, one long-lived dial-stdio channel),
    read by a daemon thread: `token()` stays the same while no such container changed state, and is None while no
    stream is open (not yet, or it broke: it is reopened with a growing pause). The kubelet's evented PLEG, here so
    that a pass re-lists a node only when something happened on it."""

    def __init__(self, docker: NodeDocker, labels: list[str]):
        self._docker, self._labels = docker, labels
        self._lock = threading.Lock()
        self._gen = 0
        self._live = False
        self._closed = False
        self._resp = None
        self._t = threading.Thread(target=self._run, name=f"events-{docker.ssh.target.name}", daemon=True)
        self._t.start()

    def token(self) -> int | None:
        with self._lock:
            return self._gen if self._live else None

    def _bump(self, live: bool) -> None:
        with self._lock:
            self._gen += 1
            self._live = live and not self._closed

    def _run(self) -> None:
        pause = 1.0
        api = self._docker.stream_client()
        while not self._closed:
            try:
                stream = api.events(decode=True, filters={"type": ["container"], "label": self._labels,
                                                          "event": list(STATE_EVENTS)})
                self._resp = stream
                self._bump(True)  # a new stream: what happened before it is unknown, so the next look lists
                pause = 1.0
                for _ev in stream:
                    self._bump(True)
            except Exception as e:  # noqa: BLE001 - a broken stream only costs lists until it is back
                log.debug("node %s: container events: %s", self._docker.ssh.target.name, e)
                pause = min(pause * 2, 30.0)
            finally:
                self._bump(False)
            time.sleep(pause)
        api.close()

    def close(self) -> None:
        self._closed = True
        self._bump(False)
        resp = self._resp
        if resp is not None:
            try:
                resp._response.close()
            except Exception:  # noqa: BLE001 - the SSH connection's close ends it anyway
                pass


class NodeDocker:
    """A node's Docker engine over its SSH connection: a docker SDK APIClient plus a call counter."""

    def __init__(self, ssh: SSHConnection, docker_host: str | None = None, timeout: float = 30.0):
        self.ssh = ssh
        self._dial = ["docker"] + (["-H", docker_host] if docker_host else []) + ["system", "dial-stdio"]
        self.api = self._client(timeout, maxsize=8)
        self.calls = 0
        self.mutations = 0  # container-changing calls made through this client (see change_token)
        self._events: ContainerEvents | None = None
        self._lock = threading.Lock()
        self.api.hooks["response"].append(self._count)

    def _client(self, timeout: float | None, maxsize: int) -> docker.APIClient:
        """An SDK client whose requests go over dial-stdio channels of this node's SSH connection (pooled)."""
        api = docker.APIClient(base_url="tcp://127.0.0.1:1", version=API_VERSION, timeout=timeout)
        api.mount(BASE_URL, _ChannelAdapter(self.ssh, self._dial, timeout, maxsize))
        api.base_url = BASE_URL
        return api

    def stream_client(self) -> docker.APIClient:
        """A client of its own for a long-lived stream (events): it holds its channel without taking one of the
        pool the node's calls share. Room for two: a stream that broke hands its channel back after the next one
        opened (with room for one, urllib3 warned "Connection pool is full" on apply's stderr)."""
        return self._client(None, maxsize=2)

    def change_token(self, labels: list[str]) -> tuple[int, int] | None:
        """A value that stays equal while no container with `labels` changed on the engine: its event stream's
        count (started on first use) and this client's own container-changing calls; None while that cannot be
        told (the stream is not open)."""
        if self._events is None:
            self._events = ContainerEvents(self, labels)
        tok = self._events.token()
        return None if tok is None else (tok, self.mutations)

    def watching(self) -> bool:
        """Whether this engine's container event stream is open (a broken one is the first sign of a lost node)."""
        return self._events is not None and self._events.token() is not None

    def _mutate(self, fn, *args, **kwargs):
        """A container-changing call, counted as it starts and as it ends: a token read while it runs matches
        neither the one before nor the one after, so no list made meanwhile is kept."""
        with self._lock:
            self.mutations += 1
        try:
            return self.call(fn, *args, **kwargs)
        finally:
            with self._lock:
                self.mutations += 1

    def _count(self, r, *a, **k):
        with self._lock:
            self.calls += 1
        instruments.docker_call(self.ssh.target.name)
        return r

    def call(self, fn, *args, **kwargs):
        """Run one SDK call, turning transport failures into DockerUnavailable/SSHError with advice."""
        try:
            return fn(*args, **kwargs)
        except (SSHError, docker.errors.DockerException):
            raise  # API answers (404, 409...) are the caller's business; only transport failures are ours
        except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError, OSError) as e:
            if not self.ssh.connected:
                self.ssh.close()  # the transport is gone: the next call reconnects
            # else one channel failed (its dial-stdio ended): the node's other calls on the same connection go on.
            raise DockerUnavailable(
                f"node {self.ssh.target.name}: Docker engine not reachable through `docker system dial-stdio` "
                f"({e}); check that dockerd runs and {self.ssh.target.user} may use it (docker group)"
            ) from e
        except requests.exceptions.ReadTimeout as e:
            raise DockerUnavailable(f"node {self.ssh.target.name}: Docker engine timed out: {e}") from e

    def stats_once(self, container_id: str) -> dict:
        """One stats reading of a container (GET /containers/{id}/stats?stream=false&one-shot=true): cumulative CPU
        time and memory now, without the engine's one-second wait for a second reading. The Engine API has no bulk
        stats endpoint, so a node's usage is one such call per container; callers reuse this client's pooled
        dial-stdio channels (one SSH connection per node) and bound their concurrency."""
        return self.call(self.api.stats, container_id, stream=False, one_shot=True)

    # -- gitkube's verbs: the only Docker operations the rest of gitkube uses (a FakeNode offers the same) ------
    def info(self) -> dict:
        return self.call(self.api.info)

    def version(self) -> dict:
        return self.call(self.api.version)

    def ping(self) -> bool:
        """GET /_ping: the cheapest proof that the engine answers (a heartbeat)."""
        return self.call(self.api.ping)

    def list(self, labels: list[str] | str, running: bool = False) -> list[dict]:
        """Containers (running or not; only running ones with `running`) carrying every given label filter."""
        if running:
            return self.call(self.api.containers, filters={"label": labels, "status": "running"})
        return self.call(self.api.containers, all=True, filters={"label": labels})

    def inspect(self, cid: str) -> dict:
        return self.call(self.api.inspect_container, cid)

    def create(self, image: str, *, name: str, labels: dict, host: dict, **config) -> str:
        """Create a container; `host` holds the HostConfig settings (network_mode, binds, port_bindings, ...)."""
        hc = self.api.create_host_config(**host)
        return self._mutate(self.api.create_container, image, name=name, labels=labels, host_config=hc, detach=True,
                         **config)["Id"]

    def start(self, cid: str) -> None:
        self._mutate(self.api.start, cid)

    def stop(self, cid: str, timeout: int) -> None:
        self._mutate(self.api.stop, cid, timeout=timeout)

    def kill(self, cid: str, signal: str) -> None:
        self._mutate(self.api.kill, cid, signal=signal)

    def restart(self, cid: str, timeout: int = 1) -> None:
        self._mutate(self.api.restart, cid, timeout=timeout)

    def wait(self, cid: str, timeout: float) -> dict:
        return self.call(self.api.wait, cid, timeout=timeout)

    def remove(self, cid: str) -> None:
        """Remove a container (forced: running ones are killed)."""
        self._mutate(self.api.remove_container, cid, force=True)

    def logs(self, cid: str, **kw):
        return self.call(self.api.logs, cid, **kw)

    def logs_stream(self, cid: str, **kw):
        """Follow a container's output (a generator: not bounded by the call timeout, since a quiet container is
        no error: it waits for the next line as long as it takes)."""
        self.api.timeout = None
        return self.api.logs(cid, stream=True, follow=True, **kw)

    def exec(self, cid: str, cmd: list[str]) -> tuple[int | None, bytes]:
        """Run a command in a container; its exit code and output."""
        ex = self.call(self.api.exec_create, cid, cmd, stdout=True, stderr=True)
        out = self.call(self.api.exec_start, ex["Id"])
        return self.call(self.api.exec_inspect, ex["Id"]).get("ExitCode"), out

    def exec_stream(self, cid: str, cmd: list[str]):
        """Start a command in a container with its output as a demultiplexed stream; returns (exec id, stream)."""
        ex = self.call(self.api.exec_create, cid, cmd, stdout=True, stderr=True)
        return ex["Id"], self.call(self.api.exec_start, ex["Id"], stream=True, demux=True)

    def exec_exit_code(self, exec_id: str) -> int | None:
        return self.call(self.api.exec_inspect, exec_id).get("ExitCode")

    def put_archive(self, cid: str, path: str, data: bytes) -> None:
        self.call(self.api.put_archive, cid, path, data)

    def archive_stat(self, cid: str, path: str) -> dict | None:
        """What Docker says of a path in a container (name, size, mode, linkTarget), None when it does not exist.
        The one-entry tar of the path is drained unread."""
        try:
            stream, stat = self.call(self.api.get_archive, cid, path)
        except NotFound:
            return None
        for _ in stream:
            pass
        return stat

    def get_archive(self, cid: str, path: str) -> bytes:
        stream, _ = self.call(self.api.get_archive, cid, path)
        return b"".join(stream)

    def image_id(self, ref: str) -> str | None:
        """The id of an image present on the node, None when absent."""
        try:
            return self.call(self.api.inspect_image, ref)["Id"]
        except (ImageNotFound, NotFound):
            return None

    def images(self) -> list[dict]:
        return self.call(self.api.images)

    def pull(self, ref: str) -> None:
        repo, _, tag = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "latest")
        self.call(self.api.pull, repo, tag=tag)

    def load_image(self, data: bytes) -> list:
        return list(self.call(self.api.load_image, data))

    def volume_exists(self, name: str) -> bool:
        try:
            self.call(self.api.inspect_volume, name)
            return True
        except NotFound:
            return False

    def create_volume(self, name: str, driver_opts: dict, labels: dict) -> None:
        self.call(self.api.create_volume, name, driver="local", driver_opts=driver_opts, labels=labels)

    def volumes(self, label: str) -> list[str]:
        return [v["Name"] for v in self.call(self.api.volumes, filters={"label": label}).get("Volumes") or []]

    def remove_volume(self, name: str) -> None:
        self.call(self.api.remove_volume, name, force=True)

    def close(self) -> None:
        if self._events is not None:
            self._events.close()
            self._events = None
        self.api.close()
