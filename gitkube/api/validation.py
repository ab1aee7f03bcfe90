"""What the apiserver refuses beyond types: names, labels, ranges, duplicates and cross-field rules."""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

from gitkube.api import names
from gitkube.api.labels import Selector
from gitkube.api.models import (
    Container,
    Deployment,
    LabelSelector,
    PodTemplateSpec,
    ReplicaSet,
    Endpoints,
    Event,
    K8sModel,
    Namespace,
    Node,
    ObjectMeta,
    Pod,
    PodSpec,
    Probe,
    ReplicationController,
    Service,
)
from gitkube.api.quantity import parse_quantity
from gitkube.api.config import config_key, validate_configmap, validate_secret

Loc = tuple[str | int, ...]
Errors = list[tuple[Loc, str]]

# The downward API fields gitkube can fill in when it starts a container.
SUPPORTED_FIELD_PATHS = frozenset({
    "metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName", "spec.serviceAccountName",
    "status.podIP", "status.hostIP",
})
STANDARD_RESOURCES = frozenset({"cpu", "memory", "ephemeral-storage"})
NODE_PORT_RANGE = (30000, 32767)


def _name(errs: Errors, loc: Loc, value: str | None, check: Callable[[str], list[str]]) -> None:
    if value is None or value == "":
        errs.append((loc, "Required value"))
        return
    for e in check(value):
        errs.append((loc, f'Invalid value: "{value}": {e}'))


def _labels(errs: Errors, loc: Loc, labels: dict[str, str] | None, values: bool = True) -> None:
    for k, v in (labels or {}).items():
        for e in names.qualified_name(k):
            errs.append((loc + (k,), f'Invalid value: "{k}": {e}'))
        if values:
            for e in names.label_value(v):
                errs.append((loc + (k,), f'Invalid value: "{v}": {e}'))


def validate_meta(meta: ObjectMeta, namespaced: bool, name_check: Callable[[str], list[str]],
                  loc: Loc = ("metadata",)) -> Errors:
    """Decides whether an object's metadata is acceptable: name syntax, namespace, labels, annotations."""
    errs: Errors = []
    _name(errs, loc + ("name",), meta.name, name_check)
    if namespaced:
        if meta.namespace is not None:
            _name(errs, loc + ("namespace",), meta.namespace, names.dns1123_label)
    elif meta.namespace:
        errs.append((loc + ("namespace",), "Forbidden: not allowed on this cluster-scoped kind"))
    _labels(errs, loc + ("labels",), meta.labels)
    _labels(errs, loc + ("annotations",), meta.annotations, values=False)
    if meta.annotations and sum(len(k) + len(v) for k, v in meta.annotations.items()) > 256 * 1024:
        errs.append((loc + ("annotations",), "Too long: must have at most 262144 bytes"))
    return errs


def _port_range(errs: Errors, loc: Loc, value: int | None, lo: int = 1, hi: int = 65535) -> None:
    if value is not None and not lo <= value <= hi:
        errs.append((loc, f"Invalid value: {value}: must be between {lo} and {hi}, inclusive"))


def _handler(errs: Errors, loc: Loc, h: K8sModel, containers_ports: set[str]) -> None:
    present = [k for k in ("exec", "httpGet", "tcpSocket") if getattr(h, k) is not None]
    if not present:
        errs.append((loc, "Required value: must specify a handler type"))
    for extra in present[1:]:
        errs.append((loc + (extra,), "Forbidden: may not specify more than 1 handler type"))
    if h.exec is not None and not h.exec.command:  # type: ignore[attr-defined]
        errs.append((loc + ("exec", "command"), "Required value"))
    for kind in ("httpGet", "tcpSocket"):
        action = getattr(h, kind)
        if action is None:
            continue
        port = action.port
        if isinstance(port, int):
            _port_range(errs, loc + (kind, "port"), port)
        elif not names.iana_svc_name(port) == []:
            errs.append((loc + (kind, "port"), f'Invalid value: "{port}": must be a port number or a port name'))
        elif port not in containers_ports:
            errs.append((loc + (kind, "port"), f'Invalid value: "{port}": no container port has this name'))


def _probe(errs: Errors, loc: Loc, p: Probe, liveness: bool, port_names: set[str]) -> None:
    _handler(errs, loc, p, port_names)
    for f in ("initialDelaySeconds", "periodSeconds", "timeoutSeconds", "successThreshold", "failureThreshold"):
        v = getattr(p, f)
        if f == "initialDelaySeconds":
            if v < 0:
                errs.append((loc + (f,), f"Invalid value: {v}: must be greater than or equal to 0"))
        elif v < 1:
            errs.append((loc + (f,), f"Invalid value: {v}: must be greater than or equal to 1"))
    if liveness and p.successThreshold != 1:
        errs.append((loc + ("successThreshold",), f"Invalid value: {p.successThreshold}: must be 1"))


def _resources(errs: Errors, loc: Loc, c: Container) -> None:
    r = c.resources
    if r is None:
        return
    parsed: dict[str, dict[str, object]] = {}
    for part in ("requests", "limits"):
        for k, v in (getattr(r, part) or {}).items():
            if k not in STANDARD_RESOURCES and "/" not in k:
                errs.append((loc + (part, k), f'Unsupported value: "{k}": supported values: "cpu", "memory", '
                                             '"ephemeral-storage" or a domain-prefixed extended resource'))
                continue
            q = parse_quantity(v)
            if q < 0:
                errs.append((loc + (part, k), f'Invalid value: "{v}": must be greater than or equal to 0'))
            parsed.setdefault(part, {})[k] = q
    for k, req in parsed.get("requests", {}).items():
        lim = parsed.get("limits", {}).get(k)
        if lim is not None and req > lim:  # type: ignore[operator]
            errs.append((loc + ("requests", k), f'Invalid value: "{r.requests[k]}": must be less than or equal '  # type: ignore[index]
                                                f'to {k} limit of {r.limits[k]}'))  # type: ignore[index]


def _container(errs: Errors, loc: Loc, c: Container, volume_names: set[str], host_network: bool) -> None:
    """Kubernetes' validation of one container, field by field in the API's order. Over 60 lines: a flat list of
    independent checks, each a few lines, in the order of the API reference (split, they would lose that order)."""
    _name(errs, loc + ("name",), c.name, names.dns1123_label)
    if not c.image.strip():
        errs.append((loc + ("image",), "Required value"))
    else:
        for msg in names.image_reference(c.image):
            errs.append((loc + ("image",), f'Invalid value: "{c.image}": {msg}'))
    port_names: set[str] = set()
    seen_ports: set[tuple[int, str]] = set()
    for i, p in enumerate(c.ports or ()):
        ploc = loc + ("ports", i)
        _port_range(errs, ploc + ("containerPort",), p.containerPort)
        _port_range(errs, ploc + ("hostPort",), p.hostPort)
        if host_network and p.hostPort is not None and p.hostPort != p.containerPort:
            errs.append((ploc + ("hostPort",), "Invalid value: must match containerPort when hostNetwork is true"))
        if p.name is not None:
            for e in names.iana_svc_name(p.name):
                errs.append((ploc + ("name",), f'Invalid value: "{p.name}": {e}'))
            if p.name in port_names:
                errs.append((ploc + ("name",), f'Duplicate value: "{p.name}"'))
            port_names.add(p.name)
        if p.hostIP is not None:
            try:
                ipaddress.ip_address(p.hostIP)
            except ValueError:
                errs.append((ploc + ("hostIP",), f'Invalid value: "{p.hostIP}": must be a valid IP address'))
        key = (p.containerPort, p.protocol)
        if key in seen_ports:
            errs.append((ploc + ("containerPort",), f'Duplicate value: "{p.containerPort}/{p.protocol}"'))
        seen_ports.add(key)
    env_names: set[str] = set()
    for i, e in enumerate(c.env or ()):
        eloc = loc + ("env", i)
        if not e.name:
            errs.append((eloc + ("name",), "Required value"))
        elif not names.ENV_VAR_NAME.match(e.name):
            errs.append((eloc + ("name",), f'Invalid value: "{e.name}": a valid environment variable name must '
                                           "consist of alphabetic characters, digits, '_', '-', or '.', "
                                           "and must not start with a digit"))
        env_names.add(e.name)
        if e.valueFrom is not None:
            if e.value:
                errs.append((eloc + ("valueFrom",), "Invalid value: may not be specified when `value` is not empty"))
            ref = e.valueFrom.fieldRef
            sources = [k for k in ("fieldRef", "configMapKeyRef", "secretKeyRef") if getattr(e.valueFrom, k) is not None]
            if len(sources) > 1:
                errs.append((eloc + ("valueFrom",), "Invalid value: may not have more than one field specified at a time"))
            if not sources:
                errs.append((eloc + ("valueFrom",), "Invalid value: must specify one of: `fieldRef`, "
                                                    "`configMapKeyRef` or `secretKeyRef`"))
            for kind in ("configMapKeyRef", "secretKeyRef"):
                sel = getattr(e.valueFrom, kind)
                if sel is not None:
                    config_errs(errs, eloc + ("valueFrom", kind), sel.name, "name", sel.key)
            if ref is not None:
                if ref.apiVersion != "v1":
                    errs.append((eloc + ("valueFrom", "fieldRef", "apiVersion"),
                                 f'Unsupported value: "{ref.apiVersion}": supported values: "v1"'))
                if ref.fieldPath not in SUPPORTED_FIELD_PATHS:
                    errs.append((eloc + ("valueFrom", "fieldRef", "fieldPath"),
                                 f'Unsupported value: "{ref.fieldPath}": supported values: '
                                 + ", ".join(f'"{p}"' for p in sorted(SUPPORTED_FIELD_PATHS))))
    for i, ef in enumerate(c.envFrom or ()):
        floc = loc + ("envFrom", i)
        sources = [k for k in ("configMapRef", "secretRef") if getattr(ef, k) is not None]
        if len(sources) != 1:
            errs.append((floc, "Invalid value: must specify one of: `configMapRef` or `secretRef`" if not sources
                         else "Invalid value: may not have more than one field specified at a time"))
        for kind in sources:
            config_errs(errs, floc + (kind,), getattr(ef, kind).name, "name", None)
        if ef.prefix and not names.ENV_VAR_NAME.match(ef.prefix):
            errs.append((floc + ("prefix",), f'Invalid value: "{ef.prefix}": a valid environment variable name must '
                                             "consist of alphabetic characters, digits, '_', '-', or '.', and must "
                                             "not start with a digit"))
    mount_paths: set[str] = set()
    for i, m in enumerate(c.volumeMounts or ()):
        mloc = loc + ("volumeMounts", i)
        if m.name not in volume_names:
            errs.append((mloc + ("name",), f'Not found: "{m.name}"'))
        if not m.mountPath:
            errs.append((mloc + ("mountPath",), "Required value"))
        elif m.mountPath in mount_paths:
            errs.append((mloc + ("mountPath",), f'Invalid value: "{m.mountPath}": must be unique'))
        elif ":" in m.mountPath:
            errs.append((mloc + ("mountPath",), f'Invalid value: "{m.mountPath}": must not contain \':\''))
        mount_paths.add(m.mountPath)
        if m.subPath and (m.subPath.startswith("/") or ".." in m.subPath.split("/")):
            errs.append((mloc + ("subPath",), f'Invalid value: "{m.subPath}": must be a relative path '
                                              "without '..'"))
    _resources(errs, loc + ("resources",), c)
    if c.livenessProbe is not None:
        _probe(errs, loc + ("livenessProbe",), c.livenessProbe, True, port_names)
    if c.readinessProbe is not None:
        _probe(errs, loc + ("readinessProbe",), c.readinessProbe, False, port_names)
    if c.lifecycle is not None:
        for hook in ("postStart", "preStop"):
            h = getattr(c.lifecycle, hook)
            if h is not None:
                _handler(errs, loc + ("lifecycle", hook), h, port_names)


def config_errs(errs: Errors, loc: Loc, name: str | None, name_field: str, key: str | None) -> None:
    """A reference to a ConfigMap or Secret (and one of its keys) must name them validly."""
    _name(errs, loc + (name_field,), name, names.dns1123_subdomain)
    if key is not None:
        if not key:
            errs.append((loc + ("key",), "Required value"))
        for e in config_key(key) if key else ():
            errs.append((loc + ("key",), f'Invalid value: "{key}": {e}'))


_FILE_MODE = "must be a number between 0 and 0777 (octal), both inclusive"


def config_volume_errs(errs: Errors, loc: Loc, name: str | None, name_field: str, src) -> None:
    """A configMap or secret volume: the object's name, file modes, and items' keys and relative paths."""
    config_errs(errs, loc, name, name_field, None)
    if not 0 <= src.defaultMode <= 0o777:
        errs.append((loc + ("defaultMode",), f"Invalid value: {src.defaultMode}: {_FILE_MODE}"))
    paths: set[str] = set()
    for j, it in enumerate(src.items or ()):
        iloc = loc + ("items", j)
        config_errs(errs, iloc, "x", "name", it.key)
        parts = it.path.split("/")
        if not it.path:
            errs.append((iloc + ("path",), "Required value"))
        elif it.path.startswith("/"):
            errs.append((iloc + ("path",), f'Invalid value: "{it.path}": must be a relative path'))
        elif ".." in parts:
            errs.append((iloc + ("path",), f'Invalid value: "{it.path}": must not contain \'..\''))
        elif it.path.startswith(".."):
            errs.append((iloc + ("path",), f'Invalid value: "{it.path}": must not start with \'..\''))
        elif it.path in paths:
            errs.append((iloc + ("path",), f'Duplicate value: "{it.path}"'))
        paths.add(it.path)
        if it.mode is not None and not 0 <= it.mode <= 0o777:
            errs.append((iloc + ("mode",), f"Invalid value: {it.mode}: {_FILE_MODE}"))


def validate_pod_spec(spec: PodSpec, loc: Loc = ("spec",)) -> Errors:
    """Decides whether a pod spec is acceptable as the apiserver would (names, ports, probes, env, volumes)."""
    errs: Errors = []
    volume_names: set[str] = set()
    for i, v in enumerate(spec.volumes or ()):
        vloc = loc + ("volumes", i)
        _name(errs, vloc + ("name",), v.name, names.dns1123_label)
        if v.name in volume_names:
            errs.append((vloc + ("name",), f'Duplicate value: "{v.name}"'))
        volume_names.add(v.name)
        sources = [k for k in ("emptyDir", "hostPath", "configMap", "secret") if getattr(v, k) is not None]
        if not sources:
            errs.append((vloc, "Required value: must specify a volume type (emptyDir, hostPath, configMap or "
                               "secret)"))
        if v.configMap is not None:
            config_volume_errs(errs, vloc + ("configMap",), v.configMap.name, "name", v.configMap)
        if v.secret is not None:
            config_volume_errs(errs, vloc + ("secret",), v.secret.secretName, "secretName", v.secret)
        for extra in sources[1:]:
            errs.append((vloc + (extra,), "Forbidden: may not specify more than 1 volume type"))
        if v.hostPath is not None:
            for msg in names.host_path(v.hostPath.path):
                errs.append((vloc + ("hostPath", "path"), f'Invalid value: "{v.hostPath.path}": {msg}'))
        if v.emptyDir is not None and v.emptyDir.sizeLimit is not None and parse_quantity(v.emptyDir.sizeLimit) < 0:
            errs.append((vloc + ("emptyDir", "sizeLimit"), "Invalid value: must be greater than or equal to 0"))
    if not spec.containers:
        errs.append((loc + ("containers",), "Required value"))
    container_names: set[str] = set()
    host_ports: set[tuple[int, str, str]] = set()
    for i, c in enumerate(spec.containers):
        cloc = loc + ("containers", i)
        if c.name in container_names:
            errs.append((cloc + ("name",), f'Duplicate value: "{c.name}"'))
        container_names.add(c.name)
        _container(errs, cloc, c, volume_names, bool(spec.hostNetwork))
        for j, p in enumerate(c.ports or ()):
            if p.hostPort:
                key = (p.hostPort, p.protocol, p.hostIP or "")
                if key in host_ports:
                    errs.append((cloc + ("ports", j, "hostPort"), f'Duplicate value: "{p.hostPort}/{p.protocol}"'))
                host_ports.add(key)
    if spec.terminationGracePeriodSeconds < 0:
        errs.append((loc + ("terminationGracePeriodSeconds",), "Invalid value: must be greater than or equal to 0"))
    if spec.activeDeadlineSeconds is not None and spec.activeDeadlineSeconds < 1:
        errs.append((loc + ("activeDeadlineSeconds",), "Invalid value: must be between 1 and 2147483647, inclusive"))
    if spec.nodeName:
        _name(errs, loc + ("nodeName",), spec.nodeName, names.dns1123_subdomain)
    if spec.hostname:
        _name(errs, loc + ("hostname",), spec.hostname, names.dns1123_label)
    if spec.subdomain:
        _name(errs, loc + ("subdomain",), spec.subdomain, names.dns1123_label)
    _labels(errs, loc + ("nodeSelector",), spec.nodeSelector)
    if spec.dnsPolicy == "None":
        errs.append((loc + ("dnsPolicy",), 'Unsupported value: "None": gitkube has no dnsConfig'))
    return errs


def validate_pod(pod: Pod) -> Errors:
    """Decides whether a Pod is acceptable."""
    return validate_meta(pod.metadata, True, names.dns1123_subdomain) + validate_pod_spec(pod.spec)


def validate_rc(rc: ReplicationController) -> Errors:
    """Decides whether a ReplicationController is acceptable: replicas, selector against template, template spec."""
    errs = validate_meta(rc.metadata, True, names.dns1123_subdomain)
    spec = rc.spec
    if spec.replicas < 0:
        errs.append((("spec", "replicas"), f"Invalid value: {spec.replicas}: must be greater than or equal to 0"))
    if spec.minReadySeconds is not None and spec.minReadySeconds < 0:
        errs.append((("spec", "minReadySeconds"), "Invalid value: must be greater than or equal to 0"))
    if not spec.selector:
        errs.append((("spec", "selector"), "Required value"))
    _labels(errs, ("spec", "selector"), spec.selector)
    tmpl = spec.template
    tlabels = (tmpl.metadata.labels if tmpl.metadata else None) or {}
    if spec.selector and not Selector.from_dict(spec.selector).matches(tlabels):
        sel = ",".join(f"{k}={v}" for k, v in sorted(spec.selector.items()))
        errs.append((("spec", "template", "metadata", "labels"),
                     f"Invalid value: `selector` ({sel}) does not match template `labels`"))
    errs += _controller_template(tmpl)
    return errs


def label_selector(sel: LabelSelector | None) -> Selector | None:
    """The Selector of an apps/v1 LabelSelector (None selects nothing; an empty one selects everything)."""
    if sel is None:
        return None
    from gitkube.api.labels import Requirement

    reqs = [Requirement(k, "=", (v,)) for k, v in sorted((sel.matchLabels or {}).items())]
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    reqs += [Requirement(r.key, ops[r.operator], tuple(r.values or ())) for r in sel.matchExpressions or ()]
    return Selector(tuple(reqs))


def _label_selector(errs: Errors, loc: Loc, sel: LabelSelector) -> None:
    _labels(errs, loc + ("matchLabels",), sel.matchLabels)
    for i, r in enumerate(sel.matchExpressions or ()):
        rloc = loc + ("matchExpressions", i)
        for e in names.qualified_name(r.key):
            errs.append((rloc + ("key",), f'Invalid value: "{r.key}": {e}'))
        if r.operator in ("In", "NotIn") and not r.values:
            errs.append((rloc + ("values",), "Required value: must be specified when `operator` is 'In' or 'NotIn'"))
        if r.operator in ("Exists", "DoesNotExist") and r.values:
            errs.append((rloc + ("values",), "Forbidden: may not be specified when `operator` is 'Exists' or "
                                             "'DoesNotExist'"))
        for j, v in enumerate(r.values or ()):
            for e in names.label_value(v):
                errs.append((rloc + ("values", j), f'Invalid value: "{v}": {e}'))


def _selected_template(errs: Errors, sel: LabelSelector, tmpl: PodTemplateSpec) -> None:
    """apps/v1: a selector is required, not empty, and must select the template's labels."""
    _label_selector(errs, ("spec", "selector"), sel)
    selector = label_selector(sel)
    if selector is None or selector.empty():
        errs.append((("spec", "selector"), "Invalid value: empty selector is invalid for deployment"))
    elif not selector.matches((tmpl.metadata.labels if tmpl.metadata else None) or {}):
        errs.append((("spec", "template", "metadata", "labels"),
                     f"Invalid value: `selector` ({selector}) does not match template `labels`"))
    errs += _controller_template(tmpl)


def _non_negative(errs: Errors, loc: Loc, v: int | None) -> None:
    if v is not None and v < 0:
        errs.append((loc, f"Invalid value: {v}: must be greater than or equal to 0"))


_PERCENT = re.compile(r"^[0-9]+%$")


def _int_or_percent(errs: Errors, loc: Loc, v: int | str) -> int | None:
    """Checks a maxSurge/maxUnavailable value; gives it as a number (percent or count) for the cross-field rules."""
    if isinstance(v, int):
        _non_negative(errs, loc, v)
        return v
    if not _PERCENT.match(v):
        errs.append((loc, f'Invalid value: "{v}": a valid percent string must be a numeric string followed by an '
                          "ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"))
        return None
    return int(v[:-1])


def validate_replicaset(rs: ReplicaSet) -> Errors:
    """Decides whether a ReplicaSet is acceptable: replicas, minReadySeconds, selector against template."""
    errs = validate_meta(rs.metadata, True, names.dns1123_subdomain)
    _non_negative(errs, ("spec", "replicas"), rs.spec.replicas)
    _non_negative(errs, ("spec", "minReadySeconds"), rs.spec.minReadySeconds)
    _selected_template(errs, rs.spec.selector, rs.spec.template)
    return errs


def validate_deployment(d: Deployment) -> Errors:
    """Decides whether a Deployment is acceptable: counts, strategy (maxSurge/maxUnavailable), deadlines, selector."""
    errs = validate_meta(d.metadata, True, names.dns1123_subdomain)
    spec = d.spec
    for f in ("replicas", "minReadySeconds", "revisionHistoryLimit", "progressDeadlineSeconds"):
        _non_negative(errs, ("spec", f), getattr(spec, f))
    if spec.progressDeadlineSeconds <= spec.minReadySeconds:
        errs.append((("spec", "progressDeadlineSeconds"), f"Invalid value: {spec.progressDeadlineSeconds}: must be "
                                                          "greater than minReadySeconds"))
    st = spec.strategy
    loc: Loc = ("spec", "strategy", "rollingUpdate")
    if st.type == "Recreate" and st.rollingUpdate is not None:
        errs.append((loc, "Forbidden: may not be specified when strategy `type` is 'Recreate'"))
    elif st.type == "RollingUpdate" and st.rollingUpdate is not None:
        ru = st.rollingUpdate
        unavailable = _int_or_percent(errs, loc + ("maxUnavailable",), ru.maxUnavailable)
        surge = _int_or_percent(errs, loc + ("maxSurge",), ru.maxSurge)
        if unavailable == 0 and surge == 0:
            errs.append((loc + ("maxUnavailable",), f"Invalid value: {_shown(ru.maxUnavailable)}: may not be 0 when "
                                                    "`maxSurge` is 0"))
        if isinstance(ru.maxUnavailable, str) and unavailable is not None and unavailable > 100:
            errs.append((loc + ("maxUnavailable",), f'Invalid value: "{ru.maxUnavailable}": must not be greater '
                                                    "than 100%"))
    _selected_template(errs, spec.selector, spec.template)
    return errs


def _shown(v: int | str) -> str:
    return f'"{v}"' if isinstance(v, str) else str(v)


def validate_service(svc: Service) -> Errors:
    """Decides whether a Service is acceptable: type, clusterIP, ports, nodePorts, selector."""
    errs = validate_meta(svc.metadata, True, names.dns1035_label)
    spec = svc.spec
    if spec.type == "LoadBalancer":
        # gitkube has no cloud load balancer; pretending would leave status.loadBalancer empty forever.
        errs.append((("spec", "type"), 'Unsupported value: "LoadBalancer": supported values: "ClusterIP", '
                                       '"NodePort" (gitkube has no load balancer; use NodePort)'))
    elif spec.type == "ExternalName":
        errs.append((("spec", "type"), 'Unsupported value: "ExternalName": supported values: "ClusterIP", "NodePort"'))
    if spec.sessionAffinity != "None":
        errs.append((("spec", "sessionAffinity"), f'Unsupported value: "{spec.sessionAffinity}": supported values: '
                                                  '"None"'))
    headless = spec.clusterIP == "None"
    if spec.clusterIP not in (None, "", "None"):
        try:
            ipaddress.IPv4Address(spec.clusterIP)
        except ValueError:
            errs.append((("spec", "clusterIP"), f'Invalid value: "{spec.clusterIP}": must be a valid IPv4 address '
                                                'or "None"'))
    if headless and spec.type != "ClusterIP":
        errs.append((("spec", "clusterIP"), 'Invalid value: "None": may only be set for type ClusterIP'))
    ports = spec.ports or ()
    if not ports and not headless:
        errs.append((("spec", "ports"), "Required value"))
    seen_names: set[str] = set()
    seen_ports: set[tuple[int, str]] = set()
    for i, p in enumerate(ports):
        ploc: Loc = ("spec", "ports", i)
        if len(ports) > 1 and not p.name:
            errs.append((ploc + ("name",), "Required value: must be specified when there is more than one port"))
        if p.name:
            for e in names.dns1123_label(p.name):
                errs.append((ploc + ("name",), f'Invalid value: "{p.name}": {e}'))
            if p.name in seen_names:
                errs.append((ploc + ("name",), f'Duplicate value: "{p.name}"'))
            seen_names.add(p.name)
        _port_range(errs, ploc + ("port",), p.port)
        if isinstance(p.targetPort, int) and p.targetPort != p.port:  # a defaulted targetPort would repeat the port's error
            _port_range(errs, ploc + ("targetPort",), p.targetPort)
        elif isinstance(p.targetPort, str) and names.iana_svc_name(p.targetPort):
            errs.append((ploc + ("targetPort",), f'Invalid value: "{p.targetPort}": must be a port number or '
                                                 "a container port name"))
        if p.nodePort is not None:
            if spec.type == "ClusterIP":
                errs.append((ploc + ("nodePort",), "Forbidden: may not be used when `type` is 'ClusterIP'"))
            else:
                _port_range(errs, ploc + ("nodePort",), p.nodePort, *NODE_PORT_RANGE)
        key = (p.port, p.protocol)
        if key in seen_ports:
            errs.append((ploc, f'Duplicate value: "{p.port}/{p.protocol}"'))
        seen_ports.add(key)
    _labels(errs, ("spec", "selector"), spec.selector)
    return errs


def validate_namespace(ns: Namespace) -> Errors:
    """Decides whether a Namespace is acceptable (its name is a DNS-1123 label)."""
    return validate_meta(ns.metadata, False, names.dns1123_label)


def validate_node(node: Node) -> Errors:
    """Decides whether a Node is acceptable (its name is a DNS-1123 subdomain)."""
    return validate_meta(node.metadata, False, names.dns1123_subdomain)


def _validate_observed(obj: Event | Endpoints) -> Errors:
    return validate_meta(obj.metadata, True, names.dns1123_subdomain)


VALIDATORS: dict[str, Callable[..., Errors]] = {
    "Pod": validate_pod,
    "ReplicationController": validate_rc,
    "ReplicaSet": validate_replicaset,
    "Deployment": validate_deployment,
    "Service": validate_service,
    "Namespace": validate_namespace,
    "Node": validate_node,
    "Event": _validate_observed,
    "Endpoints": _validate_observed,
    "ConfigMap": validate_configmap,
    "Secret": validate_secret,
}


def _controller_template(tmpl) -> list:
    """Checks a controller's pod template (RC, ReplicaSet, Deployment): its labels and annotations, its pod spec,
    and restartPolicy Always, as Kubernetes requires of every pod a controller replaces."""
    errs: list = []
    if tmpl.metadata is not None:
        _labels(errs, ("spec", "template", "metadata", "labels"), tmpl.metadata.labels)
        _labels(errs, ("spec", "template", "metadata", "annotations"), tmpl.metadata.annotations, values=False)
    errs += validate_pod_spec(tmpl.spec, ("spec", "template", "spec"))
    if tmpl.spec.restartPolicy != "Always":
        errs.append((("spec", "template", "spec", "restartPolicy"),
                     f'Unsupported value: "{tmpl.spec.restartPolicy}": supported values: "Always"'))
    return errs
