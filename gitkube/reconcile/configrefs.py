"""What a pod takes from ConfigMaps and Secrets, decided without I/O: its env values (configMapKeyRef,
secretKeyRef, envFrom), the files of its configMap/secret volumes, the digest that rolls its containers when
the config their env reads changes, and which pods a config change affects (for `diff`).

Error texts are the kubelet's, so status and events read as Kubernetes' would."""
from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from gitkube.api import Container, PodSpec
from gitkube.api.config import ConfigData
from gitkube.api.names import ENV_VAR_NAME

# (kind, namespace, name) -> values; kind is "ConfigMap" or "Secret"
ConfigValues = Mapping[tuple[str, str, str], ConfigData]
Ref = tuple[str, str]  # (kind, name) inside the pod's namespace


class ConfigError(Exception):
    """A referenced ConfigMap/Secret or key is missing: the kubelet's CreateContainerConfigError message."""


def _what(kind: str) -> str:
    return "configmap" if kind == "ConfigMap" else "secret"


def _lookup(config: ConfigValues, kind: str, ns: str, name: str) -> ConfigData | None:
    return config.get((kind, ns, name))


# -- env ----------------------------------------------------------------------------------------------------
def env_refs(c: Container) -> list[Ref]:
    """The ConfigMaps and Secrets a container's env and envFrom read, in order, without repeats."""
    out: list[Ref] = []
    for ef in c.envFrom or ():
        if ef.configMapRef is not None:
            out.append(("ConfigMap", ef.configMapRef.name or ""))
        if ef.secretRef is not None:
            out.append(("Secret", ef.secretRef.name or ""))
    for e in c.env or ():
        src = e.valueFrom
        if src is not None and src.configMapKeyRef is not None:
            out.append(("ConfigMap", src.configMapKeyRef.name or ""))
        if src is not None and src.secretKeyRef is not None:
            out.append(("Secret", src.secretKeyRef.name or ""))
    return list(dict.fromkeys(out))


def env_from(c: Container, ns: str, config: ConfigValues) -> tuple[list[tuple[str, str]], list[str]]:
    """The variables envFrom gives (in order; later sources win), and warnings for keys that are not valid
    variable names (skipped, as the kubelet does). Raises ConfigError for a missing, non-optional source."""
    out: dict[str, str] = {}
    warnings: list[str] = []
    for ef in c.envFrom or ():
        kind, ref = ("ConfigMap", ef.configMapRef) if ef.configMapRef is not None else ("Secret", ef.secretRef)
        if ref is None:
            continue
        data = _lookup(config, kind, ns, ref.name or "")
        if data is None:
            if ref.optional:
                continue
            raise ConfigError(f'{_what(kind)} "{ref.name}" not found')
        bad = []
        for k in sorted(data.env_keys):
            name = (ef.prefix or "") + k
            if not ENV_VAR_NAME.match(name):
                bad.append(k)
                continue
            out[name] = data.data[k].decode("utf-8", "replace")
        if bad:
            warnings.append(f"Keys [{', '.join(bad)}] from the EnvFrom {_what(kind)} {ns}/{ref.name} were skipped "
                            "since they are considered invalid environment variable names.")
    return list(out.items()), warnings


def key_ref_value(e, ns: str, config: ConfigValues) -> str | None:
    """The value of an env entry's configMapKeyRef/secretKeyRef (None: optional and missing, so the variable is
    left out). Raises ConfigError with the kubelet's words when a non-optional one is missing."""
    src = e.valueFrom
    kind, sel = ("ConfigMap", src.configMapKeyRef) if src.configMapKeyRef is not None else ("Secret", src.secretKeyRef)
    data = _lookup(config, kind, ns, sel.name or "")
    if data is None:
        if sel.optional:
            return None
        raise ConfigError(f'{_what(kind)} "{sel.name}" not found')
    if sel.key not in data.env_keys:
        if sel.optional:
            return None
        raise ConfigError(f"couldn't find key {sel.key} in {kind} {ns}/{sel.name}")
    return data.data[sel.key].decode("utf-8", "replace")


def env_config_digest(c: Container, ns: str, config: ConfigValues) -> str:
    """The digest of the config a container's env reads ("" when it reads none). Part of the container's spec
    hash: env cannot change in a running container, so a change of this digest recreates it, as a changed
    spec does. A Deployment controller makes it part of the template hash the same way (pod_config_digest)."""
    refs = env_refs(c)
    if not refs:
        return ""
    h = hashlib.sha256()
    for kind, name in refs:
        data = _lookup(config, kind, ns, name)
        h.update(f"{kind}/{name}={data.digest if data is not None else '-'};".encode())
    return h.hexdigest()[:16]


def pod_config_digest(spec: PodSpec, ns: str, config: ConfigValues) -> str:
    """One digest of the config every container of a pod (template) reads through env ("" when none): what a
    rollout compares to decide that a template must be rolled out though its text did not change."""
    parts = [f"{c.name}:{d}" for c in spec.containers if (d := env_config_digest(c, ns, config))]
    return hashlib.sha256(";".join(parts).encode()).hexdigest()[:16] if parts else ""


def env_digests(spec: PodSpec, ns: str, config: ConfigValues) -> dict[str, str]:
    """container name -> env_config_digest, for the containers that read any config."""
    return {c.name: d for c in spec.containers if (d := env_config_digest(c, ns, config))}


# -- volumes ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VolumeFiles:
    """The files of one configMap/secret volume: (relative path, mode, content), and a digest of all of it."""

    volume: str
    secret: bool  # True: the files must live in memory only (tmpfs)
    files: tuple[tuple[str, int, bytes], ...]
    digest: str

    def __repr__(self) -> str:  # never print file contents
        return f"VolumeFiles({self.volume}, secret={self.secret}, {len(self.files)} files, {self.digest})"


def config_volumes(spec: PodSpec) -> list:
    """The pod's configMap and secret volumes."""
    return [v for v in spec.volumes or () if v.configMap is not None or v.secret is not None]


def volume_files(v, ns: str, config: ConfigValues) -> VolumeFiles:
    """The files a configMap/secret volume holds (items select and rename keys; defaultMode/mode set modes).
    Raises ConfigError with the kubelet's MountVolume.SetUp reason when the source or an item's key is missing;
    a missing optional source is an empty volume."""
    if v.configMap is not None:
        kind, name, src = "ConfigMap", v.configMap.name or "", v.configMap
    else:
        kind, name, src = "Secret", v.secret.secretName or "", v.secret
    data = _lookup(config, kind, ns, name)
    files: list[tuple[str, int, bytes]] = []
    if data is None:
        if not src.optional:
            raise ConfigError(f'{_what(kind)} "{name}" not found')
    elif src.items:
        for it in src.items:
            if it.key not in data.data:
                if src.optional:
                    continue
                raise ConfigError(f"configmap references non-existent config key: {it.key}" if kind == "ConfigMap"
                                  else f"references non-existent secret key: {it.key}")
            files.append((posixpath.normpath(it.path), it.mode if it.mode is not None else src.defaultMode,
                          data.data[it.key]))
    else:
        files = [(k, src.defaultMode, data.data[k]) for k in sorted(data.data)]
    h = hashlib.sha256(f"{kind}/{name}".encode())
    for path, mode, content in files:
        h.update(f"\0{path}\0{mode:o}\0".encode() + (data.digest.encode() if data else b""))
        h.update(hashlib.sha256(content).digest())
    return VolumeFiles(v.name, kind == "Secret", tuple(files), h.hexdigest()[:16])


# -- what a change affects (for diff) ---------------------------------------------------------------------------
def pod_refs(spec: PodSpec) -> tuple[set[Ref], set[Ref]]:
    """(configs read through env, configs mounted as volumes) of a pod spec."""
    env = {r for c in spec.containers for r in env_refs(c)}
    vols = set()
    for v in config_volumes(spec):
        vols.add(("ConfigMap", v.configMap.name or "") if v.configMap is not None else ("Secret", v.secret.secretName or ""))
    return env, vols


def changed_configs(old: ConfigValues, new: ConfigValues) -> set[tuple[str, str, str]]:
    """The ConfigMaps and Secrets added, removed or changed between two revisions' values."""
    keys = set(old) | set(new)
    return {k for k in keys if (old.get(k).digest if k in old else None) != (new.get(k).digest if k in new else None)}


def affected(changed: Iterable[tuple[str, str, str]], users: Iterable[tuple[str, str, str, PodSpec]]) -> list[str]:
    """Human lines naming, for each changed config, the objects (pods, controllers, Deployments: (kind,
    namespace, name, pod spec or template spec)) it affects and how: env readers are recreated/rolled out,
    volume users get their files updated in place."""
    lines = []
    users = list(users)
    for kind, ns, name in sorted(changed):
        for ukind, uns, uname, spec in users:
            if uns != ns:
                continue
            env, vols = pod_refs(spec)
            how = []
            if (kind, name) in env:
                how.append("env reads it: " + ("pods rolled out" if ukind != "Pod" else "containers recreated"))
            if (kind, name) in vols:
                how.append("mounted: files updated in place")
            if how:
                lines.append(f"~ {kind} {ns}/{name} changed: affects {ukind} {uns}/{uname} ({'; '.join(how)})")
    return lines


def template_config_inputs(d: Mapping, config: ConfigValues) -> list[str]:
    """The extra pod-template-hash input of a Deployment (reconcile.apps.TemplateInputs): the digest of the config
    its pods' env reads, so that a change of it rolls the Deployment out as a template change does. Empty when the
    template's env reads no ConfigMap/Secret, so such templates hash exactly as before."""
    tmpl = ((d.get("spec") or {}).get("template") or {}).get("spec")
    if not tmpl:
        return []
    try:
        spec = PodSpec.model_validate(tmpl)
    except ValueError:
        return []
    digest = pod_config_digest(spec, (d.get("metadata") or {}).get("namespace") or "default", config)
    return [f"config:{digest}"] if digest else []


def config_blocks(works, config) -> dict[tuple[str, str], tuple[str, str, str]]:
    """Containers that cannot be created now because config they need is missing: (pod uid, container) ->
    (waiting reason, event reason, message), in the kubelet's words. The planner leaves them alone, so a
    container already running with the last good config keeps running."""
    out: dict[tuple[str, str], tuple[str, str, str]] = {}
    if config is None:  # the applied revision's ConfigMaps/Secrets cannot be read (e.g. a wrong --age-identity)
        for w in works:
            names = {v.name for v in config_volumes(w.pod.spec)}
            for c in w.pod.spec.containers:
                if not w.deleting and (env_refs(c) or any(vm.name in names for vm in c.volumeMounts or ())):
                    out[(w.uid, c.name)] = ("CreateContainerConfigError", "Failed", "Error: the ConfigMaps and "
                                            "Secrets of the applied revision cannot be read (see the refused revision)")
        return out
    for w in works:
        if w.deleting:
            continue
        ns = w.pod.metadata.namespace or "default"
        vols = {v.name: v for v in config_volumes(w.pod.spec)}
        for c in w.pod.spec.containers:
            try:
                for vm in c.volumeMounts or ():
                    if vm.name in vols:
                        volume_files(vols[vm.name], ns, config)
            except ConfigError as e:
                msg = f'MountVolume.SetUp failed for volume "{vm.name}" : {e}'
                out[(w.uid, c.name)] = ("ContainerCreating", "FailedMount", msg)
                continue
            try:
                env_from(c, ns, config)
                for e in c.env or ():
                    if e.valueFrom is not None and (e.valueFrom.configMapKeyRef or e.valueFrom.secretKeyRef):
                        key_ref_value(e, ns, config)
            except ConfigError as e:
                out[(w.uid, c.name)] = ("CreateContainerConfigError", "Failed", f"Error: {e}")
    return out
