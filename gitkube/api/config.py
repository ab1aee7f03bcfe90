"""ConfigMaps and Secrets: what the apiserver accepts (key names, types with their required keys, the 1 MiB
limit), their bytes, and the ONE redaction every output path applies to a Secret (store, get, describe, diff,
events, the API server): keys and sizes only, never a value."""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Any

from gitkube.api import names
from gitkube.api.models import ConfigMap, Secret

Loc = tuple[str | int, ...]
Errors = list[tuple[Loc, str]]

MAX_SIZE = 1 << 20  # Kubernetes' MaxSecretSize and the ConfigMap limit: 1 MiB of data
_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_KEY_MSG = ("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or "
            "'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')")
# Secret types and the keys each requires (one of a group when the tuple holds several), as Kubernetes checks.
SECRET_TYPES: dict[str, tuple[tuple[str, ...], ...]] = {
    "Opaque": (),
    "kubernetes.io/basic-auth": (("username", "password"),),
    "kubernetes.io/tls": (("tls.crt",), ("tls.key",)),
    "kubernetes.io/ssh-auth": (("ssh-privatekey",),),
    "kubernetes.io/dockerconfigjson": ((".dockerconfigjson",),),
    "kubernetes.io/dockercfg": ((".dockercfg",),),
}
HIDDEN = "<secret contents redacted>"  # what an error message shows instead of a Secret's value
REDACTED = "<redacted:"  # every redacted value starts with this
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def config_key(key: str) -> list[str]:
    """Decides whether `key` is a valid ConfigMap/Secret key (IsConfigMapKey); returns the reasons if not."""
    errs = []
    if len(key) > names.SUBDOMAIN_MAX:
        errs.append(f"must be no more than {names.SUBDOMAIN_MAX} characters")
    if not _KEY.match(key):
        errs.append(_KEY_MSG)
    if key == ".":
        errs.append("must not be '.'")
    elif key == "..":
        errs.append("must not be '..'")
    elif key.startswith(".."):
        errs.append("must not start with '..'")
    return errs


def _b64(errs: Errors, loc: Loc, value: str) -> bytes:
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        errs.append((loc, f'Invalid value: "{HIDDEN}": illegal base64 data'))
        return b""


def _keys(errs: Errors, loc: Loc, keys) -> None:
    for k in keys:
        for e in config_key(k):
            errs.append((loc + (k,), f'Invalid value: "{k}": {e}'))


def configmap_bytes(cm: ConfigMap) -> tuple[dict[str, str], dict[str, bytes]]:
    """A valid ConfigMap's (data, binaryData decoded)."""
    return dict(cm.data or {}), {k: base64.b64decode(v) for k, v in (cm.binaryData or {}).items()}


def secret_bytes(s: Secret) -> dict[str, bytes]:
    """A valid Secret's data as bytes, stringData merged over it (as the apiserver does on write)."""
    out = {k: base64.b64decode(v) for k, v in (s.data or {}).items()}
    out.update({k: v.encode() for k, v in (s.stringData or {}).items()})
    return out


def validate_configmap(cm: ConfigMap) -> Errors:
    """Decides whether a ConfigMap is acceptable: name, key names, no key in both maps, at most 1 MiB."""
    from gitkube.api.validation import validate_meta

    errs = validate_meta(cm.metadata, True, names.dns1123_subdomain)
    _keys(errs, ("data",), cm.data or {})
    _keys(errs, ("binaryData",), cm.binaryData or {})
    size = sum(len(k) + len(v.encode()) for k, v in (cm.data or {}).items())
    for k, v in (cm.binaryData or {}).items():
        if k in (cm.data or {}):
            errs.append((("binaryData", k), f'Invalid value: "{k}": duplicate of key present in data'))
        size += len(k) + len(_b64(errs, ("binaryData", k), v))
    if size > MAX_SIZE:
        errs.append(((), f"Too long: must have at most {MAX_SIZE} bytes"))
    return errs


def validate_secret(s: Secret) -> Errors:
    """Decides whether a Secret is acceptable: name, key names, base64, its type's required keys, at most 1 MiB.
    No message ever holds a value."""
    from gitkube.api.validation import validate_meta

    errs = validate_meta(s.metadata, True, names.dns1123_subdomain)
    _keys(errs, ("data",), s.data or {})
    _keys(errs, ("stringData",), s.stringData or {})
    merged: dict[str, bytes] = {}
    for k, v in (s.data or {}).items():
        merged[k] = _b64(errs, ("data", k), v)
    merged.update({k: v.encode() for k, v in (s.stringData or {}).items()})
    if not s.type:
        errs.append((("type",), "Required value"))
    for group in SECRET_TYPES.get(s.type, ()):
        if not any(merged.get(k) for k in group):
            for k in group:
                errs.append((("data", k), "Required value"))
    if sum(len(k) + len(v) for k, v in merged.items()) > MAX_SIZE:
        errs.append((("data",), f"Too long: must have at most {MAX_SIZE} bytes"))
    return errs


# -- redaction: the one function every output of a Secret goes through ----------------------------------------
def digest(value: bytes, key: bytes | None) -> str:
    """A short keyed digest of a value (HMAC-SHA256): tells a change without telling the value."""
    return hmac.new(key or b"gitkube", value, hashlib.sha256).hexdigest()[:16]


def redacted_value(value: bytes, key: bytes | None) -> str:
    """How a Secret value is shown and stored: its size and a keyed digest, never its bytes."""
    return f"{REDACTED} {len(value)} bytes, hmac {digest(value, key)}>"


def redacted_size(shown: str) -> int | None:
    """The byte count a redacted value states (None if it is not a redacted value)."""
    m = re.match(r"^<redacted: (\d+) bytes", shown or "")
    return int(m.group(1)) if m else None


def redact(obj: Any, digest_key: bytes | None = None) -> Any:
    """Any object (or v1 List) as it may be stored or shown: a Secret's `data` and `stringData` become keys with
    redacted values (sizes and keyed digests), its last-applied annotation is dropped; other kinds are returned
    as they are. Already redacted values stay as they are, so applying it twice changes nothing."""
    if not isinstance(obj, Mapping):
        return obj
    if obj.get("kind") == "List" or ("items" in obj and obj.get("kind", "").endswith("List")):
        return {**obj, "items": [redact(i, digest_key) for i in obj.get("items") or []]}
    if obj.get("kind") != "Secret":
        return obj
    data: dict[str, str] = {}
    for k, v in (obj.get("data") or {}).items():
        if isinstance(v, str) and v.startswith(REDACTED):
            data[k] = v
            continue
        try:
            raw = base64.b64decode(str(v).encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raw = str(v).encode()
        data[k] = redacted_value(raw, digest_key)
    for k, v in (obj.get("stringData") or {}).items():
        data[k] = v if isinstance(v, str) and v.startswith(REDACTED) else redacted_value(str(v).encode(), digest_key)
    out = {k: v for k, v in obj.items() if k not in ("data", "stringData")}
    if data:
        out["data"] = data
    meta = obj.get("metadata")
    if isinstance(meta, Mapping) and LAST_APPLIED in (meta.get("annotations") or {}):
        ann = {k: v for k, v in meta["annotations"].items() if k != LAST_APPLIED}
        out["metadata"] = {**meta, "annotations": ann or None}
        if not ann:
            out["metadata"].pop("annotations")
    return out


# -- the values pods use, kept apart from the objects every output path sees -------------------------------
class ConfigData:
    """One ConfigMap's or Secret's values as bytes, for env and volume files. Its repr never shows a value."""

    __slots__ = ("kind", "data", "env_keys", "digest")

    def __init__(self, kind: str, data: Mapping[str, bytes], env_keys: frozenset[str], digest: str):
        self.kind, self.data, self.env_keys, self.digest = kind, dict(data), env_keys, digest

    def __repr__(self) -> str:
        return f"ConfigData({self.kind}, keys={sorted(self.data)}, digest={self.digest})"


def config_data(obj: ConfigMap | Secret, digest_key: bytes | None) -> ConfigData:
    """A valid ConfigMap's or Secret's values, with a digest of its content (keyed for Secrets, so that the digest
    tells a change and nothing else)."""
    if isinstance(obj, Secret):
        data = secret_bytes(obj)
        env_keys = frozenset(data)
    else:
        text, binary = configmap_bytes(obj)
        data = {**{k: v.encode() for k, v in text.items()}, **binary}
        env_keys = frozenset(text)  # the kubelet takes env from `data` only
    h = hashlib.sha256(obj.kind.encode())
    for k in sorted(data):
        h.update(b"\0" + k.encode() + b"\0" + digest(data[k], digest_key).encode())
    return ConfigData(obj.kind, data, env_keys, h.hexdigest()[:16])


def redact_model(obj: Any, digest_key: bytes | None) -> Any:
    """A Secret model with its values redacted (as `redact` does to its JSON); other objects unchanged."""
    if not isinstance(obj, Secret):
        return obj
    shown = redact(obj.model_dump(mode="json", exclude_none=True), digest_key)
    meta = obj.metadata
    if meta.annotations and LAST_APPLIED in meta.annotations:
        meta = meta.model_copy(update={"annotations": shown["metadata"].get("annotations")})
    return obj.model_copy(update={"data": shown.get("data"), "stringData": None, "metadata": meta})
