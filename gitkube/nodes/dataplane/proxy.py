"""Services on a node: the ClusterIPs bound on `lo`, HAProxy answering them (and NodePorts), dnsmasq answering
the Services' names. Called by the controller every pass with the texts `gitkube.reconcile.services` renders;
an unchanged pass costs one Docker list call per node.

Both daemons run in long-lived host-network containers labelled `io.gitkube.managed=true` and
`io.gitkube.role=proxy|dns` (never `io.gitkube.pod.uid`: they are not pods). Files are written with the Docker
API's put_archive; HAProxy reloads by SIGUSR2 to its master (established connections finish on the old
worker), dnsmasq re-reads its hosts file on SIGHUP.

A reload is not trusted until it is seen: every configuration carries a status frontend on the node's
127.0.0.1:10256 (kube-proxy's healthz port) answering with a tag of the configuration it was loaded from, and
after a start or a reload the tag is read through the node's SSH connection until the new one answers. A signal
the master lost, or a new worker that failed to start, would otherwise leave the old endpoints served for good
(the file on the node already matches, so no later pass would reload): it is signalled again, then restarted.
"""
from __future__ import annotations

import functools
import hashlib
import io
import ipaddress
import logging
import subprocess
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, field

from gitkube.nodes.images import app as appimages
from gitkube.nodes.transport.docker_api import APIError, ImageNotFound, NotFound
from gitkube.nodes.transport.fleet import NodeHandle
from gitkube.nodes.kubelet.hooks import get_over
from gitkube.nodes.images.archive import MANAGED_LABEL, ImageArchive
from gitkube.nodes.dataplane.kernelproxy import (DIR_LABEL, KERNEL_PROXY_NAME, KERNEL_PROXY_ROLE, TEARDOWN_ROLE,
                                                 forget_dir, remove_rules, sync_rules)
from gitkube.nodes.dataplane.netprep import ROLE_LABEL, sync_lo_addresses
from gitkube.reconcile.podlabels import CLUSTER as CLUSTER_LABEL

log = logging.getLogger(__name__)

HASH_LABEL = "io.gitkube.system.hash"
PROXY_NAME = "gitkube-proxy"
DNS_NAME = "gitkube-dns"
HAPROXY_DIR = "/etc/haproxy"
HAPROXY_CFG = f"{HAPROXY_DIR}/haproxy.cfg"
HOSTS_DIR = "/etc/gk"
HOSTS_FILE = f"{HOSTS_DIR}/hosts"
# How often the addresses on lo are checked even when nothing seems to have changed (someone may have removed them).
LO_RECHECK_SECONDS = 600.0
# The proxy's status frontend: kube-proxy's healthz port, on loopback only.
STATUS_ADDR = ("127.0.0.1", 10256)
# How long a start or reload may take to be seen before the proxy is signalled again, then restarted.
RELOAD_SECONDS = 3.0


class ProxyError(Exception):
    """The node's proxy or DNS could not be brought to the desired state; says why."""


@dataclass
class _NodeCache:
    """What this process last wrote to a node, so an unchanged pass needs no more than the list call."""

    addresses: tuple[str, ...] | None = None
    addresses_at: float = 0.0
    files: dict[tuple[str, str], str] = field(default_factory=dict)  # (container id, path) -> sha256
    lock: threading.Lock = field(default_factory=threading.Lock)
    cluster: str = ""  # the installation whose system containers these are (their io.gitkube.cluster label)


CACHE_KEY = "dataplane"


def _cache(h: NodeHandle) -> _NodeCache:
    """The handle's own cache (a new Fleet, new handles: a clean belief); no module-level state."""
    return h.cache(CACHE_KEY, _NodeCache)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _tar_one(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo(name)
        ti.size, ti.mode, ti.mtime = len(data), 0o644, int(time.time())
        tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _read_file(h: NodeHandle, cid: str, path: str) -> bytes | None:
    try:
        raw = h.docker.get_archive(cid, path)
    except (NotFound, APIError):
        return None
    with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
        m = tf.next()
        f = tf.extractfile(m) if m else None
        return f.read() if f else None


@dataclass(frozen=True)
class _Spec:
    role: str
    name: str
    archive: ImageArchive
    command: list[str] | None
    restart: str
    caps: tuple[str, ...] = ()

    @property
    def hash(self) -> str:
        return _sha(repr((self.archive.image_id, self.command, self.restart) + ((self.caps,) if self.caps else ())))[:16]


PROXY_MODES = ("iptables", "haproxy")


def _specs(dns_ip: str, proxy_mode: str = "haproxy") -> dict[str, _Spec]:
    dns_cmd = ["--no-resolv", "--no-hosts", f"--addn-hosts={HOSTS_FILE}", f"--listen-address={dns_ip}",
               "--bind-interfaces", "--user=root", "--local=/cluster.local/",
               # No upstream: every other name is answered here too, so `web.default`'s AAAA query gets an
               # empty answer and unknown names NXDOMAIN, never REFUSED (which resolvers treat as an error).
               "--local=/#/", "--pid-file="]
    if proxy_mode == "iptables":
        # The kernel proxy: its rules live in the node's kernel, the container only applies new ones (on SIGHUP,
        # one iptables-restore transaction) and restores them after the engine restarts.
        proxy = _Spec(KERNEL_PROXY_ROLE, KERNEL_PROXY_NAME, appimages.build("iptables"), None, "unless-stopped",
                      ("NET_ADMIN", "NET_RAW"))
    else:
        # HAProxy binds its ClusterIPs with freebind, so it may start before the addresses exist: restart it
        # with the engine so NodePorts answer as soon as a rebooted node is up.
        proxy = _Spec("proxy", PROXY_NAME, appimages.build("haproxy"), None, "unless-stopped")
    return {
        proxy.role: proxy,
        # dnsmasq cannot bind before its address is on lo: no restart policy, so a rebooted node shows it
        # exited and the next pass binds the addresses first (this is also how a lost lo is noticed).
        "dns": _Spec("dns", DNS_NAME, appimages.build("dnsmasq"), dns_cmd, "no"),
    }


def _ensure_image(h: NodeHandle, a: ImageArchive) -> None:
    for chunk in h.docker.load_image(a.data):
        if isinstance(chunk, dict) and chunk.get("error"):
            raise ProxyError(f"node {h.name}: loading {a.ref} failed: {chunk['error']}")


def _create(h: NodeHandle, s: _Spec, binds: dict | None = None, labels: dict[str, str] | None = None) -> str:
    """Create the container (loading its image if the node lacks it), not started."""
    host = {"network_mode": "host", "restart_policy": {"Name": s.restart},
            "log_config": {"Type": "json-file", "Config": {"max-size": "1m", "max-file": "2"}}}
    if s.caps:
        host["cap_add"] = list(s.caps)
    if binds:
        host["binds"] = binds
    kw = dict(name=s.name, command=s.command,
              labels={MANAGED_LABEL: "true", ROLE_LABEL: s.role, HASH_LABEL: s.hash, **(labels or {}),
                      **({CLUSTER_LABEL: _cache(h).cluster} if _cache(h).cluster else {})}, host=host)
    try:
        cid = h.docker.create(s.archive.ref, **kw)
    except ImageNotFound:
        _ensure_image(h, s.archive)
        cid = h.docker.create(s.archive.ref, **kw)
    return cid


def sync_services(handle: NodeHandle, cluster_ips: list[str], haproxy_cfg: str, dns_hosts: str,
                  dns_ip: str, proxy_mode: str = "haproxy", iptables_rules: str = "", cluster_id: str = "") -> dict:
    """Bring one node's service addresses, proxy (HAProxy, or the kernel's rules in iptables mode) and DNS to the
    given state; returns what changed (empty: nothing). The proxy and DNS are the node's, not a pod's: the
    installation that holds the node's fleet lock (gitkube.nodes.fleetlock) manages them whoever made them; those
    this one makes carry its cluster id. Over 60 lines: the steps must run in this order under the node's lock
    (leftovers, the other mode's proxy, stale specs, addresses, proxy, DNS) and read best as one sequence."""
    h = handle
    d = h.docker
    cache = _cache(h)
    kernel = proxy_mode == "iptables"
    if kernel:
        if not iptables_rules:
            raise ProxyError("iptables proxy mode needs the rendered rules")
    else:
        tag = _tag(haproxy_cfg)
        haproxy_cfg = with_status(haproxy_cfg)
        check_haproxy_config(haproxy_cfg)
    specs = _specs(dns_ip, proxy_mode)
    changed: dict = {}
    want_addrs = tuple(sorted({str(ipaddress.IPv4Address(a)) for a in [*cluster_ips, dns_ip]}, key=ipaddress.IPv4Address))
    with cache.lock:
        cache.cluster = cluster_id  # labelled on the system containers this node gets
        listed = d.list([f"{MANAGED_LABEL}=true", ROLE_LABEL])
        by_role: dict[str, list[dict]] = {}
        for c in listed:
            by_role.setdefault((c.get("Labels") or {}).get(ROLE_LABEL, ""), []).append(c)
        # Leftover one-shot tool containers (a pass killed mid-way) are removed.
        for c in by_role.pop("netprep", []) + by_role.pop(TEARDOWN_ROLE, []):
            if c.get("State") != "running":
                try:
                    d.remove(c["Id"])
                except (NotFound, APIError):
                    pass
        # The other proxy mode's container goes; leaving the kernel mode removes its rules first: the container
        # marks a node that may hold them, so it stays until they are gone (a failure is retried next pass).
        other = "proxy" if kernel else KERNEL_PROXY_ROLE
        leaving = by_role.pop(other, [])
        if other == KERNEL_PROXY_ROLE and leaving:
            changed["rules"] = remove_rules(h)
        for c in leaving:
            d.remove(c["Id"])
            changed.setdefault("removed", []).append(c["Id"][:12])
            if other == KERNEL_PROXY_ROLE:
                forget_dir(h, c)

        current: dict[str, dict | None] = {}
        for role, s in specs.items():
            mine = [c for c in by_role.get(role, []) if (c.get("Labels") or {}).get(HASH_LABEL) == s.hash
                    and f"/{s.name}" in (c.get("Names") or [])]
            for c in by_role.get(role, []):  # an old spec (image or flags changed) or a stray: replaced
                if c not in mine[:1]:
                    d.remove(c["Id"])
                    changed.setdefault("removed", []).append(c["Id"][:12])
                    if role == KERNEL_PROXY_ROLE:
                        forget_dir(h, c)
            current[role] = mine[0] if mine else None

        # 1. Addresses first: dnsmasq cannot start without its own.
        fresh = time.monotonic() - cache.addresses_at < LO_RECHECK_SECONDS
        all_running = all(c is not None and c.get("State") == "running" for c in current.values())
        if cache.addresses != want_addrs or not fresh or not all_running:
            res = sync_lo_addresses(h, list(want_addrs))
            cache.addresses, cache.addresses_at = want_addrs, time.monotonic()
            if res["added"] or res["removed"]:
                changed["addresses"] = res

        # 2. The proxy: its config (or rules), then reload (or first start).
        if kernel:
            s = specs[KERNEL_PROXY_ROLE]
            changed.update(sync_rules(h, cache.files, current[KERNEL_PROXY_ROLE],
                                      lambda dir_: _create(h, s, {dir_: {"bind": "/run/gk", "mode": "rw"}},
                                                           {DIR_LABEL: dir_}),
                                      iptables_rules))
        else:
            changed.update(_sync_daemon(h, cache, specs["proxy"], current["proxy"], HAPROXY_CFG,
                                        haproxy_cfg, _reload_haproxy, lambda cid: _await_haproxy(h, cid, tag)))
        # 3. DNS.
        changed.update(_sync_daemon(h, cache, specs["dns"], current["dns"], HOSTS_FILE, dns_hosts,
                                    _reload_dnsmasq))
    return changed


def _sync_daemon(h: NodeHandle, cache: _NodeCache, s: _Spec, c: dict | None, path: str, text: str, reload,
                 verify=None) -> dict:
    """Create/start the daemon or reload it with `text`; `verify(cid)` (if given) returns once the text is in
    effect, or what else it took, and raises when it cannot be brought there."""
    digest = _sha(text)
    if c is None:
        cid = _create(h, s)
        d, name = path.rsplit("/", 1)
        h.docker.put_archive(cid, d, _tar_one(name, text.encode()))
        h.docker.start(cid)
        if verify:
            verify(cid)
        cache.files[(cid, path)] = digest
        return {s.role: "created"}
    cid = c["Id"]
    out: dict = {}
    if c.get("State") != "running":
        # Stopped, crashed or in the engine's restart loop (a rebooted node: the addresses were missing).
        # Files written before survive; the restart reads the current one and the reload below checks it.
        cache.files = {k: v for k, v in cache.files.items() if k[0] != cid}
        h.docker.restart(cid, timeout=1)
        out[s.role] = "started"
    # cache.files holds what this process has seen in effect; anything else is looked at on the node.
    known = cache.files.get((cid, path))
    unseen = known is None
    if unseen:
        data = _read_file(h, cid, path)
        known = _sha(data.decode(errors="replace")) if data is not None else ""
    if known != digest:
        reload(h, cid, text)
        out.setdefault(s.role, "reloaded")
    if verify and (out or unseen):  # the file may match while the daemon never loaded it: look once
        how = verify(cid)
        if how:
            out[s.role] = how
    cache.files[(cid, path)] = digest  # only once it is in effect: a failed reload is tried again next pass
    return out


@functools.lru_cache(maxsize=64)
def check_haproxy_config(text: str) -> None:
    """Refuse a configuration HAProxy would refuse, before any node sees it (the image runs this same binary)."""
    with tempfile.NamedTemporaryFile("w", suffix=".cfg") as f:
        f.write(text)
        f.flush()
        r = subprocess.run([appimages.program("haproxy"), "-c", "-q", "-f", f.name], capture_output=True, text=True,
                           timeout=30)
    if r.returncode != 0:
        raise ProxyError(f"HAProxy refuses the rendered configuration: {(r.stdout + r.stderr).strip()[-800:]}")


def with_status(cfg: str) -> str:
    """The configuration as written to a node: `cfg` plus the status frontend answering with its tag."""
    return (f"{cfg.rstrip()}\n\n# Written by gitkube: answers with this configuration's tag once it is in effect.\n"
            f"frontend gitkube.status\n    mode http\n    bind {STATUS_ADDR[0]}:{STATUS_ADDR[1]}\n"
            f"    http-request return status 200 content-type text/plain string \"{_tag(cfg)}\"\n")


def _tag(cfg: str) -> str:
    return "gitkube-proxy " + _sha(cfg)[:16]


def served_tag(h: NodeHandle, timeout: float = 1.0) -> str | None:
    """The tag of the configuration the node's proxy answers with now (None: nothing answers)."""
    try:
        chan = h.ssh.open_tcp(*STATUS_ADDR, timeout=timeout)
    except Exception:  # noqa: BLE001 - refused or unreachable: not in effect (yet)
        return None
    try:
        line, body = get_over(chan, *STATUS_ADDR, "/", [], timeout, body=True)
    except Exception:  # noqa: BLE001 - a timeout or a reset mid-reload
        return None
    finally:
        chan.close()
    return body.decode(errors="replace").strip() if line.split()[1:2] == ["200"] else None


def _await_haproxy(h: NodeHandle, cid: str, want: str) -> str | None:
    """Wait until the proxy answers with the tag `want`; signal again, then restart, if it does not.

    Returns None when the first start/reload took, else what it took ("reloaded twice", "restarted")."""
    for attempt in ("", "reloaded twice", "restarted"):
        if attempt == "reloaded twice":
            log.warning("node %s: the proxy's reload was not seen within %gs; signalling it again", h.name, RELOAD_SECONDS)
            h.docker.kill(cid, signal="SIGUSR2")
        elif attempt == "restarted":
            log.warning("node %s: the proxy still serves an older configuration; restarting it", h.name)
            h.docker.restart(cid, timeout=1)
        deadline = time.monotonic() + RELOAD_SECONDS * (2 if attempt == "restarted" else 1)
        seen = None
        while time.monotonic() < deadline:
            seen = served_tag(h)
            if seen == want:
                return attempt or None
            time.sleep(0.05)
    raise ProxyError(f"node {h.name}: the proxy does not serve the new configuration (it answers {seen!r}, want "
                     f"{want!r}) even after a restart; its log says:\n{proxy_logs(h, tail=20)}")


def _reload_haproxy(h: NodeHandle, cid: str, text: str) -> None:
    # The master re-reads the file on SIGUSR2 and starts new workers; old ones finish their connections.
    # A reload that fails on the node (a port taken by another program) keeps the old workers serving.
    h.docker.put_archive(cid, HAPROXY_DIR, _tar_one("haproxy.cfg", text.encode()))
    h.docker.kill(cid, signal="SIGUSR2")


def _reload_dnsmasq(h: NodeHandle, cid: str, text: str) -> None:
    h.docker.put_archive(cid, HOSTS_DIR, _tar_one("hosts", text.encode()))
    h.docker.kill(cid, signal="SIGHUP")


def teardown_services(handle: NodeHandle) -> dict:
    """Remove the proxy and DNS containers and gitkube's addresses on lo (a node leaving the fleet)."""
    h = handle
    listed = h.docker.list([f"{MANAGED_LABEL}=true", ROLE_LABEL])
    removed = []
    kernel = [c for c in listed if (c.get("Labels") or {}).get(ROLE_LABEL) == KERNEL_PROXY_ROLE]
    if kernel:
        remove_rules(h)  # first: the kernel proxy's container marks a node that may hold rules
    for c in listed:
        try:
            h.docker.remove(c["Id"])
            removed.append(c["Id"][:12])
        except (NotFound, APIError):
            pass
    for c in kernel:
        forget_dir(h, c)
    res = sync_lo_addresses(h, [])
    h.caches.pop(CACHE_KEY, None)
    return {"removed": removed, "addresses": res}


def proxy_logs(handle: NodeHandle, role: str = "proxy", tail: int = 50) -> str:
    """The last lines a system container logged (for error messages and `describe`)."""
    name = {"proxy": PROXY_NAME, KERNEL_PROXY_ROLE: KERNEL_PROXY_NAME}.get(role, DNS_NAME)
    try:
        return handle.docker.logs(name, tail=tail).decode(errors="replace")
    except (NotFound, APIError):
        return ""
