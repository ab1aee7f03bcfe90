"""How objects look to an operator: kubectl's tables, ages, describe pages and Kubernetes-shaped JSON (pure functions)."""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone

from gitkube.api.views import NodeView, PodView, parse_time
from gitkube.api import resources as _res
from gitkube.api.config import redact, redacted_size

# resource name/alias -> (kind, namespaced), from the resource table (gitkube.api.resources)
RESOURCES: dict[str, tuple[str, bool]] = {n: (r.kind, r.namespaced) for n, r in _res.ALIASES.items()}
NAMESPACED = {r.kind: r.namespaced for r in _res.RESOURCES}
# `-o name` prefix per kind, as kubectl prints it
NAME_PREFIX = {r.kind: r.qualified_name for r in _res.RESOURCES}
NONE = "<none>"


def resolve_resource(name: str) -> tuple[str, bool]:
    """Decides which kind a resource name or alias (pods, po, rc, svc…) means, and whether it is namespaced."""
    r = _res.resolve(name)
    return r.kind, r.namespaced


# ---- time ----------------------------------------------------------------------------------------
def as_datetime(ts: str | datetime | None) -> datetime | None:
    """A timestamp (RFC 3339, read by gitkube.api.views.parse_time) or a datetime as an aware datetime."""
    if ts is None or ts == "":
        return None
    if isinstance(ts, datetime):
        return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)
    t = parse_time(ts)
    return None if t is None else datetime.fromtimestamp(t, timezone.utc)


def human_duration(seconds: float) -> str:
    """Decides kubectl's short form of a duration: 45s, 5m10s, 3h2m, 4d, 2y30d."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    years = days // 365
    if days < 365 * 8:
        return f"{years}y{days % 365}d" if days % 365 else f"{years}y"
    return f"{years}y"


def format_age(ts: str | datetime | None, now: datetime | None = None) -> str:
    """Decides the AGE column for a timestamp relative to now ('<unknown>' when absent)."""
    t = as_datetime(ts)
    if t is None:
        return "<unknown>"
    now = now or datetime.now(timezone.utc)
    return human_duration((now - t).total_seconds())


def format_date(ts: str | datetime | None) -> str:
    """Decides describe's date form: RFC 1123 with numeric zone (Mon, 02 Jan 2006 15:04:05 +0000)."""
    t = as_datetime(ts)
    return t.strftime("%a, %d %b %Y %H:%M:%S %z") if t else NONE


# ---- tables --------------------------------------------------------------------------------------
def tabwrite(text: str, padding: int = 2, minwidth: int = 0) -> str:
    """Aligns tab-separated cells the way Go's text/tabwriter does (column blocks of consecutive lines)."""
    lines = text.split("\n")
    cells = [line.split("\t") for line in lines]
    widths = [[0] * (len(c) - 1) for c in cells]

    def block(start: int, end: int, col: int) -> None:
        i = start
        while i < end:
            if len(cells[i]) - 1 <= col:
                i += 1
                continue
            j = i
            while j < end and len(cells[j]) - 1 > col:
                j += 1
            w = max(minwidth, max(len(cells[k][col]) for k in range(i, j)) + padding)
            for k in range(i, j):
                widths[k][col] = w
            block(i, j, col + 1)
            i = j

    block(0, len(lines), 0)
    return "\n".join("".join(c.ljust(w[k]) for k, c in enumerate(cs[:-1])) + cs[-1] for cs, w in zip(cells, widths))


def render_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Renders kubectl's plain table: upper-case headers, columns 3 spaces apart, no trailing padding."""
    lines = ["\t".join(headers)] + ["\t".join(str(c) for c in r) for r in rows]
    return "\n".join(line.rstrip() for line in tabwrite("\n".join(lines), padding=3, minwidth=6).split("\n")) + "\n"


def kube_object(obj: Mapping) -> dict:
    """Decides an object's Kubernetes JSON shape: apiVersion, kind, metadata, spec and status (Events as they are),
    with the fields a real API server derives from the others (a pod's qosClass and hostIPs, a Service's
    clusterIPs and IP families), so the official clients and kubectl see what they expect."""
    res = _res.BY_KIND.get(obj.get("kind"))
    out = {"apiVersion": obj.get("apiVersion") or (res.api_version if res else "v1"), "kind": obj.get("kind"),
           "metadata": obj.get("metadata", {})}
    if obj.get("kind") in ("Event", "Endpoints", "ConfigMap", "Secret"):
        out.update({k: v for k, v in obj.items() if k not in out})
        return redact(out)  # a Secret's values never leave: keys and sizes only
    out["spec"] = obj.get("spec") or {}
    status = obj.get("status")
    if not status and obj.get("kind") == "Pod":
        status = {"phase": "Pending"}
    out["status"] = status or {}
    out.update({k: v for k, v in obj.items() if k not in out})
    if obj.get("kind") == "Pod":
        st = out["status"] = dict(out["status"])
        st.setdefault("qosClass", qos_class(obj))
        if st.get("hostIP") and not st.get("hostIPs"):
            st["hostIPs"] = [{"ip": st["hostIP"]}]
        if st.get("podIP") and not st.get("podIPs"):
            st["podIPs"] = [{"ip": st["podIP"]}]
    elif obj.get("kind") == "Service":
        sp = out["spec"] = dict(out["spec"])
        if sp.get("clusterIP") and not sp.get("clusterIPs"):
            sp["clusterIPs"] = [sp["clusterIP"]]
        if sp.get("type", "ClusterIP") != "ExternalName":
            sp.setdefault("ipFamilies", ["IPv4"])
            sp.setdefault("ipFamilyPolicy", "SingleStack")
    return out


def list_object(items: Iterable[Mapping]) -> dict:
    """Wraps objects in Kubernetes' v1 List."""
    return {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""},
            "items": [kube_object(i) for i in items]}


def _meta(obj: Mapping) -> Mapping:
    return obj.get("metadata") or {}


# ---- pods ----------------------------------------------------------------------------------------
def pod_status_reason(pod: Mapping) -> str:
    """Decides kubectl's STATUS for a pod: Terminating, a container's waiting/terminated reason, or the phase."""
    status = pod.get("status") or {}
    reason = status.get("reason") or status.get("phase") or "Pending"
    has_running = False
    for cs in reversed(status.get("containerStatuses") or []):
        state = cs.get("state") or {}
        waiting, term = state.get("waiting"), state.get("terminated")
        if waiting and waiting.get("reason"):
            reason = waiting["reason"]
        elif term and term.get("reason"):
            reason = term["reason"]
        elif term:
            reason = f"Signal:{term['signal']}" if term.get("signal") else f"ExitCode:{term.get('exitCode', 0)}"
        elif cs.get("ready") and state.get("running") is not None:
            has_running = True
    if reason == "Completed" and has_running:
        reason = "Running" if PodView(pod).ready else "NotReady"
    if _meta(pod).get("deletionTimestamp"):
        reason = "Unknown" if status.get("reason") == "NodeLost" else "Terminating"
    return reason


def ready_column(pod: Mapping) -> str:
    """Decides the READY column: ready containers / containers."""
    total = len((pod.get("spec") or {}).get("containers") or [])
    ready = sum(1 for cs in (pod.get("status") or {}).get("containerStatuses") or []
                if cs.get("ready") and (cs.get("state") or {}).get("running") is not None)
    return f"{ready}/{total}"


def pod_restarts(pod: Mapping, now: datetime | None = None) -> str:
    """Decides the RESTARTS column: the sum of restarts, with the age of the last one when known."""
    total, last = 0, None
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        total += int(cs.get("restartCount") or 0)
        t = as_datetime(((cs.get("lastState") or {}).get("terminated") or {}).get("finishedAt"))
        if t and (last is None or t > last):
            last = t
    if total and last:
        return f"{total} ({format_age(last, now)} ago)"
    return str(total)


def _or_none(v) -> str:
    return str(v) if v not in (None, "", [], {}) else NONE


def _labels_text(labels: Mapping | None, sep: str = ",") -> str:
    return sep.join(f"{k}={v}" for k, v in sorted((labels or {}).items())) or NONE


def _svc_ports(svc: Mapping) -> str:
    out = []
    for p in (svc.get("spec") or {}).get("ports") or []:
        proto = p.get("protocol", "TCP")
        out.append(f"{p['port']}:{p['nodePort']}/{proto}" if p.get("nodePort") else f"{p['port']}/{proto}")
    return ",".join(out) or NONE


def _node_status(node: Mapping) -> str:
    ready = NodeView(node).condition("Ready")  # {} when the node has none
    text = "Unknown" if not ready else ("Ready" if ready.get("status") == "True" else "NotReady")
    if (node.get("spec") or {}).get("unschedulable"):
        text += ",SchedulingDisabled"
    return text


def _node_roles(node: Mapping) -> str:
    roles = set()
    for k, v in (_meta(node).get("labels") or {}).items():
        if k.startswith("node-role.kubernetes.io/") and k.split("/", 1)[1]:
            roles.add(k.split("/", 1)[1])
        elif k == "kubernetes.io/role" and v:
            roles.add(v)
    return ",".join(sorted(roles)) or NONE


def _node_address(node: Mapping, kind: str) -> str:
    for a in (node.get("status") or {}).get("addresses") or []:
        if a.get("type") == kind:
            return a.get("address") or NONE
    return NONE


def _endpoints_text(ep: Mapping, limit: int = 3) -> str:
    addrs = []
    for subset in ep.get("subsets") or []:
        ports = subset.get("ports") or [{}]
        for a in subset.get("addresses") or []:
            for p in ports:
                addrs.append(f"{a['ip']}:{p['port']}" if p.get("port") else a["ip"])
    if not addrs:
        return NONE
    text = ",".join(addrs[:limit])
    return text + (f" + {len(addrs) - limit} more..." if len(addrs) > limit else "")


def involved_text(ev: Mapping) -> str:
    """Decides the OBJECT column of an event: kind/name in lower case."""
    inv = ev.get("involvedObject") or {}
    return f"{str(inv.get('kind', '')).lower()}/{inv.get('name', '')}"


def table_rows(kind: str, objects: Sequence[Mapping], *, wide: bool = False, all_namespaces: bool = False,
               now: datetime | None = None) -> tuple[list[str], list[list[str]]]:
    """Decides kubectl's columns and cells for a list of objects of one kind (-o wide and -A variants).
    Over 60 lines: one branch per kind, side by side as kubectl's printers define them; split, the columns of
    different kinds would no longer be comparable at a glance."""
    now = now or datetime.now(timezone.utc)

    def age(o):
        return format_age(_meta(o).get("creationTimestamp"), now)

    if kind == "Pod":
        headers = ["NAME", "READY", "STATUS", "RESTARTS", "AGE"] + (["IP", "NODE"] if wide else [])
        rows = []
        for p in objects:
            st, sp = p.get("status") or {}, p.get("spec") or {}
            row = [_meta(p)["name"], ready_column(p), pod_status_reason(p), pod_restarts(p, now), age(p)]
            if wide:
                row += [_or_none(st.get("podIP")), _or_none(sp.get("nodeName"))]
            rows.append(row)
    elif kind == "ReplicationController":
        headers = ["NAME", "DESIRED", "CURRENT", "READY", "AGE"] + (["CONTAINERS", "IMAGES", "SELECTOR"] if wide else [])
        rows = []
        for rc in objects:
            sp, st = rc.get("spec") or {}, rc.get("status") or {}
            row = [_meta(rc)["name"], str(sp.get("replicas", 1)), str(st.get("replicas", 0)),
                   str(st.get("readyReplicas", 0)), age(rc)]
            if wide:
                cs = ((sp.get("template") or {}).get("spec") or {}).get("containers") or []
                row += [",".join(c["name"] for c in cs) or NONE, ",".join(c.get("image", "") for c in cs) or NONE,
                        _labels_text(sp.get("selector"))]
            rows.append(row)
    elif kind in ("Deployment", "ReplicaSet"):
        headers, rows = _apps_rows(kind, objects, wide, age)
    elif kind == "Service":
        headers = ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"] + (["SELECTOR"] if wide else [])
        rows = []
        for s in objects:
            sp = s.get("spec") or {}
            typ = sp.get("type", "ClusterIP")
            ext = ",".join(sp.get("externalIPs") or []) or ("<pending>" if typ == "LoadBalancer" else NONE)
            row = [_meta(s)["name"], typ, _or_none(sp.get("clusterIP")), ext, _svc_ports(s), age(s)]
            if wide:
                row.append(_labels_text(sp.get("selector")))
            rows.append(row)
    elif kind == "Node":
        headers = ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
        if wide:
            headers += ["INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"]
        rows = []
        for n in objects:
            info = (n.get("status") or {}).get("nodeInfo") or {}
            row = [_meta(n)["name"], _node_status(n), _node_roles(n), age(n), info.get("kubeletVersion", "")]
            if wide:
                row += [_node_address(n, "InternalIP"), _node_address(n, "ExternalIP"),
                        info.get("osImage") or "<unknown>", info.get("kernelVersion") or "<unknown>",
                        info.get("containerRuntimeVersion") or "<unknown>"]
            rows.append(row)
    elif kind == "Namespace":
        headers = ["NAME", "STATUS", "AGE"]
        rows = [[_meta(n)["name"], "Terminating" if _meta(n).get("deletionTimestamp")
                 else (n.get("status") or {}).get("phase", "Active"), age(n)] for n in objects]
    elif kind == "Endpoints":
        headers = ["NAME", "ENDPOINTS", "AGE"]
        rows = [[_meta(e)["name"], _endpoints_text(e), age(e)] for e in objects]
    elif kind == "Event":
        headers = ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
        rows = [[format_age(e.get("lastTimestamp") or e.get("firstTimestamp"), now), e.get("type", ""),
                 e.get("reason", ""), involved_text(e), " ".join(str(e.get("message", "")).split())]
                for e in objects]
    elif kind == "ConfigMap":
        headers = ["NAME", "DATA", "AGE"]
        rows = [[_meta(c)["name"], str(len(c.get("data") or {}) + len(c.get("binaryData") or {})), age(c)]
                for c in objects]
    elif kind == "Secret":
        headers = ["NAME", "TYPE", "DATA", "AGE"]
        rows = [[_meta(c)["name"], c.get("type", "Opaque"), str(len(c.get("data") or {})), age(c)] for c in objects]
    else:
        raise KeyError(kind)
    if all_namespaces and NAMESPACED.get(kind):
        headers = ["NAMESPACE"] + headers
        rows = [[_meta(o).get("namespace", "")] + r for o, r in zip(objects, rows)]
    return headers, rows


def label_selector_text(sel: Mapping | None) -> str:
    """metav1.FormatLabelSelector: `a=b,c in (x,y),!d`, `<none>` when empty."""
    if not sel:
        return NONE
    parts = [f"{k}={v}" for k, v in sorted((sel.get("matchLabels") or {}).items())]
    for r in sel.get("matchExpressions") or []:
        op, vals = r.get("operator"), ",".join(r.get("values") or [])
        parts.append({"In": f"{r['key']} in ({vals})", "NotIn": f"{r['key']} notin ({vals})", "Exists": r["key"],
                      "DoesNotExist": f"!{r['key']}"}.get(op, r["key"]))
    return ",".join(parts) or NONE


def _apps_rows(kind: str, objects: Sequence[Mapping], wide: bool, age) -> tuple[list[str], list[list[str]]]:
    """kubectl's deployment (NAME READY UP-TO-DATE AVAILABLE AGE) and replicaset (NAME DESIRED CURRENT READY AGE) rows."""
    if kind == "Deployment":
        headers = ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    else:
        headers = ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
    if wide:
        headers += ["CONTAINERS", "IMAGES", "SELECTOR"]
    rows = []
    for o in objects:
        sp, st = o.get("spec") or {}, o.get("status") or {}
        want = sp.get("replicas", 1)
        if kind == "Deployment":
            row = [_meta(o)["name"], f"{st.get('readyReplicas', 0)}/{want}", str(st.get("updatedReplicas", 0)),
                   str(st.get("availableReplicas", 0)), age(o)]
        else:
            row = [_meta(o)["name"], str(want), str(st.get("replicas", 0)), str(st.get("readyReplicas", 0)), age(o)]
        if wide:
            cs = ((sp.get("template") or {}).get("spec") or {}).get("containers") or []
            row += [",".join(c["name"] for c in cs) or NONE, ",".join(c.get("image", "") for c in cs) or NONE,
                    label_selector_text(sp.get("selector"))]
        rows.append(row)
    return headers, rows


def object_name(obj: Mapping) -> str:
    """Decides `-o name` output: pod/NAME, service/NAME…"""
    return f"{NAME_PREFIX.get(obj.get('kind'), str(obj.get('kind', '')).lower())}/{_meta(obj).get('name', '')}"


# ---- describe ------------------------------------------------------------------------------------
class _Page:
    """Lines at indentation levels, cells tab-separated, aligned at the end like kubectl's describe."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, level: int, *cells: object) -> None:
        self.lines.append("  " * level + "\t".join("" if c is None else str(c) for c in cells))

    def labels(self, level: int, title: str, labels: Mapping | None) -> None:
        items = [f"{k}={v}" for k, v in sorted((labels or {}).items())]
        self.add(level, f"{title}:", items[0] if items else NONE)
        for item in items[1:]:
            self.add(level, "", item)

    def text(self) -> str:
        return tabwrite("\n".join(self.lines), padding=2) + "\n"


def _events_section(page: _Page, events: Sequence[Mapping], now: datetime | None) -> None:
    if not events:
        page.add(0, "Events:", NONE)
        return
    page.add(0, "Events:")
    page.add(1, "Type", "Reason", "Age", "From", "Message")
    page.add(1, "----", "------", "----", "----", "-------")
    for e in events:
        age = format_age(e.get("lastTimestamp"), now)
        if int(e.get("count") or 1) > 1:
            age = f"{age} (x{e['count']} over {format_age(e.get('firstTimestamp'), now)})"
        src = e.get("source") or {}
        frm = src.get("component", "") + (f", {src['host']}" if src.get("host") else "")
        page.add(1, e.get("type", ""), e.get("reason", ""), age, frm, e.get("message", ""))


def _probe_text(p: Mapping) -> str:
    if p.get("httpGet"):
        h = p["httpGet"]
        what = f"http-get {str(h.get('scheme', 'HTTP')).lower()}://{h.get('host', '')}:{h.get('port')}{h.get('path', '/')}"
    elif p.get("tcpSocket"):
        what = f"tcp-socket {p['tcpSocket'].get('host', '')}:{p['tcpSocket'].get('port')}"
    elif p.get("exec"):
        what = f"exec [{' '.join(p['exec'].get('command') or [])}]"
    else:
        what = "unknown"
    return (f"{what} delay={p.get('initialDelaySeconds', 0)}s timeout={p.get('timeoutSeconds', 1)}s "
            f"period={p.get('periodSeconds', 10)}s #success={p.get('successThreshold', 1)} "
            f"#failure={p.get('failureThreshold', 3)}")


def _state_lines(page: _Page, title: str, state: Mapping | None) -> None:
    state = state or {}
    if state.get("running") is not None:
        page.add(2, f"{title}:", "Running")
        page.add(3, "Started:", format_date(state["running"].get("startedAt")))
    elif state.get("waiting") is not None:
        page.add(2, f"{title}:", "Waiting")
        page.add(3, "Reason:", state["waiting"].get("reason", ""))
    elif state.get("terminated") is not None:
        t = state["terminated"]
        page.add(2, f"{title}:", "Terminated")
        page.add(3, "Reason:", t.get("reason", ""))
        if t.get("message"):
            page.add(3, "Message:", t["message"])
        page.add(3, "Exit Code:", t.get("exitCode", 0))
        if t.get("signal"):
            page.add(3, "Signal:", t["signal"])
        page.add(3, "Started:", format_date(t.get("startedAt")))
        page.add(3, "Finished:", format_date(t.get("finishedAt")))
    else:
        page.add(2, f"{title}:", "Waiting" if title == "State" else NONE)


def _ports_lines(page: _Page, level: int, ports: Sequence[Mapping]) -> None:
    if not ports:
        page.add(level, "Port:", NONE)
        page.add(level, "Host Port:", NONE)
        return
    label = "Port:" if len(ports) == 1 else "Ports:"
    page.add(level, label, ", ".join(f"{p['containerPort']}/{p.get('protocol', 'TCP')}" for p in ports))
    page.add(level, "Host " + label, ", ".join(f"{p.get('hostPort', 0)}/{p.get('protocol', 'TCP')}" for p in ports))


def _container_lines(page: _Page, c: Mapping, cs: Mapping | None, level: int = 1) -> None:
    page.add(level, f"{c['name']}:")
    lv = level + 1
    if cs is not None:
        page.add(lv, "Container ID:", cs.get("containerID", ""))
    page.add(lv, "Image:", c.get("image", ""))
    if cs is not None:
        page.add(lv, "Image ID:", cs.get("imageID", ""))
    _ports_lines(page, lv, c.get("ports") or [])
    for title, key in (("Command", "command"), ("Args", "args")):
        if c.get(key):
            page.add(lv, f"{title}:")
            for a in c[key]:
                page.add(lv + 1, a)
    if cs is not None:
        _state_lines(page, "State", cs.get("state"))
        if cs.get("lastState"):
            _state_lines(page, "Last State", cs.get("lastState"))
        page.add(lv, "Ready:", "True" if cs.get("ready") else "False")
        page.add(lv, "Restart Count:", cs.get("restartCount", 0))
    res = c.get("resources") or {}
    for title, key in (("Limits", "limits"), ("Requests", "requests")):
        if res.get(key):
            page.add(lv, f"{title}:")
            for k, v in sorted(res[key].items()):
                page.add(lv + 1, f"{k}:", v)
    for title, key in (("Liveness", "livenessProbe"), ("Readiness", "readinessProbe")):
        if c.get(key):
            page.add(lv, f"{title}:", _probe_text(c[key]))
    env = c.get("env") or []
    if not env:
        page.add(lv, "Environment:", NONE)
    else:
        page.add(lv, "Environment:")
        for e in env:
            if "valueFrom" in e:
                ref = (e["valueFrom"] or {}).get("fieldRef") or {}
                page.add(lv + 1, f"{e['name']}:", f" ({ref.get('apiVersion', 'v1')}:{ref.get('fieldPath', '')})")
            else:
                page.add(lv + 1, f"{e['name']}:", e.get("value", ""))
    mounts = c.get("volumeMounts") or []
    if not mounts:
        page.add(lv, "Mounts:", NONE)
    else:
        page.add(lv, "Mounts:")
        for m in mounts:
            page.add(lv + 1, f"{m['mountPath']} from {m['name']} ({'ro' if m.get('readOnly') else 'rw'})")


def _volume_lines(page: _Page, volumes: Sequence[Mapping], level: int = 0) -> None:
    if not volumes:
        page.add(level, "Volumes:", NONE)
        return
    page.add(level, "Volumes:")
    for v in volumes:
        page.add(level + 1, f"{v['name']}:")
        if "hostPath" in v:
            page.add(level + 2, "Type:", "HostPath (bare host directory volume)")
            page.add(level + 2, "Path:", v["hostPath"].get("path", ""))
            page.add(level + 2, "HostPathType:", v["hostPath"].get("type", ""))
        else:
            ed = v.get("emptyDir") or {}
            page.add(level + 2, "Type:", "EmptyDir (a temporary directory that shares a pod's lifetime)")
            page.add(level + 2, "Medium:", ed.get("medium", ""))
            page.add(level + 2, "SizeLimit:", ed.get("sizeLimit", "<unset>"))


def qos_class(pod: Mapping) -> str:
    """Decides a pod's QoS class: Guaranteed, Burstable or BestEffort."""
    containers = (pod.get("spec") or {}).get("containers") or []
    if not any((c.get("resources") or {}).get("requests") or (c.get("resources") or {}).get("limits")
               for c in containers):
        return "BestEffort"
    for c in containers:
        res = c.get("resources") or {}
        limits, requests = res.get("limits") or {}, res.get("requests") or {}
        for r in ("cpu", "memory"):
            if r not in limits or requests.get(r, limits[r]) != limits[r]:
                return "Burstable"
    return "Guaranteed"


def _controlled_by(obj: Mapping) -> str | None:
    for ref in _meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return f"{ref.get('kind')}/{ref.get('name')}"
    return None


def describe_pod(pod: Mapping, events: Sequence[Mapping] = (), now: datetime | None = None) -> str:
    """Renders `describe pod`: identity, node, status, containers with state, conditions, volumes, events."""
    m, sp, st = _meta(pod), pod.get("spec") or {}, pod.get("status") or {}
    page = _Page()
    page.add(0, "Name:", m.get("name"))
    page.add(0, "Namespace:", m.get("namespace", "default"))
    node = sp.get("nodeName")
    page.add(0, "Node:", f"{node}/{st['hostIP']}" if node and st.get("hostIP") else (node or NONE))
    if st.get("startTime"):
        page.add(0, "Start Time:", format_date(st["startTime"]))
    page.labels(0, "Labels", m.get("labels"))
    page.labels(0, "Annotations", m.get("annotations"))
    if m.get("deletionTimestamp"):
        page.add(0, "Status:", f"Terminating (lasts {format_age(m['deletionTimestamp'], now)})")
        page.add(0, "Termination Grace Period:", f"{sp.get('terminationGracePeriodSeconds', 30)}s")
    else:
        page.add(0, "Status:", st.get("phase", "Pending"))
    if st.get("reason"):
        page.add(0, "Reason:", st["reason"])
    if st.get("message"):
        page.add(0, "Message:", st["message"])
    page.add(0, "IP:", st.get("podIP", ""))
    if st.get("podIP"):
        page.add(0, "IPs:")
        page.add(1, "IP:", st["podIP"])
    else:
        page.add(0, "IPs:", NONE)
    owner = _controlled_by(pod)
    if owner:
        page.add(0, "Controlled By:", owner)
    page.add(0, "Containers:")
    statuses = {cs.get("name"): cs for cs in st.get("containerStatuses") or []}
    for c in sp.get("containers") or []:
        _container_lines(page, c, statuses.get(c["name"], {} if st.get("containerStatuses") else None))
    conds = st.get("conditions") or []
    if conds:
        page.add(0, "Conditions:")
        page.add(1, "Type", "Status")
        for c in conds:
            page.add(1, c.get("type"), c.get("status"))
    _volume_lines(page, sp.get("volumes") or [])
    page.add(0, "QoS Class:", qos_class(pod))
    page.labels(0, "Node-Selectors", sp.get("nodeSelector"))
    page.add(0, "Tolerations:", NONE)
    _events_section(page, events, now)
    return page.text()


def _template_lines(page: "_Page", tmpl: Mapping) -> None:
    """The `Pod Template:` block of a controller's description: labels, containers, volumes."""
    page.add(0, "Pod Template:")
    page.labels(1, "Labels", (tmpl.get("metadata") or {}).get("labels"))
    page.add(1, "Containers:")
    for c in (tmpl.get("spec") or {}).get("containers") or []:
        _container_lines(page, c, None, level=2)
    _volume_lines(page, (tmpl.get("spec") or {}).get("volumes") or [], level=1)


def describe_rc(rc: Mapping, pods: Sequence[Mapping] = (), events: Sequence[Mapping] = (),
                now: datetime | None = None) -> str:
    """Renders `describe rc`: selector, replicas, pod phases, the pod template, events."""
    m, sp, st = _meta(rc), rc.get("spec") or {}, rc.get("status") or {}
    page = _Page()
    page.add(0, "Name:", m.get("name"))
    page.add(0, "Namespace:", m.get("namespace", "default"))
    page.add(0, "Selector:", _labels_text(sp.get("selector")))
    page.labels(0, "Labels", m.get("labels"))
    page.labels(0, "Annotations", m.get("annotations"))
    page.add(0, "Replicas:", f"{st.get('replicas', 0)} current / {sp.get('replicas', 1)} desired")
    phases = [PodView(p).phase for p in pods]
    page.add(0, "Pods Status:", f"{phases.count('Running')} Running / {phases.count('Pending')} Waiting / "
             f"{phases.count('Succeeded')} Succeeded / {phases.count('Failed')} Failed")
    _template_lines(page, sp.get("template") or {})
    _events_section(page, events, now)
    return page.text()


def describe_deployment(d: Mapping, replicasets: Sequence[Mapping] = (), events: Sequence[Mapping] = (),
                        now: datetime | None = None) -> str:
    """Renders `describe deployment` (and, for a ReplicaSet, the same head): replicas, strategy, template,
    conditions, old and new ReplicaSets, events."""
    m, sp, st = _meta(d), d.get("spec") or {}, d.get("status") or {}
    page = _Page()
    page.add(0, "Name:", m.get("name"))
    page.add(0, "Namespace:", m.get("namespace", "default"))
    page.add(0, "CreationTimestamp:", format_date(m.get("creationTimestamp")))
    page.labels(0, "Labels", m.get("labels"))
    page.labels(0, "Annotations", m.get("annotations"))
    page.add(0, "Selector:", label_selector_text(sp.get("selector")))
    if d.get("kind") == "Deployment":
        page.add(0, "Replicas:", f"{sp.get('replicas', 1)} desired | {st.get('updatedReplicas', 0)} updated | "
                 f"{st.get('replicas', 0)} total | {st.get('availableReplicas', 0)} available | "
                 f"{st.get('unavailableReplicas', 0)} unavailable")
        strategy = sp.get("strategy") or {}
        page.add(0, "StrategyType:", strategy.get("type", "RollingUpdate"))
        page.add(0, "MinReadySeconds:", sp.get("minReadySeconds", 0))
        ru = strategy.get("rollingUpdate")
        if ru:
            page.add(0, "RollingUpdateStrategy:", f"{ru.get('maxUnavailable')} max unavailable, {ru.get('maxSurge')} max surge")
    else:
        page.add(0, "Replicas:", f"{st.get('replicas', 0)} current / {sp.get('replicas', 1)} desired")
        page.add(0, "Controlled By:", _controlled_by(d) or NONE)
    _template_lines(page, sp.get("template") or {})
    if st.get("conditions"):
        page.add(0, "Conditions:")
        page.add(1, "Type", "Status", "Reason")
        page.add(1, "----", "------", "------")
        for c in st["conditions"]:
            page.add(1, c.get("type", ""), c.get("status", ""), c.get("reason", ""))
    if d.get("kind") == "Deployment":
        def rs_text(rs):
            rst = rs.get("status") or {}
            return f"{_meta(rs)['name']} ({rst.get('replicas', 0)}/{(rs.get('spec') or {}).get('replicas', 0)} replicas created)"
        new = [rs for rs in replicasets if ((_meta(rs).get("annotations") or {}).get("deployment.kubernetes.io/revision")
                                            == (m.get("annotations") or {}).get("deployment.kubernetes.io/revision"))]
        old = [rs for rs in replicasets if rs not in new and ((rs.get("spec") or {}).get("replicas") or (rs.get("status") or {}).get("replicas"))]
        page.add(0, "OldReplicaSets:", ", ".join(rs_text(r) for r in old) or NONE)
        page.add(0, "NewReplicaSet:", ", ".join(rs_text(r) for r in new) or NONE)
    _events_section(page, events, now)
    return page.text()


def describe_service(svc: Mapping, endpoints: Mapping | None = None, events: Sequence[Mapping] = (),
                     now: datetime | None = None) -> str:
    """Renders `describe svc`: selector, type, IP, each port with target and node port, endpoints, events."""
    m, sp = _meta(svc), svc.get("spec") or {}
    page = _Page()
    page.add(0, "Name:", m.get("name"))
    page.add(0, "Namespace:", m.get("namespace", "default"))
    page.labels(0, "Labels", m.get("labels"))
    page.labels(0, "Annotations", m.get("annotations"))
    page.add(0, "Selector:", _labels_text(sp.get("selector")))
    page.add(0, "Type:", sp.get("type", "ClusterIP"))
    page.add(0, "IP:", sp.get("clusterIP") or NONE)
    for p in sp.get("ports") or []:
        proto = p.get("protocol", "TCP")
        page.add(0, "Port:", p.get("name") or "<unset>", f"{p['port']}/{proto}")
        page.add(0, "TargetPort:", f"{p.get('targetPort', p['port'])}/{proto}")
        if p.get("nodePort"):
            page.add(0, "NodePort:", p.get("name") or "<unset>", f"{p['nodePort']}/{proto}")
    page.add(0, "Endpoints:", _endpoints_text(endpoints) if endpoints else NONE)
    page.add(0, "Session Affinity:", sp.get("sessionAffinity", "None"))
    _events_section(page, events, now)
    return page.text()


def describe_node(node: Mapping, pods: Sequence[Mapping] = (), events: Sequence[Mapping] = (),
                  now: datetime | None = None) -> str:
    """Renders `describe node`: roles, conditions, addresses, capacity, system info, its pods, events."""
    m, sp, st = _meta(node), node.get("spec") or {}, node.get("status") or {}
    page = _Page()
    page.add(0, "Name:", m.get("name"))
    page.add(0, "Roles:", _node_roles(node))
    page.labels(0, "Labels", m.get("labels"))
    page.labels(0, "Annotations", m.get("annotations"))
    page.add(0, "CreationTimestamp:", format_date(m.get("creationTimestamp")))
    page.add(0, "Unschedulable:", "true" if sp.get("unschedulable") else "false")
    conds = st.get("conditions") or []
    if conds:
        page.add(0, "Conditions:")
        page.add(1, "Type", "Status", "LastHeartbeatTime", "LastTransitionTime", "Reason", "Message")
        page.add(1, "----", "------", "-----------------", "------------------", "------", "-------")
        for c in conds:
            page.add(1, c.get("type"), c.get("status"), format_date(c.get("lastHeartbeatTime")),
                     format_date(c.get("lastTransitionTime")), c.get("reason", ""), c.get("message", ""))
    else:
        page.add(0, "Conditions:", NONE)
    page.add(0, "Addresses:")
    for a in st.get("addresses") or []:
        page.add(1, f"{a.get('type')}:", a.get("address"))
    for title, key in (("Capacity", "capacity"), ("Allocatable", "allocatable")):
        if st.get(key):
            page.add(0, f"{title}:")
            for k, v in sorted(st[key].items()):
                page.add(1, f"{k}:", v)
    info = st.get("nodeInfo") or {}
    page.add(0, "System Info:")
    for title, key in (("Machine ID", "machineID"), ("Kernel Version", "kernelVersion"), ("OS Image", "osImage"),
                       ("Operating System", "operatingSystem"), ("Architecture", "architecture"),
                       ("Container Runtime Version", "containerRuntimeVersion"),
                       ("Kubelet Version", "kubeletVersion")):
        page.add(1, f"{title}:", info.get(key, ""))
    live = [p for p in pods if not PodView(p).terminal]
    page.add(0, "Non-terminated Pods:", f"({len(live)} in total)")
    if live:
        page.add(1, "Namespace", "Name", "CPU Requests", "CPU Limits", "Memory Requests", "Memory Limits", "Age")
        page.add(1, "---------", "----", "------------", "----------", "---------------", "-------------", "---")
        for p in live:
            res = [(c.get("resources") or {}) for c in (p.get("spec") or {}).get("containers") or []]

            def cell(kind, r):
                vals = [x.get(kind, {}).get(r) for x in res if x.get(kind, {}).get(r)]
                return "+".join(vals) or "0"

            page.add(1, _meta(p).get("namespace", ""), _meta(p).get("name", ""), cell("requests", "cpu"),
                     cell("limits", "cpu"), cell("requests", "memory"), cell("limits", "memory"),
                     format_age(_meta(p).get("creationTimestamp"), now))
    _events_section(page, events, now)
    return page.text()


def describe_namespace(ns: Mapping, events: Sequence[Mapping] = (), now: datetime | None = None) -> str:
    """Renders `describe ns`: name, labels, status."""
    m = _meta(ns)
    page = _Page()
    page.add(0, "Name:", m.get("name"))
    page.labels(0, "Labels", m.get("labels"))
    page.labels(0, "Annotations", m.get("annotations"))
    page.add(0, "Status:", "Terminating" if m.get("deletionTimestamp") else (ns.get("status") or {}).get("phase", "Active"))
    page.add(0, "")
    page.add(0, "No resource quota.")
    page.add(0, "")
    page.add(0, "No LimitRange resource.")
    return page.text()


# ---- rollouts ------------------------------------------------------------------------------------
def rollout_status(d: Mapping) -> tuple[bool, bool, str]:
    """kubectl's DeploymentStatusViewer: (done, failed, message) for a stored Deployment."""
    m, sp, st = _meta(d), d.get("spec") or {}, d.get("status") or {}
    name = m.get("name")
    if int(m.get("generation") or 1) > int(st.get("observedGeneration") or 0):
        return False, False, "Waiting for deployment spec update to be observed..."
    prog = next((c for c in st.get("conditions") or [] if c.get("type") == "Progressing"), None)
    if prog and prog.get("reason") == "ProgressDeadlineExceeded":
        return False, True, f'deployment "{name}" exceeded its progress deadline'
    want, updated = sp.get("replicas", 1), st.get("updatedReplicas", 0)
    if updated < want:
        return False, False, (f'Waiting for deployment "{name}" rollout to finish: {updated} out of {want} new replicas '
                              "have been updated...")
    if st.get("replicas", 0) > updated:
        return False, False, (f'Waiting for deployment "{name}" rollout to finish: {st.get("replicas", 0) - updated} old '
                              "replicas are pending termination...")
    if st.get("availableReplicas", 0) < updated:
        return False, False, (f'Waiting for deployment "{name}" rollout to finish: {st.get("availableReplicas", 0)} of '
                              f"{updated} updated replicas are available...")
    return True, False, f'deployment "{name}" successfully rolled out'


def template_images(tmpl: Mapping | None) -> str:
    """A pod template's image tags, for `v1 → v2` lines: `v1` (several containers: `v1,7`)."""
    images = [c.get("image", "") for c in ((tmpl or {}).get("spec") or {}).get("containers") or []]
    tags = [i.rsplit("/", 1)[-1].split(":", 1)[1] if ":" in i.rsplit("/", 1)[-1] else i for i in images]
    return ",".join(tags) or NONE


def describe_configmap(cm: Mapping, events: Sequence[Mapping] = (), now: datetime | None = None) -> str:
    """Renders `describe configmap`: name, labels, annotations, every key with its value, events."""
    m = _meta(cm)
    page = _Page()
    page.add(0, "Name:", m["name"])
    page.add(0, "Namespace:", m.get("namespace", "default"))
    page.labels(0, "Labels", m.get("labels"))
    page.labels(0, "Annotations", m.get("annotations"))
    lines = [page.text().rstrip("\n"), "", "Data", "===="]
    for k, v in sorted((cm.get("data") or {}).items()):
        lines += [f"{k}:", "----", str(v), ""]
    lines += ["", "BinaryData", "===="]
    for k, v in sorted((cm.get("binaryData") or {}).items()):
        lines.append(f"{k}: {len(v) * 3 // 4 - v.count('=', -2)} bytes")
    ev = _Page()
    _events_section(ev, events, now)
    return "\n".join(lines) + "\n\n" + ev.text()


def describe_secret(secret: Mapping, events: Sequence[Mapping] = (), now: datetime | None = None) -> str:
    """Renders `describe secret` as kubectl does: the keys and their sizes, never a value."""
    s = redact(secret)
    m = _meta(s)
    page = _Page()
    page.add(0, "Name:", m["name"])
    page.add(0, "Namespace:", m.get("namespace", "default"))
    page.labels(0, "Labels", m.get("labels"))
    page.labels(0, "Annotations", m.get("annotations"))
    lines = [page.text().rstrip("\n"), "", f"Type:  {s.get('type', 'Opaque')}", "", "Data", "===="]
    for k, v in sorted((s.get("data") or {}).items()):
        lines.append(f"{k}:  {redacted_size(v)} bytes")
    ev = _Page()
    _events_section(ev, events, now)
    return "\n".join(lines) + "\n\n" + ev.text()
