"""FakeNode: a node's Docker engine at gitkube's own seam (the verbs of gitkube.nodes.transport.docker_api.NodeDocker),
in memory, recording every call — as kopf's k8s_mocked and sample-controller's fake clientset do. FakeFleet is a
Fleet of FakeNodes: every node answers its heartbeat unless `down` names it."""
from __future__ import annotations

import concurrent.futures as cf
import itertools
import threading
import time
from dataclasses import dataclass, field

from gitkube.nodes.transport.docker_api import APIError, ImageNotFound, NotFound
from gitkube.nodes.transport.fleet import ProbeResult

_ids = itertools.count(1)


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1e9):09d}Z"


class _Response:
    status_code = 409


class FakeDocker:
    """One node's engine: containers, images, volumes; `calls` lists (verb, args) in order."""

    def __init__(self, name: str, images=("gitkube/pause:3", "gitkube/busybox:latest"), subnet: int = 1):
        self.name = name
        self.images = set(images)
        self.pullable: set[str] = set()
        self.containers: dict[str, dict] = {}
        self.volumes_: dict[str, dict] = {}
        self.log: list[tuple[str, tuple]] = []
        self.lock = threading.Lock()
        self._ip = itertools.count(2)
        self.subnet = subnet
        self.gen = 0  # container changes so far (the event stream's count, when enable_events() was called)

    @property
    def calls(self) -> int:
        return len(self.log)

    def _rec(self, verb: str, *args) -> None:
        with self.lock:
            self.log.append((verb, args))
            if verb in ("create", "start", "stop", "kill", "restart", "remove"):
                self.gen += 1

    def enable_events(self) -> None:
        """Offer NodeDocker's change token (its event stream, always open here): the runtime then lists only after
        a change."""
        self.change_token = lambda labels: self.gen
        self.watching = lambda: True

    def verbs(self, since: int = 0) -> list[str]:
        return [v for v, _ in self.log[since:]]

    def _get(self, ref: str) -> dict:
        c = self.containers.get(ref) or next((c for c in self.containers.values() if c["Name"] == ref), None)
        if c is None:
            raise NotFound(f"no such container: {ref}")
        return c

    # -- the verbs --------------------------------------------------------------------------------------------
    def info(self) -> dict:
        self._rec("info")
        return {"NCPU": 2, "MemTotal": 4 << 30, "OSType": "linux", "ServerVersion": "fake", "ID": self.name}

    def version(self) -> dict:
        self._rec("version")
        return {"Version": "fake", "Arch": "amd64"}

    def ping(self) -> bool:
        self._rec("ping")
        return True

    def list(self, labels, running: bool = False) -> list[dict]:
        self._rec("list", tuple(labels))
        want = [labels] if isinstance(labels, str) else list(labels)

        def ok(lab: dict) -> bool:
            for w in want:
                k, _, v = w.partition("=")
                if k not in lab or (v and lab[k] != v):
                    return False
            return True

        return [{"Id": c["Id"], "Names": [f"/{c['Name']}"], "Labels": dict(c["Labels"]), "State": c["State"]["Status"],
                 "Image": c["Image"], "NetworkSettings": {"Networks": {"bridge": {"IPAddress": c["IP"]}}}}
                for c in list(self.containers.values()) if ok(c["Labels"]) and (not running or c["State"]["Status"] == "running")]

    def inspect(self, cid: str) -> dict:
        self._rec("inspect", cid)
        c = self._get(cid)
        return {"Id": c["Id"], "Config": {"Labels": dict(c["Labels"]), "Image": c["Image"]}, "State": dict(c["State"]),
                "Image": "sha256:" + c["Image"].replace("/", "-"), "NetworkSettings": {"IPAddress": c["IP"]}}

    def create(self, image: str, *, name: str, labels: dict, host: dict, **config) -> str:
        self._rec("create", image, name)
        if image not in self.images:
            raise ImageNotFound(f"no such image: {image}")
        if name and any(c["Name"] == name for c in list(self.containers.values())):
            raise APIError("Conflict", response=_Response(), explanation=f"name {name} in use")
        cid = f"{next(_ids):064x}"
        self.containers[cid] = {"Id": cid, "Name": name or cid[:12], "Labels": dict(labels), "Image": image,
                                "Host": dict(host), "Config": dict(config), "IP": "",
                                "State": {"Status": "created", "ExitCode": 0, "StartedAt": "0001-01-01T00:00:00Z",
                                          "FinishedAt": "0001-01-01T00:00:00Z", "OOMKilled": False, "Error": ""}}
        return cid

    def start(self, cid: str) -> None:
        self._rec("start", cid)
        c = self._get(cid)
        c["State"].update(Status="running", StartedAt=_iso(time.time()))
        if c["Host"].get("network_mode") == "bridge":
            c["IP"] = f"10.{self.subnet}.0.{next(self._ip)}"

    def stop(self, cid: str, timeout: int) -> None:
        self._rec("stop", cid)
        c = self._get(cid)
        c["State"].update(Status="exited", ExitCode=137, FinishedAt=_iso(time.time()))

    def kill(self, cid: str, signal: str) -> None:
        self._rec("kill", cid, signal)

    def restart(self, cid: str, timeout: int = 1) -> None:
        self._rec("restart", cid)

    def remove(self, cid: str) -> None:
        self._rec("remove", cid)
        c = self._get(cid)
        del self.containers[c["Id"]]

    def logs(self, cid: str, **kw):
        self._rec("logs", cid)
        return b""

    def exec(self, cid: str, cmd: list[str]):
        self._rec("exec", cid, tuple(cmd))
        return 0, b""

    def put_archive(self, cid: str, path: str, data: bytes) -> None:
        self._rec("put_archive", cid, path)

    def get_archive(self, cid: str, path: str) -> bytes:
        self._rec("get_archive", cid, path)
        raise NotFound(path)

    def image_id(self, ref: str) -> str | None:
        self._rec("image_id", ref)
        return f"sha256:{ref}" if ref in self.images else None

    def pull(self, ref: str) -> None:
        self._rec("pull", ref)
        if ref not in self.pullable:
            raise APIError(f"pull access denied for {ref}")
        self.images.add(ref)

    def volume_exists(self, name: str) -> bool:
        self._rec("volume_exists", name)
        return name in self.volumes_

    def create_volume(self, name: str, driver_opts: dict, labels: dict) -> None:
        self._rec("create_volume", name)
        self.volumes_[name] = dict(labels)

    def volumes(self, label: str) -> list[str]:
        self._rec("volumes", label)
        k, _, v = label.partition("=")
        return [n for n, lab in self.volumes_.items() if lab.get(k) == v]

    def remove_volume(self, name: str) -> None:
        self._rec("remove_volume", name)
        self.volumes_.pop(name, None)

    def close(self) -> None:
        pass

    # -- test helpers ---------------------------------------------------------------------------------------
    def exit(self, cid: str, code: int) -> None:
        """A container exits by itself (a crash)."""
        self.containers[cid]["State"].update(Status="exited", ExitCode=code, FinishedAt=_iso(time.time()))
        self.gen += 1


@dataclass
class _Config:
    name: str
    host: str


@dataclass
class FakeNode:
    """A NodeHandle whose Docker engine is a FakeDocker."""

    config: _Config
    docker: FakeDocker
    pool: cf.Executor | None = None
    caches: dict = field(default_factory=dict)
    ssh: object = None

    @property
    def name(self) -> str:
        return self.config.name

    def cache(self, key: str, make):
        return self.caches.setdefault(key, make())


class FakeFleet:
    """A Fleet of FakeNodes built from inventory NodeConfigs; nodes in `down` fail their heartbeat."""

    instances: list["FakeFleet"] = []

    def __init__(self, nodes, down: set[str] | None = None):
        self._pool = cf.ThreadPoolExecutor(max_workers=4, thread_name_prefix="fake-node")
        self.nodes = {n.name: FakeNode(_Config(n.name, n.host), FakeDocker(n.name, subnet=i + 1), pool=self._pool)
                      for i, n in enumerate(nodes)}
        self.down = set(down or ())
        FakeFleet.instances.append(self)

    def __getitem__(self, name: str) -> FakeNode:
        return self.nodes[name]

    def names(self) -> list[str]:
        return list(self.nodes)

    def map(self, fn, names=None, timeout=None) -> dict:
        out = {}
        for n in names or self.names():
            try:
                out[n] = fn(self.nodes[n])
            except Exception as e:  # noqa: BLE001 - as Fleet.map: per node
                out[n] = e
        return out

    def probe(self, timeout: float = 8.0, down_timeout: float = 0.5, share=None) -> dict:
        out = {}
        for n, h in self.nodes.items():
            if n in self.down:
                out[n] = ProbeResult(n, False, None, None, "NodeUnreachable", f"node {n}: connection refused", 0.0)
            else:
                out[n] = ProbeResult(n, True, h.docker.info(), h.docker.version(), "KubeletReady",
                                     "docker engine is ready", 0.0)
        return out

    def close(self) -> None:
        self._pool.shutdown(wait=False)
