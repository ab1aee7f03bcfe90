"""Which desired objects differ from the stored ones, and how to show it: added, changed, removed, as unified diffs."""
from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import yaml

from gitkube.api.content import authored_content, dict_key

try:  # libyaml when present: the diff renders only changed objects, but may render many
    from yaml import CSafeDumper as _Dumper
except ImportError:  # pragma: no cover
    from yaml import SafeDumper as _Dumper  # type: ignore[assignment]

# Namespaces first (others live in them), then the rest by kind name.
_KIND_ORDER = {"Namespace": 0}

Action = Literal["add", "change", "remove"]


@dataclass(frozen=True)
class ObjectChange:
    """One object that differs: `before` is the normalised stored object, `after` the normalised desired one."""

    action: Action
    kind: str
    namespace: str
    name: str
    before: dict | None
    after: dict | None

    @property
    def ref(self) -> str:
        """kind/namespace/name, the way the diff headers name an object."""
        return f"{self.kind}/{self.namespace}/{self.name}" if self.namespace else f"{self.kind}/{self.name}"


# The store compares and the diff shows the same thing: what the object's author owns.
object_key = dict_key
strip_object = authored_content


def with_defaults(obj: dict) -> dict:
    """Decides an object's fully defaulted form by validating it through the api models (unchanged if it does not validate)."""
    try:
        from gitkube.api import parse_object, to_k8s
    except ImportError:  # models not available: compare as given
        return obj
    try:
        model = parse_object(obj)
    except Exception:  # a stored object an older gitkube wrote; show it as it is
        return obj
    return strip_object(to_k8s(model))


def object_changes(desired: Iterable[Mapping], stored: Iterable[Mapping], *,
                   normalise: Callable[[dict], dict] = with_defaults) -> list[ObjectChange]:
    """Decides which objects a sync of `desired` onto `stored` would add, change or remove.

    `desired` are Kubernetes JSON dumps of validated (defaulted) models; `stored` the Git-origin objects of the
    store, those marked for deletion counting as absent. Equal stripped forms are equal without further work; only differing pairs are defaulted (`normalise`) and compared again, so
    a default filled on one side only never shows as a change.
    """
    have = {}
    for obj in stored:
        if (obj.get("metadata") or {}).get("deletionTimestamp"):
            continue
        have[object_key(obj)] = obj
    changes: list[ObjectChange] = []
    seen = set()
    for obj in desired:
        key = object_key(obj)
        seen.add(key)
        after = strip_object(obj)
        old = have.get(key)
        if old is None:
            changes.append(ObjectChange("add", *key, None, after))  # desired objects come defaulted
            continue
        before = strip_object(old)
        if before == after:
            continue
        before, after = normalise(before), normalise(after)
        if before != after:
            changes.append(ObjectChange("change", *key, before, after))
    for key, old in have.items():
        if key not in seen:
            changes.append(ObjectChange("remove", *key, normalise(strip_object(old)), None))
    changes.sort(key=lambda c: (_KIND_ORDER.get(c.kind, 1), c.kind, c.namespace, c.name))
    return changes


def to_yaml(obj: Mapping | None) -> str:
    """Renders an object as YAML with sorted keys (kubectl's order), '' for None."""
    if obj is None:
        return ""
    try:
        return "".join(_block_mapping(obj, 0)) if obj else "{}\n"
    except _Unusual:
        return _dump(dict(obj))


def _dump(obj: dict) -> str:
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=True, default_flow_style=False, allow_unicode=True)


class _Unusual(Exception):
    """A value the fast layout does not handle the way PyYAML would (multi-line scalars, nested sequences)."""


# PyYAML's representer is pure Python and dominated the diff of a few changed objects. The block layout of
# JSON data is simple, so it is written here; each scalar and key is still spelled by PyYAML itself (memoised),
# and anything that could lay out differently is handed to PyYAML whole (tests compare both on real manifests).
_SCALARS: dict[tuple[type, object], str] = {}


def _scalar(value: object, room: int) -> str:
    memo = (type(value), value)
    text = _SCALARS.get(memo)
    if text is None:
        if not isinstance(value, (str, int, float, bool)) and value is not None:
            raise _Unusual()
        text = _dump({"k": value})[3:-1]
        if "\n" in text:
            raise _Unusual()
        if len(_SCALARS) > 50_000:
            _SCALARS.clear()
        _SCALARS[memo] = text
    if isinstance(value, str) and " " in value and len(text) + room > 70:
        raise _Unusual()  # a long line with spaces may be folded, depending on its column
    return text


def _key(key: object) -> str:
    if not isinstance(key, str) or len(key) > 100:
        raise _Unusual()
    return _scalar(key, 0)


def _block_mapping(obj: Mapping, indent: int) -> list[str]:
    pad, out = " " * indent, []
    for k in sorted(obj):
        v, key = obj[k], _key(k)
        if isinstance(v, dict) and v:
            out.append(f"{pad}{key}:\n")
            out.extend(_block_mapping(v, indent + 2))
        elif isinstance(v, list) and v:
            out.append(f"{pad}{key}:\n")
            out.extend(_block_sequence(v, indent))
        elif isinstance(v, (dict, list)):
            out.append(f"{pad}{key}: {'{}' if isinstance(v, dict) else '[]'}\n")
        else:
            out.append(f"{pad}{key}: {_scalar(v, indent + len(key) + 2)}\n")
    return out


def _block_sequence(items: list, indent: int) -> list[str]:
    pad, out = " " * indent, []
    for item in items:
        if isinstance(item, dict) and item:
            lines = _block_mapping(item, indent + 2)
            out.append(f"{pad}- {lines[0][indent + 2:]}")
            out.extend(lines[1:])
        elif isinstance(item, (dict, list)):
            if item:
                raise _Unusual()
            out.append(f"{pad}- {'{}' if isinstance(item, dict) else '[]'}\n")
        else:
            out.append(f"{pad}- {_scalar(item, indent + 2)}\n")
    return out


def render_change(change: ObjectChange, *, live: str = "live", desired: str = "desired") -> str:
    """Renders one change as a unified diff of normalised YAML (/dev/null for the absent side)."""
    a = f"{live}/{change.ref}" if change.before is not None else "/dev/null"
    b = f"{desired}/{change.ref}" if change.after is not None else "/dev/null"
    lines = difflib.unified_diff(to_yaml(change.before).splitlines(keepends=True),
                                 to_yaml(change.after).splitlines(keepends=True), fromfile=a, tofile=b, n=3)
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def render_changes(changes: Iterable[ObjectChange], **names: str) -> str:
    """Renders every change, one unified diff after another."""
    return "".join(render_change(c, **names) for c in changes)


def summarise(changes: Iterable[ObjectChange]) -> str:
    """Decides the one-line count of changes, e.g. '2 to add, 1 to change, 0 to remove'."""
    counts = {"add": 0, "change": 0, "remove": 0}
    for c in changes:
        counts[c.action] += 1
    return f"{counts['add']} to add, {counts['change']} to change, {counts['remove']} to remove"
