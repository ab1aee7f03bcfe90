"""The inventory: which SSH-reachable Docker hosts are nodes, how to reach them, and their pinned host keys."""
from __future__ import annotations

import functools

import ipaddress
import os
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gitkube.api.errors import InvalidInput, Problem
from gitkube.api.names import dns1123_label, label_value, qualified_name
from gitkube.nodes.transport.ssh import SSHTarget, known_hosts_entries, parse_pinned

def _check_labels(v: dict[str, str]) -> dict[str, str]:
    for k, val in v.items():
        why = qualified_name(k)
        if why:
            raise ValueError(f"invalid label key {k!r}: {'; '.join(why)}")
        why = label_value(val) if isinstance(val, str) else ["must be a string"]
        if why:
            raise ValueError(f"invalid label value {val!r} for {k!r}: {'; '.join(why)}")
    return v


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Address(_Strict):
    host: str
    port: Annotated[int, Field(ge=1, le=65535)] = 22


class Capacity(_Strict):
    cpu: str | int | float | None = None
    memory: str | int | None = None
    pods: Annotated[int, Field(ge=0)] | None = None

    @field_validator("cpu", "memory")
    @classmethod
    def _quantity(cls, v):
        if v is None:
            return v
        from gitkube.api.quantity import parse_quantity

        parse_quantity(str(v))  # raises ValueError with a message
        return str(v)


class Defaults(_Strict):
    user: str | None = None
    identityFile: str | None = None
    knownHostsFile: str | None = None
    dockerHost: str | None = None


class NodeEntry(_Strict):
    name: str
    address: Address
    user: str | None = None
    identityFile: str | None = None
    hostKeys: list[str] | None = None
    knownHostsFile: str | None = None
    labels: dict[str, str] = {}
    capacity: Capacity | None = None
    podCIDR: str | None = None
    dockerHost: str | None = None
    unschedulable: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if dns1123_label(v):
            raise ValueError(f"{v!r} is not a DNS-1123 label (lower-case alphanumerics and '-', at most 63 characters)")
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v):
        return _check_labels(v)

    @field_validator("podCIDR")
    @classmethod
    def _cidr(cls, v):
        if v is not None:
            ipaddress.ip_network(v)
        return v

    @field_validator("hostKeys")
    @classmethod
    def _keys(cls, v):
        if v is not None:
            for i, line in enumerate(v):
                if not parse_pinned((line,)):
                    raise ValueError(f"hostKeys[{i}] is not a known_hosts-style key ('ssh-ed25519 AAAA...')")
        return v


class Inventory(_Strict):
    apiVersion: str = "gitkube/v1"
    kind: str = "Inventory"
    defaults: Defaults = Defaults()
    nodes: list[NodeEntry]

    @model_validator(mode="after")
    def _kind(self):
        if self.kind != "Inventory":
            raise ValueError("kind must be Inventory")
        return self


class NodeConfig(BaseModel):
    """One node with the inventory's defaults resolved and its host keys read."""

    model_config = ConfigDict(frozen=True)
    name: str
    host: str
    port: int
    user: str
    identity_file: str
    host_keys: tuple[str, ...]
    labels: dict[str, str]
    capacity: Capacity | None
    pod_cidr: str | None
    docker_host: str | None
    unschedulable: bool

    def ssh_target(self) -> SSHTarget:
        return SSHTarget(self.name, self.host, self.port, self.user, self.identity_file, self.host_keys)


def _line_of(root: yaml.Node | None, loc: tuple) -> int | None:
    """The 1-based line of the YAML node at `loc` (or its nearest existing parent)."""
    node, line = root, (root.start_mark.line + 1 if root is not None else None)
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for k, v in node.value:
                if k.value == key:
                    nxt, line = v, k.start_mark.line + 1
                    break
            if nxt is None:
                return line
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _field(loc: tuple) -> str:
    out = ""
    for k in loc:
        out += f"[{k}]" if isinstance(k, int) else (f".{k}" if out else str(k))
    return out


@functools.lru_cache(maxsize=8)
def _parse_inventory(path: str, text: str):
    """(YAML node tree, validated Inventory) of an inventory's text, or InvalidInput. Cached by the text: every pass
    reads the inventory, and parsing and validating it was a tenth of a no-op pass; the files it names (identity,
    known hosts) are still checked on every load."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise InvalidInput([Problem(path, mark.line + 1 if mark else None, "", f"malformed YAML: {getattr(e, 'problem', e)}")]) from e
    if not isinstance(data, dict):
        raise InvalidInput([Problem(path, 1, "", "an inventory is a mapping with a `nodes` list")])
    problems: list[Problem] = []
    try:
        inv = Inventory.model_validate(data)
    except ValidationError as e:
        for err in e.errors():
            loc = tuple(x for x in err["loc"] if not (isinstance(x, str) and x.startswith(("function-", "union["))))
            # pydantic tags union members and validator wrappers in loc; keep the data path only
            loc = tuple(x for x in loc if x not in ("str", "int", "float", "constrained-int", "list[str]"))
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(Problem(path, _line_of(root, loc), _field(loc), msg))
        raise InvalidInput(problems, "inventory") from None
    return root, inv


def load_inventory(path: str | Path, text: str | None = None) -> list[NodeConfig]:
    """Nodes of an inventory file, or InvalidInput naming file:line: field for every problem: every problem is
    collected (not the first only), with the YAML line of each field, in one walk of the nodes."""
    path = str(path)
    if text is None:
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise InvalidInput([Problem(path, None, "", f"cannot read inventory: {e.strerror}; "
                                        "create one or run `gitkube sandbox up` and pass --inventory")]) from e
    _, inv = _parse_inventory(path, text)
    return list(_nodes(path, text, *_files(inv, Path(path).parent)))


def _files(inv: Inventory, base: Path) -> tuple[tuple, tuple]:
    """What the files an inventory names hold now, each file looked at once: per identity file (as written) its
    full path and whether it is readable; per known_hosts file (as written) its path and its text, or why it
    cannot be read."""
    idents, khs = [], []
    for ident in sorted({n.identityFile or inv.defaults.identityFile for n in inv.nodes} - {None, ""}):
        full = os.path.expanduser(ident)
        full = full if os.path.isabs(full) else str(base / full)
        idents.append((ident, (full, os.access(full, os.R_OK) and os.path.isfile(full))))
    for kh in sorted({n.knownHostsFile or inv.defaults.knownHostsFile for n in inv.nodes} - {None, ""}):
        khp = Path(os.path.expanduser(kh))
        khp = khp if khp.is_absolute() else base / khp
        try:
            khs.append((kh, (str(khp), khp.read_text(), None)))
        except OSError as e:
            khs.append((kh, (str(khp), None, e.strerror)))
    return tuple(idents), tuple(khs)


@functools.lru_cache(maxsize=8)
def _nodes(path: str, text: str, ident_files: tuple, known_hosts: tuple) -> tuple[NodeConfig, ...]:
    """The nodes of an inventory text, given what the files it names hold (`_files`). Cached by both: every pass
    loads the inventory, and building 32 nodes' configs was most of a quiet pass at 32 nodes."""
    root, inv = _parse_inventory(path, text)
    idents, khs = dict(ident_files), dict(known_hosts)
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    out: list[NodeConfig] = []
    for i, n in enumerate(inv.nodes):
        where = ("nodes", i)
        if n.name in seen:
            problems.append(Problem(path, _line_of(root, where + ("name",)), f"nodes[{i}].name",
                                    f"duplicate node name {n.name!r} (first at nodes[{seen[n.name]}])"))
            continue
        seen[n.name] = i
        user = n.user or inv.defaults.user or "root"
        ident = n.identityFile or inv.defaults.identityFile
        ident_field = "identityFile" if n.identityFile else None
        if not ident:
            problems.append(Problem(path, _line_of(root, where), f"nodes[{i}].identityFile", "no identity file (set it on the node or in defaults)"))
            continue
        ident, ok = idents[ident]
        if not ok:
            fld, loc = (f"nodes[{i}].identityFile", where + ("identityFile",)) if ident_field else ("defaults.identityFile", ("defaults", "identityFile"))
            problems.append(Problem(path, _line_of(root, loc), fld, f"identity file {ident} is not readable"))
            continue
        keys = list(n.hostKeys or [])
        kh = n.knownHostsFile or inv.defaults.knownHostsFile
        if kh:
            khp, kh_text, why = khs[kh]
            if kh_text is None:
                loc = where + ("knownHostsFile",) if n.knownHostsFile else ("defaults", "knownHostsFile")
                problems.append(Problem(path, _line_of(root, loc), _field(loc), f"cannot read {khp}: {why}"))
                continue
            keys += known_hosts_entries(kh_text, n.address.host, n.address.port)
        if not keys:
            problems.append(Problem(path, _line_of(root, where + ("address",)), f"nodes[{i}].hostKeys",
                                    f"no host key pinned for {n.address.host}:{n.address.port}; add hostKeys or a knownHostsFile "
                                    f"with its key (verify `ssh-keyscan -p {n.address.port} {n.address.host}` out of band)"))
            continue
        out.append(NodeConfig(
            name=n.name, host=n.address.host, port=n.address.port, user=user, identity_file=ident,
            host_keys=tuple(keys), labels=dict(n.labels), capacity=n.capacity, pod_cidr=n.podCIDR,
            docker_host=n.dockerHost or inv.defaults.dockerHost, unschedulable=n.unschedulable,
        ))
    if problems:
        raise InvalidInput(problems, "inventory")
    return tuple(out)
