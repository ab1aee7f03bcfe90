"""A local test fleet: each node a network namespace with its own sshd and dockerd, on a shared bridge.

Everything it makes is recorded under its root directory so `down` removes exactly that and nothing else.
Every address is inside 198.18.0.0/16 (the RFC 2544 benchmarking range 198.18.0.0/15 without 198.19.0.0/16, the
ClusterIPs), so no test traffic can reach a real network. Sandbox K (0-9), node i (1-45):
- node address 198.18.K.(10+i)/24 on the sandbox's bridge (gateway 198.18.K.1);
- pod subnet of nodes 1-9: 198.18.(100+10K+i).0/24, as before (inventories of small sandboxes keep their addresses);
- pod subnet of nodes 10-45: a /26 (61 pods) in the nine /24s 198.18.(10+9K .. 18+9K).0 that sandbox K alone uses:
  node i takes block j = i-10, i.e. 198.18.(10+9K+j//4).(64*(j%4))/26.
Node addresses use 198.18.0-9.x, the large pod subnets 198.18.10-99.x and the small ones 198.18.101-199.x: no two
sandboxes, nodes or pod subnets overlap.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SANDBOX_BASE = Path(os.environ.get("GITKUBE_SANDBOX_BASE", "/var/lib/gitkube/sandbox"))
NEEDED = {
    "dockerd": "docker.io",
    "sshd": "openssh-server",
    "ssh-keygen": "openssh-client",
    "ip": "iproute2",
    "iptables": "iptables",
    "nsenter": "util-linux",
    "busybox": "busybox-static",
}
INSTALL_HINT = "apt-get update && apt-get install -y docker.io openssh-server busybox-static iproute2 iptables"


MAX_NODES = 45


class SandboxError(Exception):
    """The sandbox could not be made or removed; the message says what to do."""


@dataclass(frozen=True)
class NodePlan:
    """Names and addresses of one sandbox node."""

    index: int
    name: str
    netns: str
    veth: str
    address: str
    pod_cidr: str  # e.g. 198.18.101.0/24
    bip: str  # dockerd --bip: the bridge gateway, e.g. 198.18.101.1/24
    dir: Path

    @property
    def docker_sock(self) -> str:
        return f"unix://{self.dir}/docker.sock"


class Sandbox:
    """Sandbox number `sid` (0-9): prefix gk<sid>, bridge gk<sid>br, nodes n1..nN."""

    def __init__(self, sid: int = 0, base: Path = SANDBOX_BASE):
        if not 0 <= sid <= 9:
            raise SandboxError("sandbox id must be 0-9")
        self.sid = sid
        self.prefix = f"gk{sid}"
        self.root = base / self.prefix
        self.bridge = f"{self.prefix}br"
        self.gateway = f"198.18.{sid}.1"
        self.record_file = self.root / "sandbox.json"

    # -- naming -----------------------------------------------------------------------------------
    def node(self, i: int) -> NodePlan:
        """The names and addresses node i (1-based) gets (see the module's docstring for the plan)."""
        if not 1 <= i <= MAX_NODES:
            raise SandboxError(f"a sandbox has 1-{MAX_NODES} nodes")
        if i <= 9:
            third, first, bits = 100 + 10 * self.sid + i, 0, 24
        else:
            j = i - 10
            third, first, bits = 10 + 9 * self.sid + j // 4, 64 * (j % 4), 26
        return NodePlan(
            index=i,
            name=f"n{i}",
            netns=f"{self.prefix}-n{i}",
            veth=f"{self.prefix}n{i}h",
            address=f"198.18.{self.sid}.{10 + i}",
            pod_cidr=f"198.18.{third}.{first}/{bits}",
            bip=f"198.18.{third}.{first + 1}/{bits}",
            dir=self.root / f"n{i}",
        )

    @property
    def key_file(self) -> Path:
        return self.root / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    @property
    def inventory_file(self) -> Path:
        return self.root / "inventory.yaml"

    def recorded_nodes(self) -> list[int]:
        """Node indexes the record says exist."""
        if not self.record_file.exists():
            return []
        return json.loads(self.record_file.read_text()).get("nodes", [])

    def _record(self, nodes: list[int]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.record_file.write_text(json.dumps({"nodes": sorted(nodes), "bridge": self.bridge}))

    # -- checks -----------------------------------------------------------------------------------
    @staticmethod
    def check_host() -> None:
        """Refuse clearly when not root or when a needed program is missing."""
        if os.geteuid() != 0:
            raise SandboxError("the sandbox needs root (network namespaces, dockerd, sshd): run it as root, e.g. with sudo")
        missing = [f"{b} ({pkg})" for b, pkg in NEEDED.items() if not _which(b)]
        if missing:
            raise SandboxError(f"missing programs: {', '.join(missing)}; install them with: {INSTALL_HINT}")

    # -- up ---------------------------------------------------------------------------------------
    def up(self, nodes: int = 3, progress=print) -> Path:
        """Create (or complete) the fleet; idempotent. Returns the inventory path."""
        self.check_host()
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        have = set(self.recorded_nodes())
        self._record(sorted(have | set(range(1, nodes + 1))))
        if not self.key_file.exists():
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"gitkube-sandbox-{self.prefix}", "-f", str(self.key_file)])
        self._bridge_up()
        plans = [self.node(i) for i in range(1, nodes + 1)]
        for p in plans:
            progress(f"sandbox: node {p.name} ({p.address}, pods {p.pod_cidr})")
            self._node_net_up(p, plans)
            self.start_node(p.index)
        for p in plans:
            self._wait_ready(p)
            self._node_rules(p)
        self._write_known_hosts(plans)
        self._write_inventory(plans)
        return self.inventory_file

    def _bridge_up(self) -> None:
        if not _link_exists(self.bridge):
            _run(["ip", "link", "add", self.bridge, "type", "bridge"])
        if f"{self.gateway}/24" not in _run(["ip", "-o", "addr", "show", "dev", self.bridge]):
            _run(["ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge])
        _run(["ip", "link", "set", self.bridge, "up"])
        # A Docker engine in the root namespace sets FORWARD's policy to DROP; node-to-node traffic
        # crosses this bridge, so let it through explicitly.
        _iptables_ensure(None, ["FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"])

    def _node_net_up(self, p: NodePlan, plans: list[NodePlan]) -> None:
        p.dir.mkdir(parents=True, exist_ok=True)
        if not Path(f"/var/run/netns/{p.netns}").exists():
            _run(["ip", "netns", "add", p.netns])
        if not _link_exists(p.veth):
            _run(["ip", "link", "add", p.veth, "type", "veth", "peer", "name", "eth0", "netns", p.netns])
        _run(["ip", "link", "set", p.veth, "master", self.bridge])
        _run(["ip", "link", "set", p.veth, "up"])
        if f"{p.address}/24" not in _run(["ip", "-n", p.netns, "-o", "addr", "show", "dev", "eth0"]):
            _run(["ip", "-n", p.netns, "addr", "add", f"{p.address}/24", "dev", "eth0"])
        _run(["ip", "-n", p.netns, "link", "set", "eth0", "up"])
        _run(["ip", "-n", p.netns, "link", "set", "lo", "up"])
        # Flat pod network: every node routes to every other node's pod subnet, and the controller
        # (root namespace) reaches pods directly too.
        # One `ip -batch` per node: with 32 nodes that is 32 processes, not ~1000.
        routes = "".join(f"route replace {q.pod_cidr} via {q.address}\n" for q in plans if q.index != p.index)
        if routes:
            r = subprocess.run(["ip", "-n", p.netns, "-batch", "-"], input=routes, capture_output=True, text=True,
                               timeout=60)
            if r.returncode != 0:
                raise SandboxError(f"routes of node {p.name}: {r.stderr.strip()}")
        _run(["ip", "route", "replace", p.pod_cidr, "via", p.address])

    def start_node(self, i: int) -> None:
        """Start node i's dockerd and sshd if they are not running."""
        p = self.node(i)
        ns = f"--net=/var/run/netns/{p.netns}"
        if not _pid_alive(p.dir / "docker.pid"):
            logf = open(p.dir / "dockerd.log", "ab")
            subprocess.Popen(
                ["nsenter", ns, "dockerd", "--host", p.docker_sock, "--data-root", str(p.dir / "docker"),
                 "--exec-root", str(p.dir / "exec"), "--pidfile", str(p.dir / "docker.pid"),
                 "--cgroup-parent", f"/{p.netns}", "--bip", p.bip, "--userland-proxy=false",
                 "--log-level", "warn"],
                stdout=logf, stderr=logf, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        if not (p.dir / "ssh_host_ed25519_key").exists():
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(p.dir / "ssh_host_ed25519_key")])
        (p.dir / "home").mkdir(exist_ok=True)  # the node's own HOME for SSH sessions (see SetEnv below)
        (p.dir / "authorized_keys").write_text(Path(str(self.key_file) + ".pub").read_text())
        os.chmod(p.dir / "authorized_keys", 0o600)
        cfg_path = p.dir / "sshd_config"
        old_cfg = cfg_path.read_text() if cfg_path.exists() else None
        cfg = "\n".join([
            f"ListenAddress {p.address}",
            "Port 22",
            f"HostKey {p.dir}/ssh_host_ed25519_key",
            f"PidFile {p.dir}/sshd.pid",
            f"AuthorizedKeysFile {p.dir}/authorized_keys",
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "AllowTcpForwarding yes",
            "Subsystem sftp internal-sftp",  # hostPath type checks
            "MaxSessions 64",
            "MaxStartups 64:30:128",
            # HOME: a sandbox node stands for a separate host, but its filesystem is the controller host's, so
            # every SSH session's shell would read this host's /root/.bashrc. On this machine that runs
            # `pyenv init`, which costs 1-2 s per session and takes pyenv's global rehash lock (sessions queued
            # on it for up to 60 s under load, and Docker calls over SSH timed out). A home of the node's own,
            # with no dotfiles, gives each session the clean shell a fresh host has: 0.25 s, no lock.
            # (SFTP still starts in the user's passwd home, where the fleet lock lives.)
            f"SetEnv DOCKER_HOST={p.docker_sock} HOME={p.dir / 'home'} PYENV_REHASH_TIMEOUT=0",
            "LogLevel ERROR",
            "",
        ])
        cfg_path.write_text(cfg)
        if old_cfg not in (None, cfg) and _pid_alive(p.dir / "sshd.pid"):
            # A sandbox made by an older gitkube: sshd re-reads its configuration on SIGHUP (sessions stay).
            os.kill(int((p.dir / "sshd.pid").read_text().strip()), signal.SIGHUP)
        if not _pid_alive(p.dir / "sshd.pid"):
            Path("/run/sshd").mkdir(exist_ok=True)
            _run(["nsenter", ns, "/usr/sbin/sshd", "-f", str(p.dir / "sshd_config")])

    def stop_node(self, i: int) -> None:
        """Stop node i's sshd and dockerd (its containers stop with the engine)."""
        p = self.node(i)
        for pidfile in ("sshd.pid", "docker.pid"):
            _kill_pidfile(p.dir / pidfile, signal.SIGTERM, wait=20)

    def cut(self, i: int) -> None:
        """Cut node i off the network (its processes keep running)."""
        _run(["ip", "link", "set", self.node(i).veth, "down"])

    def heal(self, i: int) -> None:
        """Reconnect node i."""
        _run(["ip", "link", "set", self.node(i).veth, "up"])

    def _wait_ready(self, p: NodePlan, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        sock = p.dir / "docker.sock"
        missing = "nothing checked yet"
        while time.monotonic() < deadline:
            if not sock.exists():
                missing = f"dockerd's socket {sock} does not exist (dockerd alive: {_pid_alive(p.dir / 'docker.pid')})"
            elif not _port_open(p.address, 22):
                missing = f"sshd does not answer on {p.address}:22 (sshd alive: {_pid_alive(p.dir / 'sshd.pid')})"
            else:
                try:
                    _run(["docker", "-H", p.docker_sock, "version", "--format", "{{.Server.Version}}"], timeout=10)
                    return
                except SandboxError as e:
                    missing = f"`docker version` failed: {e}"
            time.sleep(0.2)
        log_text = (p.dir / "dockerd.log").read_text(errors="replace") if (p.dir / "dockerd.log").exists() else ""
        tail = "\n".join([ln for ln in log_text.splitlines() if ln.strip()][-15:])
        raise SandboxError(f"node {p.name} did not come up within {timeout:.0f}s: {missing}; dockerd log tail:\n{tail}")

    def _node_rules(self, p: NodePlan) -> None:
        # Docker's FORWARD policy is DROP and only its published ports pass: let pods on other nodes in.
        _iptables_ensure(p.netns, ["DOCKER-USER", "-i", "eth0", "-o", "docker0", "-j", "ACCEPT"])
        # Flat network: pod-to-pod and pod-to-node traffic keeps the pod's source address (no masquerade).
        _iptables_ensure(p.netns, ["POSTROUTING", "-s", p.pod_cidr, "-d", "198.18.0.0/15", "-j", "RETURN"], table="nat")

    def _write_known_hosts(self, plans: list[NodePlan]) -> None:
        lines = []
        for p in plans:
            typ, key = (p.dir / "ssh_host_ed25519_key.pub").read_text().split()[:2]
            lines.append(f"{p.address} {typ} {key}")
        self.known_hosts.write_text("\n".join(lines) + "\n")

    def _write_inventory(self, plans: list[NodePlan]) -> None:
        import yaml

        inv = {
            "apiVersion": "gitkube/v1",
            "kind": "Inventory",
            "defaults": {"user": "root", "identityFile": str(self.key_file), "knownHostsFile": str(self.known_hosts)},
            "nodes": [
                {"name": p.name, "address": {"host": p.address, "port": 22}, "podCIDR": p.pod_cidr,
                 "labels": {"gitkube.io/sandbox": self.prefix}}
                for p in plans
            ],
        }
        self.inventory_file.write_text(f"# written by `gitkube sandbox up` (sandbox {self.sid})\n" + yaml.safe_dump(inv, sort_keys=False))

    # -- status / down ----------------------------------------------------------------------------
    def status(self) -> list[dict]:
        """What exists of each recorded node."""
        out = []
        for i in self.recorded_nodes():
            p = self.node(i)
            out.append({
                "name": p.name, "address": p.address, "podCIDR": p.pod_cidr,
                "netns": Path(f"/var/run/netns/{p.netns}").exists(),
                "dockerd": _pid_alive(p.dir / "docker.pid"), "sshd": _pid_alive(p.dir / "sshd.pid"),
                "link": _link_state(p.veth),
            })
        return out

    def memory(self) -> dict[str, int]:
        """Bytes each recorded node holds now: its dockerd (with its containerd) and sshd, resident, plus the
        memory of its containers' cgroup."""
        children: dict[int, list[int]] = {}
        rss: dict[int, int] = {}
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/status") as f:
                    fields = dict(line.split(":", 1) for line in f if ":" in line)
            except OSError:
                continue
            children.setdefault(int(fields.get("PPid", "0").strip() or 0), []).append(int(d))
            rss[int(d)] = int(fields.get("VmRSS", "0 kB").split()[0]) * 1024
        out = {}
        for i in self.recorded_nodes():
            p = self.node(i)
            total, stack = 0, []
            for pidfile in ("docker.pid", "sshd.pid"):
                try:
                    stack.append(int((p.dir / pidfile).read_text().strip()))
                except (OSError, ValueError):
                    pass
            while stack:
                pid = stack.pop()
                total += rss.get(pid, 0)
                stack.extend(children.get(pid, []))
            try:
                total += int(Path(f"/sys/fs/cgroup/{p.netns}/memory.current").read_text())
            except (OSError, ValueError):
                pass
            out[p.name] = total
        return out

    def down(self, progress=print) -> None:
        """Remove exactly what up made: processes, namespaces, links, bridge, rules, routes, directories."""
        self.check_host()
        idx = self.recorded_nodes() or _guess_nodes(self)
        locks = self._fleet_lock_files(idx)
        # Stop every engine at once (each takes seconds to stop its containers), then clean up node by node.
        for i in idx:
            for pidfile in ("sshd.pid", "docker.pid"):
                _kill_pidfile(self.node(i).dir / pidfile, signal.SIGTERM, wait=0)
        for i in idx:
            p = self.node(i)
            progress(f"sandbox: removing node {p.name}")
            self.stop_node(i)
            # Anything still running inside the node's namespace (container shims) is ours.
            if Path(f"/var/run/netns/{p.netns}").exists():
                pids = subprocess.run(["ip", "netns", "pids", p.netns], capture_output=True, text=True).stdout.split()
                for pid in pids:
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except (ProcessLookupError, ValueError):
                        pass
            _unmount_under(p.dir)
            subprocess.run(["ip", "route", "del", p.pod_cidr], capture_output=True)
            if _link_exists(p.veth):
                subprocess.run(["ip", "link", "del", p.veth], capture_output=True)
            if Path(f"/var/run/netns/{p.netns}").exists():
                subprocess.run(["ip", "netns", "del", p.netns], capture_output=True)
            _remove_cgroups(f"/{p.netns}")
        if _link_exists(self.bridge):
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        _iptables_delete(None, ["FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"])
        if self.root.exists():
            _unmount_under(self.root)
            shutil.rmtree(self.root, ignore_errors=True)
        for f in locks:
            f.unlink(missing_ok=True)

    def _fleet_lock_files(self, idx: list[int]) -> list[Path]:
        """The fleet-lock records (gitkube.nodes.fleetlock) of the nodes' engines, asked while they run. They live in
        root's home, outside the sandbox, and a re-created node has the same engine key (its engine ID is the
        host's, its data root the same path): left behind, a lock taken on the old node refuses the new one."""
        from concurrent.futures import ThreadPoolExecutor

        from gitkube.nodes.fleetlock import engine_key, lock_file

        def key(i: int) -> str | None:
            p = self.node(i)
            try:
                r = subprocess.run(["docker", "-H", p.docker_sock, "info", "--format",
                                    "{{.ID}}|{{.DockerRootDir}}"], capture_output=True, text=True, timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                return None
            ident, _, root = r.stdout.strip().partition("|")
            return engine_key({"ID": ident, "DockerRootDir": root}, "") if r.returncode == 0 and ident else None

        with ThreadPoolExecutor(max_workers=8) as pool:
            keys = [k for k in pool.map(key, idx) if k]
        home = os.path.expanduser("~root")  # the sandbox's nodes are reached as root
        return [Path(lock_file(home, k, "")) for k in keys]


# -- small helpers --------------------------------------------------------------------------------
def _which(name: str) -> str | None:
    return shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.path.exists(p)), None)


def _run(argv: list[str], timeout: float = 60) -> str:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise SandboxError(f"`{' '.join(argv)}` failed ({r.returncode}): {r.stderr.strip() or r.stdout.strip()}")
    return r.stdout


def _link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def _link_state(name: str) -> str:
    try:
        return Path(f"/sys/class/net/{name}/operstate").read_text().strip()
    except OSError:
        return "absent"


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _pid_alive(pidfile: Path) -> bool:
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (OSError, ValueError):
        return False


def _kill_pidfile(pidfile: Path, sig: int, wait: float) -> None:
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    if wait <= 0:
        return
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _iptables_ensure(netns: str | None, rule: list[str], table: str = "filter") -> None:
    pre = (["ip", "netns", "exec", netns] if netns else []) + ["iptables", "-w", "-t", table]
    if subprocess.run(pre + ["-C"] + rule, capture_output=True).returncode != 0:
        _run(pre + ["-I"] + rule)


def _iptables_delete(netns: str | None, rule: list[str]) -> None:
    pre = (["ip", "netns", "exec", netns] if netns else []) + ["iptables", "-w"]
    while subprocess.run(pre + ["-C"] + rule, capture_output=True).returncode == 0:
        subprocess.run(pre + ["-D"] + rule, capture_output=True)


def _unmount_under(path: Path) -> None:
    prefix = str(path.resolve()) + "/"
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for m in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True)


def _remove_cgroups(parent: str) -> None:
    for ctl in Path("/sys/fs/cgroup").iterdir():
        d = ctl / parent.lstrip("/")
        if d.is_dir():
            for sub in sorted(d.rglob("*"), key=lambda x: len(str(x)), reverse=True):
                if sub.is_dir():
                    try:
                        sub.rmdir()
                    except OSError:
                        pass
            try:
                d.rmdir()
            except OSError:
                pass


def _guess_nodes(sb: Sandbox) -> list[int]:
    return [i for i in range(1, MAX_NODES + 1)
            if Path(f"/var/run/netns/{sb.prefix}-n{i}").exists() or _link_exists(f"{sb.prefix}n{i}h")]
