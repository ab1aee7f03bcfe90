"""configMap and secret volumes on a node, as the kubelet keeps them: a Docker volume per pod volume (a secret's
on tmpfs, so its files live only in memory), mounted read-write in the pod's infra container and read-only in
its app containers. Files are written with the Docker API's put_archive over the node's existing SSH connection
(never a shell, never a command line holding a value), in the kubelet's atomic-writer layout:

    ..<digest>/KEY        the files of one version (modes from defaultMode/items)
    ..data -> ..<digest>  switched when a new version is complete
    KEY -> ..data/KEY     what the container reads

A new version replaces `..data`; then the old version's directory and stale links are removed with busybox
(argv of names gitkube made, no values). Which version a volume holds is cached per infra container."""
from __future__ import annotations

import io
import posixpath
import tarfile
import threading
import time

from gitkube.reconcile.configrefs import VolumeFiles, config_volumes

L = "io.gitkube."
MOUNT_ROOT = "/.gitkube/volumes"  # where the infra container holds each config volume, read-write
BUSYBOX = "/bin/busybox"  # in gitkube's pause image


class VolumeWriteError(Exception):
    """The node refused to take a volume's files."""


def volume_name(docker_name, uid: str, vol: str) -> str:
    return docker_name("gk", uid, vol)


def create_volumes(h, uid: str, spec, docker_name) -> dict[str, dict]:
    """Create the pod's config volumes (secret ones on tmpfs); returns the infra container's binds for them."""
    binds = {}
    for v in config_volumes(spec):
        name = volume_name(docker_name, uid, v.name)
        opts = {"type": "tmpfs", "device": "tmpfs", "o": "mode=0755"} if v.secret is not None else {}
        if not h.docker.volume_exists(name):
            h.docker.create_volume(name, opts, {f"{L}managed": "true", f"{L}pod.uid": uid, f"{L}volume.name": v.name})
        binds[name] = {"bind": f"{MOUNT_ROOT}/{v.name}", "mode": "rw"}
    return binds


def _tar(vf: VolumeFiles, stamp: float) -> bytes:
    """The archive of one version: its directory and files, then `..data`, then the top-level links."""
    gen = f"..{vf.digest}"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add_dir(path: str) -> None:
            ti = tarfile.TarInfo(path)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, stamp
            tar.addfile(ti)

        dirs = {gen}
        add_dir(gen)
        for path, mode, content in vf.files:
            parent = posixpath.dirname(path)
            parts = parent.split("/") if parent else []
            for i in range(len(parts)):
                d = posixpath.join(gen, *parts[: i + 1])
                if d not in dirs:
                    dirs.add(d)
                    add_dir(d)
            ti = tarfile.TarInfo(posixpath.join(gen, path))
            ti.size, ti.mode, ti.mtime = len(content), mode, stamp
            tar.addfile(ti, io.BytesIO(content))
        link = tarfile.TarInfo("..data")
        link.type, link.linkname, link.mode, link.mtime = tarfile.SYMTYPE, gen, 0o777, stamp
        tar.addfile(link)
        for top in _tops(vf):
            ti = tarfile.TarInfo(top)
            ti.type, ti.linkname, ti.mode, ti.mtime = tarfile.SYMTYPE, f"..data/{top}", 0o777, stamp
            tar.addfile(ti)
    return buf.getvalue()


def _tops(vf: VolumeFiles) -> list[str]:
    return sorted({p.split("/", 1)[0] for p, _, _ in vf.files})


def _exec(h, cid: str, argv: list[str]) -> str:
    code, out = h.docker.exec(cid, argv)
    if code:
        raise VolumeWriteError(f"{argv[1]} in the pod's infra container exited {code}")
    return out.decode("utf-8", "replace") if isinstance(out, bytes) else str(out)


class ConfigVolumes:
    """Writes config volumes' files into running pods, once per version (cached by infra container id)."""

    def __init__(self, h):
        self.h = h
        self._written: dict[tuple[str, str], str] = {}  # (infra id, volume) -> digest on the node
        self._lock = threading.Lock()

    def ensure(self, infra_id: str, vf: VolumeFiles) -> bool:
        """Make the volume hold exactly `vf` (True when files were written). Raises VolumeWriteError.

        Which version the volume holds is read from `..data`'s link target (an archive stat, no exec); only a
        new version costs an exec: listing the names to remove once `..data` points at the new one."""
        key = (infra_id, vf.volume)
        with self._lock:
            if self._written.get(key) == vf.digest:
                return False
        d = f"{MOUNT_ROOT}/{vf.volume}"
        gen = f"..{vf.digest}"
        keep = {".", "..", "..data", gen, *_tops(vf)}
        try:
            stat = self.h.docker.archive_stat(infra_id, f"{d}/..data")
            if posixpath.basename(((stat or {}).get("linkTarget") or "").rstrip("/")) == gen:
                wrote = False
            else:
                self.h.docker.put_archive(infra_id, d, _tar(vf, time.time()))
                wrote = True
                names = set(_exec(self.h, infra_id, [BUSYBOX, "ls", "-1a", d]).split("\n")) - {""}
                stale = sorted(names - keep)
                if stale:
                    _exec(self.h, infra_id, [BUSYBOX, "rm", "-rf", "--", *(f"{d}/{n}" for n in stale)])
        except VolumeWriteError:
            raise
        except Exception as e:  # noqa: BLE001 - API refusals and timeouts alike: the next pass tries again
            raise VolumeWriteError(f"cannot write the volume's files in the pod's infra container: "
                                   f"{getattr(e, 'explanation', None) or e}") from None
        with self._lock:
            self._written[key] = vf.digest
            if len(self._written) > 10_000:
                self._written.clear()
        return wrote

    def forget(self, live_infra_ids: set[str]) -> None:
        """Drop the cache of infra containers that are gone."""
        with self._lock:
            self._written = {k: v for k, v in self._written.items() if k[0] in live_infra_ids}
