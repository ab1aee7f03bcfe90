"""Services data plane on a real 3-node sandbox, driven directly (no controller): ClusterIPs on lo, the proxy on
every node (the kernel's NAT rules in iptables mode, HAProxy in haproxy mode: every test runs in both) routing to
ready endpoints on other nodes, changes without dropping connections, NodePort on every node's address, cluster
DNS names."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from gitkube.api import parse_object
from gitkube.nodes.transport.fleet import Fleet
from gitkube.nodes.images.ship import ship
from gitkube.nodes.inventory import load_inventory
from gitkube.nodes.images import app as appimages
from gitkube.nodes.dataplane.proxy import sync_services, teardown_services
from gitkube.api.views import PodView
from gitkube.reconcile.endpoints import ServiceInfo, ServicePortInfo, compute_all_endpoints
from gitkube.reconcile.services import DNS_IP, plan_dataplane

from tests.integration.conftest import eventually
from tests.unit._pods import pod_view

BUSYBOX = "gitkube/busybox:latest"
WEB_NODEPORT = 30080
ECHO_NODEPORT = 30070
TEST = "gk-test-svc"


def service(name, ports, type_="NodePort"):
    return parse_object({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
                         "spec": {"type": type_, "selector": {"app": name}, "ports": ports}})


SERVICES = [
    service("web", [{"name": "http", "port": 80, "targetPort": "http", "nodePort": WEB_NODEPORT}]),
    service("echo", [{"port": 7000, "nodePort": ECHO_NODEPORT}]),
]
INFOS = [ServiceInfo("default", "web", {"app": "web"}, (ServicePortInfo(80, "http", target_port="http"),)),
         ServiceInfo("default", "echo", {"app": "echo"}, (ServicePortInfo(7000),))]


class DataPlane:
    def __init__(self, sb, fleet: Fleet, mode: str):
        self.sb, self.fleet, self.mode = sb, fleet, mode
        self.pods: dict[str, PodView] = {}
        self.alloc = None

    @property
    def proxy(self) -> str:
        """The key a sync's result names the proxy by."""
        return "kube-proxy" if self.mode == "iptables" else "proxy"

    def backend(self, node: str, app: str = "web") -> PodView:
        name = f"{TEST}-{app}-{node}"
        self.sb.docker(node, "rm", "-f", name)
        cmd = (f"echo {node} > /var/www/index.html && exec httpd -f -p 8080 -h /var/www" if app == "web"
               else "exec nc -ll -p 7000 -e cat")
        r = self.sb.docker(node, "run", "-d", "--name", name, "--label", TEST, BUSYBOX, "sh", "-c", cmd)
        assert r.returncode == 0, r.stderr
        ip = self.sb.docker(node, "inspect", "-f", "{{.NetworkSettings.IPAddress}}", name).stdout.strip()
        pod = pod_view(name, uid=name, labels={"app": app}, ip=ip, node=node, ready=True, phase="Running",
                       ports=(("http", 8080),) if app == "web" else ())
        self.pods[name] = pod
        return pod

    def sync(self, ready: set[str] | None = None) -> dict:
        pods = [p for n, p in self.pods.items() if ready is None or n in ready]
        eps = compute_all_endpoints(INFOS, pods)
        plan = plan_dataplane(SERVICES, eps, self.alloc)
        assert not plan.allocation.errors
        self.alloc = plan.allocation
        res = self.fleet.map(lambda h: sync_services(h, list(plan.cluster_ips), plan.haproxy_cfg, plan.dns_hosts,
                                                     plan.dns_ip, self.mode, plan.iptables_rules), timeout=120)
        for n, r in res.items():
            assert not isinstance(r, Exception), f"{n}: {r!r}"
        return res

    @property
    def web_ip(self) -> str:
        return self.alloc.cluster_ips["default/web"]

    def get_from(self, node: str, host: str, port: int, count: int = 20) -> list[str]:
        """`count` fresh HTTP GETs from a throwaway container on `node` (each bounded by a 2 s timeout).

        With nc: busybox-static's wget crashes in its name-service lookup on this glibc build."""
        script = ('for i in $(seq "$1"); do r=$(printf "GET / HTTP/1.0\\r\\n\\r\\n" | nc -w 2 "$2" "$3" | tail -n 1); '
                  'echo "${r:-FAIL}"; done')
        r = self.sb.docker(node, "run", "--rm", "--label", TEST, BUSYBOX, "sh", "-c", script, "sh", str(count), host,
                           str(port), timeout=count * 3 + 30)
        assert r.returncode == 0, r.stderr
        return r.stdout.split()


def http_get(url: str, timeout: float = 2.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode().strip()


@pytest.fixture(scope="module", params=["iptables", "haproxy"])
def dp(fleet, request):
    f = Fleet(load_inventory(fleet.inventory))
    ship(f, [appimages.build(n) for n in appimages.SYSTEM_IMAGES], progress=lambda m: None)
    d = DataPlane(fleet, f, request.param)
    yield d
    for n in ("n1", "n2", "n3"):
        ids = fleet.docker(n, "ps", "-aq", "--filter", f"label={TEST}").stdout.split()
        if ids:
            fleet.docker(n, "rm", "-f", *ids)
    f.map(teardown_services, timeout=60)
    f.close()


def test_clusterip_answers_from_backends_on_two_other_nodes(dp):
    dp.backend("n1")
    dp.backend("n2")
    dp.backend("n1", "echo")
    res = dp.sync()
    # Fresh nodes get the proxy and DNS created; nodes where an earlier test file left them get a new config.
    assert all(r.get(dp.proxy) in ("created", "reloaded") and r.get("dns") in ("created", "reloaded")
               for r in res.values()), res
    for n in ("n1", "n2", "n3"):
        lo = dp.sb.nsexec(n, "ip", "-o", "-4", "addr", "show", "dev", "lo").stdout
        assert f"{dp.web_ip}/32" in lo and f"{DNS_IP}/32" in lo
    # A second pass with nothing changed does nothing, with one API call per node.
    before = {n: h.docker.calls for n, h in dp.fleet.nodes.items()}
    again = dp.sync()
    from gitkube.nodes.dataplane.proxy import proxy_logs
    assert all(r == {} for r in again.values()), (again, {n: proxy_logs(h, dp.proxy) for n, h in dp.fleet.nodes.items()})
    assert all(h.docker.calls - before[n] == 1 for n, h in dp.fleet.nodes.items())

    answers = dp.get_from("n3", dp.web_ip, 80, 20)
    assert len(answers) == 20 and set(answers) == {"n1", "n2"}, answers


def test_removed_endpoint_gets_no_traffic_and_a_new_one_is_routed_quickly(dp):
    only_n1 = {f"{TEST}-web-n1", f"{TEST}-echo-n1"}
    res = dp.sync(ready=only_n1)
    assert all(r.get(dp.proxy) == "reloaded" for r in res.values()), res
    answers = dp.get_from("n3", dp.web_ip, 80, 20)
    assert answers == ["n1"] * 20, answers

    # The ready set grows back: time from the start of the sync to the first answer from the new endpoint.
    dp.backend("n3")
    t0 = time.monotonic()
    dp.sync(ready=only_n1 | {f"{TEST}-web-n3"})
    synced = time.monotonic() - t0
    url = f"http://{dp.sb.node_address('n2')}:{WEB_NODEPORT}/"

    def seen_n3():
        return http_get(url) == "n3"

    eventually(seen_n3, timeout=10, interval=0.02, what="the new endpoint answering")
    routed = time.monotonic() - t0
    print(f"\n{dp.mode}: endpoint change -> routed: {routed * 1000:.0f} ms (sync of 3 nodes {synced * 1000:.0f} ms)")
    assert routed < 10
    answers = dp.get_from("n2", dp.web_ip, 80, 10)
    assert set(answers) == {"n1", "n3"}, answers


def test_reload_keeps_established_connections(dp):
    addr = (dp.sb.node_address("n3"), ECHO_NODEPORT)
    with socket.create_connection(addr, timeout=5) as s:
        s.sendall(b"before\n")
        assert s.recv(100) == b"before\n"
        res = dp.sync(ready={f"{TEST}-web-n2", f"{TEST}-echo-n1"})  # web endpoints change: reload everywhere
        assert res["n3"].get(dp.proxy) == "reloaded"
        s.sendall(b"after\n")
        assert s.recv(100) == b"after\n"


def test_nodeport_answers_on_every_node_address(dp):
    dp.sync(ready={f"{TEST}-web-n1", f"{TEST}-web-n2", f"{TEST}-echo-n1"})
    for n in ("n1", "n2", "n3"):
        seen: set[str] = set()
        url = f"http://{dp.sb.node_address(n)}:{WEB_NODEPORT}/"

        def both():  # a reload takes effect within a few hundred ms: the old worker answers until then
            seen.add(http_get(url))
            return seen >= {"n1", "n2"}

        try:
            eventually(both, timeout=15, interval=0.05, what=f"NodePort on {n} answering from n1 and n2")
        except AssertionError as e:
            from gitkube.nodes.dataplane.proxy import proxy_logs
            h = dp.fleet.nodes[n]
            if dp.mode == "iptables":
                cfg = dp.sb.nsexec(n, "iptables-save", "-t", "nat").stdout
                ps = dp.sb.docker(n, "top", "gitkube-kube-proxy").stdout
            else:
                cfg = dp.sb.docker(n, "exec", "gitkube-proxy", "cat", "/etc/haproxy/haproxy.cfg").stdout
                ps = dp.sb.docker(n, "top", "gitkube-proxy").stdout
            raise AssertionError(f"{e}\nseen={seen}\nprocesses:\n{ps}\nconfig on {n}:\n{cfg}\n"
                                 f"proxy log:\n{proxy_logs(h, dp.proxy)}") from None
        assert seen == {"n1", "n2"}, (n, seen)


def test_reload_the_master_never_made_is_noticed_and_the_proxy_restarted(dp):
    """A reload is checked, not assumed: n2's HAProxy master is frozen, so its SIGUSR2s are never acted on."""
    if dp.mode != "haproxy":
        pytest.skip("HAProxy's reload check; the kernel proxy's is test_rules_never_applied_are_noticed...")
    from gitkube.nodes.dataplane.proxy import served_tag
    ready = {f"{TEST}-web-n1", f"{TEST}-web-n2", f"{TEST}-echo-n1"}
    dp.sync(ready=ready)
    before = served_tag(dp.fleet.nodes["n2"])
    assert before and before.startswith("gitkube-proxy "), before
    pid = int(dp.sb.docker("n2", "inspect", "-f", "{{.State.Pid}}", "gitkube-proxy").stdout)
    os.kill(pid, signal.SIGSTOP)
    try:
        res = dp.sync(ready=ready - {f"{TEST}-web-n1"})
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass  # restarted, as it should have been
    assert res["n1"].get("proxy") == "reloaded" and res["n3"].get("proxy") == "reloaded", res
    assert res["n2"].get("proxy") == "restarted", res
    after = served_tag(dp.fleet.nodes["n2"])
    assert after != before and after == served_tag(dp.fleet.nodes["n1"]), (before, after)
    url = f"http://{dp.sb.node_address('n2')}:{WEB_NODEPORT}/"
    assert {http_get(url) for _ in range(10)} == {"n2"}
    # The next pass has nothing to do on n2: what was restarted is now known to be in effect.
    assert dp.sync(ready=ready - {f"{TEST}-web-n1"})["n2"] == {}


def _tree(pid: int) -> list[int]:
    """pid and its descendants (host pids, from /proc)."""
    children: dict[int, list[int]] = {}
    for d in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def test_rules_never_applied_are_noticed_and_the_kernel_proxy_restarted(dp):
    """An iptables change is checked, not assumed: n2's kernel proxy is frozen (its PID 1 and the FIFO's reader), so
    neither its trigger line nor its SIGHUPs are acted on; connections made meanwhile still reach the endpoints of
    the rules in the kernel."""
    if dp.mode != "iptables":
        pytest.skip("the kernel proxy's apply check")
    from gitkube.nodes.dataplane.kernelproxy import DIR_LABEL, applied
    ready = {f"{TEST}-web-n1", f"{TEST}-web-n2", f"{TEST}-echo-n1"}
    dp.sync(ready=ready)
    h = dp.fleet.nodes["n2"]
    (c,) = h.docker.call(h.docker.api.containers, filters={"name": "gitkube-kube-proxy"})
    before = applied(h, c["Labels"][DIR_LABEL])
    pids = _tree(int(dp.sb.docker("n2", "inspect", "-f", "{{.State.Pid}}", "gitkube-kube-proxy").stdout))
    assert len(pids) >= 2, pids  # PID 1 and the trigger's reader (a subshell)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        res = dp.sync(ready=ready - {f"{TEST}-web-n1"})
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass  # restarted, as it should have been
    assert res["n1"].get("kube-proxy") == "reloaded" and res["n3"].get("kube-proxy") == "reloaded", res
    assert res["n2"].get("kube-proxy") == "restarted", res
    after = applied(h, c["Labels"][DIR_LABEL])
    assert after != before and after[1] == 0, (before, after)
    url = f"http://{dp.sb.node_address('n2')}:{WEB_NODEPORT}/"
    assert {http_get(url) for _ in range(10)} == {"n2"}
    assert dp.sync(ready=ready - {f"{TEST}-web-n1"})["n2"] == {}


def test_leaving_the_mode_removes_the_rules(dp):
    """The other mode's proxy goes, and with the kernel proxy its chains and jumps, leaving Docker's rules alone."""
    if dp.mode != "iptables":
        pytest.skip("runs in the iptables half: it switches to haproxy and back")
    dp.mode = "haproxy"
    try:
        res = dp.sync()
        assert all(r.get("rules") == "removed" and r.get("proxy") == "created" for r in res.values()), res
        for n in ("n1", "n2", "n3"):
            saved = dp.sb.nsexec(n, "iptables-save").stdout
            assert "GK-" not in saved and "DOCKER" in saved, saved
        answers = dp.get_from("n3", dp.web_ip, 80, 6)
        assert answers and set(answers) <= {"n1", "n2", "n3"}, answers  # HAProxy answers now, from every web pod
    finally:
        dp.mode = "iptables"
    res = dp.sync()
    assert all(r.get("kube-proxy") == "created" for r in res.values()), res


def test_cluster_dns_names_resolve_from_a_container(dp):
    for name in ("web.default.svc.cluster.local", "web.default", "web"):
        r = dp.sb.docker("n2", "run", "--rm", "--label", TEST, BUSYBOX, "nslookup", name, DNS_IP, timeout=30)
        assert r.returncode == 0 and dp.web_ip in r.stdout, (name, r.stdout, r.stderr)
    r = dp.sb.docker("n2", "run", "--rm", "--label", TEST, BUSYBOX, "nslookup", "nope.default.svc.cluster.local", DNS_IP)
    assert "NXDOMAIN" in r.stdout + r.stderr
    # A pod started with the cluster DNS and Kubernetes' search path reaches the Service by its short name.
    r = dp.sb.docker("n2", "run", "--rm", "--label", TEST, "--dns", DNS_IP, "--dns-search", "default.svc.cluster.local",
                     "--dns-search", "svc.cluster.local", "--dns-search", "cluster.local", "--dns-option", "ndots:5",
                     BUSYBOX, "nslookup", "web.default.svc.cluster.local")
    assert dp.web_ip in r.stdout, r.stdout + r.stderr


def test_deleted_service_releases_its_address_everywhere(dp):
    global SERVICES
    keep = SERVICES
    echo_ip = dp.alloc.cluster_ips["default/echo"]
    try:
        SERVICES = [s for s in keep if s.metadata.name != "echo"]
        res = dp.sync()
        assert all(echo_ip in r.get("addresses", {}).get("removed", []) for r in res.values()), res
        for n in ("n1", "n2", "n3"):
            assert f"{echo_ip}/32" not in dp.sb.nsexec(n, "ip", "-o", "-4", "addr", "show", "dev", "lo").stdout
        with pytest.raises(OSError):
            socket.create_connection((dp.sb.node_address("n1"), ECHO_NODEPORT), timeout=2).close()
    finally:
        SERVICES = keep


# A resolver's way of sending: one socket, one source port, a query every `gap` seconds (bounded in count), each
# answer's A record (or "-": none within `gap`) printed with the query's send time (epoch seconds).
UDP_CLIENT = r"""
import socket, struct, sys, time
host, port, sport, count, gap = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", sport))
qname = b"".join(bytes([len(p)]) + p for p in b"who.gk.test".split(b".")) + b"\0"
for i in range(count):
    t = time.time()
    s.sendto(struct.pack(">HHHHHH", i, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", 1, 1), (host, port))
    ans, end = "-", t + gap
    while time.time() < end:
        s.settimeout(max(0.001, end - time.time()))
        try:
            data = s.recv(512)
        except OSError:
            break
        if data[:2] == struct.pack(">H", i) and struct.unpack(">H", data[6:8])[0] >= 1:
            ans = socket.inet_ntoa(data[-4:])
            break
    print(f"{t:.3f} {ans}", flush=True)
    time.sleep(max(0.0, end - time.time()))
"""
WHO_NODEPORT = 30053


def test_udp_flows_follow_endpoint_changes(dp):
    """kube-proxy's conntrack cleanup: a client that keeps one UDP source port (a resolver) is not held by the
    kernel's entry for an endpoint that left, nor by the entry made while its Service had no endpoint. Both paths:
    a node's own ClusterIP traffic (n3) and NodePort traffic to n2's address from this host."""
    if dp.mode != "iptables":
        pytest.skip("HAProxy proxies TCP only: UDP Services are the kernel proxy's")
    global SERVICES, INFOS
    keep = SERVICES, INFOS
    SERVICES = keep[0] + [service("who", [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353,
                                           "nodePort": WHO_NODEPORT}])]
    INFOS = keep[1] + [ServiceInfo("default", "who", {"app": "who"},
                                   (ServicePortInfo(53, "dns", "UDP", target_port=5353),))]
    clients = []
    try:
        for k, node in ((1, "n1"), (2, "n2")):  # a DNS server per node, answering who.gk.test with its own address
            name = f"{TEST}-who-{node}"
            dp.sb.docker(node, "rm", "-f", name)
            r = dp.sb.docker(node, "run", "-d", "--name", name, "--label", TEST, appimages.DNSMASQ_IMAGE, "--no-resolv",
                             "--no-hosts", "--user=root", "--pid-file=", "--port=5353",
                             f"--address=/who.gk.test/198.18.250.{k}")
            assert r.returncode == 0, r.stderr
            ip = dp.sb.docker(node, "inspect", "-f", "{{.NetworkSettings.IPAddress}}", name).stdout.strip()
            dp.pods[name] = pod_view(name, uid=name, labels={"app": "who"}, ip=ip, node=node, ready=True,
                                     phase="Running")
        others = {n for n in dp.pods if "-who-" not in n}
        who1, who2 = {f"{TEST}-who-n1"}, {f"{TEST}-who-n2"}
        dp.sync(ready=others | who1)
        cip = dp.alloc.cluster_ips["default/who"]
        gap, count = 0.05, 400  # at most 20 s
        argv = [str(count), str(gap)]
        clients = [
            subprocess.Popen(["nsenter", f"--net=/var/run/netns/gk{dp.sb.sid}-n3", sys.executable, "-c", UDP_CLIENT,
                              cip, "53", "40053", *argv], stdout=subprocess.PIPE, text=True),
            subprocess.Popen([sys.executable, "-c", UDP_CLIENT, dp.sb.node_address("n2"), str(WHO_NODEPORT), "40054",
                              *argv], stdout=subprocess.PIPE, text=True),
        ]
        # Queries sent between two syncs must all get the answer of the endpoints in effect: before the first,
        # who-n1's; then who-n2's alone (who-n1 left); then none; then who-n1's (the port's first endpoint again).
        windows, lo, want = [], time.time(), "198.18.250.1"
        for ready, answer in ((who2, "198.18.250.2"), (set(), "-"), (who1, "198.18.250.1")):
            time.sleep(1.5)
            begin = time.time()
            windows.append((lo, begin, want))
            dp.sync(ready=others | ready)
            lo, want = time.time(), answer
        time.sleep(1.5)
        windows.append((lo, time.time(), want))
    finally:
        for c in clients:
            c.terminate()
        outs = [c.communicate(timeout=30)[0] for c in clients]
        SERVICES, INFOS = keep
        for n in [n for n in dp.pods if "-who-" in n]:
            del dp.pods[n]
    for path, out in zip(("ClusterIP from n3", "NodePort on n2"), outs):
        seen = [(float(a), b) for a, b in (ln.split() for ln in out.splitlines())]
        for lo, hi, want in windows:
            got = [ans for sent, ans in seen if lo <= sent < hi]
            assert len(got) >= 10 and set(got) == {want}, (path, want, got)
        first = min(sent for sent, ans in seen if sent >= begin and ans == "198.18.250.1")
        print(f"\n{path}: the first endpoint of a UDP port that had none answered a query sent "
              f"{(first - begin) * 1000:.0f} ms after the sync began")
