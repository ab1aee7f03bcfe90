"""A container's environment and command line as Kubernetes computes them: downward-API values, service
variables, `$(VAR)` expansion, and how command/args combine with the image's ENTRYPOINT/CMD."""
from __future__ import annotations

import re
from dataclasses import dataclass

from gitkube.api import Container, Pod
from gitkube.reconcile.configrefs import ConfigValues, env_from, key_ref_value


@dataclass(frozen=True)
class EnvService:
    """What a pod needs to know of a Service to get its environment variables."""

    name: str
    cluster_ip: str
    ports: tuple[tuple[str | None, int, str], ...]  # (name, port, protocol)


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: known names replaced, `$$` escapes, unknown or unterminated left as written."""
    out = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "$" or i + 1 >= n:
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            end = text.find(")", i + 2)
            if end == -1:
                out.append(text[i:])  # unterminated: kept as written
                break
            name = text[i + 2:end]
            out.append(env[name] if name in env else text[i:end + 1])
            i = end + 1
        else:
            out.append("$")  # `$VAR` and `${VAR}` are not Kubernetes syntax: untouched
            i += 1
    return "".join(out)


def service_env(services: list[EnvService]) -> list[tuple[str, str]]:
    """The docker-links-style variables Kubernetes gives a pod for each Service of its namespace."""
    out: list[tuple[str, str]] = []
    for s in sorted(services, key=lambda s: s.name):
        if not s.cluster_ip or s.cluster_ip == "None" or not s.ports:
            continue
        p = s.name.upper().replace("-", "_")
        first_name, first_port, first_proto = s.ports[0]
        out.append((f"{p}_SERVICE_HOST", s.cluster_ip))
        out.append((f"{p}_SERVICE_PORT", str(first_port)))
        for name, port, _proto in s.ports:
            if name:
                out.append((f"{p}_SERVICE_PORT_{name.upper().replace('-', '_')}", str(port)))
        out.append((f"{p}_PORT", f"{first_proto.lower()}://{s.cluster_ip}:{first_port}"))
        for _name, port, proto in s.ports:
            base = f"{p}_PORT_{port}_{proto.upper()}"
            out += [
                (base, f"{proto.lower()}://{s.cluster_ip}:{port}"),
                (f"{base}_PROTO", proto.lower()),
                (f"{base}_PORT", str(port)),
                (f"{base}_ADDR", s.cluster_ip),
            ]
    return out


def field_value(pod: Pod, uid: str, path: str, node_name: str, pod_ip: str | None, host_ip: str | None) -> str:
    """The downward-API value of a supported fieldRef path."""
    m = pod.metadata
    values = {
        "metadata.name": m.name,
        "metadata.namespace": m.namespace or "default",
        "metadata.uid": uid,
        "spec.nodeName": node_name,
        "spec.serviceAccountName": pod.spec.serviceAccountName or "default",
        "status.podIP": pod_ip or "",
        "status.hostIP": host_ip or "",
    }
    mm = re.match(r"^metadata\.(labels|annotations)\['(.+)'\]$", path)
    if mm:
        src = (m.labels if mm.group(1) == "labels" else m.annotations) or {}
        return src.get(mm.group(2), "")
    return values.get(path, "")


def container_env(pod: Pod, uid: str, c: Container, node_name: str, pod_ip: str | None, host_ip: str | None,
                  services: list[EnvService], config: ConfigValues | None = None,
                  warnings: list[str] | None = None) -> list[tuple[str, str]]:
    """The container's final environment: service variables first, then envFrom, then its own env, each expanded
    in order. Raises configrefs.ConfigError when a ConfigMap/Secret or key it needs is missing."""
    ns = pod.metadata.namespace or "default"
    config = config or {}
    from_sources, skipped = env_from(c, ns, config)
    if warnings is not None:
        warnings.extend(skipped)
    own = [e.name for e in c.env or ()] + [k for k, _ in from_sources]
    env: dict[str, str] = {}
    for k, v in service_env(services):
        if k not in own:  # a name the pod defines wins over a service variable
            env[k] = v
    env.update(from_sources)
    for e in c.env or ():
        if e.valueFrom is not None and e.valueFrom.fieldRef is not None:
            env[e.name] = field_value(pod, uid, e.valueFrom.fieldRef.fieldPath, node_name, pod_ip, host_ip)
        elif e.valueFrom is not None and (e.valueFrom.configMapKeyRef or e.valueFrom.secretKeyRef) is not None:
            value = key_ref_value(e, ns, config)
            if value is not None:
                env[e.name] = value
        else:
            # $(VAR) resolves against entries defined before this one and the service variables.
            env[e.name] = expand(e.value or "", env)
    return list(env.items())


def command_line(c: Container, env: dict[str, str]) -> tuple[list[str] | None, list[str] | None]:
    """(entrypoint, cmd) for Docker: `command` replaces ENTRYPOINT and drops CMD; `args` alone replaces CMD."""
    cmd = [expand(a, env) for a in c.command] if c.command is not None else None
    args = [expand(a, env) for a in c.args] if c.args is not None else None
    if cmd is not None:
        return cmd, (args or [])
    return None, args
