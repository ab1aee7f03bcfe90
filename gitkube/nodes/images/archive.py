"""Images without a registry: gitkube builds `docker save`-format archives deterministically on the controller
(fixed timestamps, sorted entries: the image ID is the config's digest, the same on every node) and streams them
to nodes over SSH, skipping nodes that already hold that image ID."""
from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import shutil
import stat
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

MANAGED_LABEL = "io.gitkube.managed"
EPOCH = "1970-01-01T00:00:00Z"
BUSYBOX_IMAGE = "gitkube/busybox:latest"
PAUSE_IMAGE = "gitkube/pause:3"
PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"


class ImageBuildError(Exception):
    """An image could not be built on the controller; says which package to install."""


@dataclass
class RootFS:
    """Files of a single-layer image, added in any order and written sorted."""

    files: dict[str, tuple[int, bytes | None, str | None]] = field(default_factory=dict)  # path -> (mode, data, link)

    def add_dir(self, path: str, mode: int = 0o755) -> None:
        path = path.strip("/")
        parts = path.split("/")
        for i in range(1, len(parts) + 1):
            p = "/".join(parts[:i])
            if p and p not in self.files:
                self.files[p] = (stat.S_IFDIR | (mode if i == len(parts) else 0o755), None, None)

    def add_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        path = path.strip("/")
        self.add_dir(os.path.dirname(path)) if "/" in path else None
        self.files[path] = (stat.S_IFREG | mode, data, None)

    def add_symlink(self, path: str, target: str) -> None:
        path = path.strip("/")
        self.add_dir(os.path.dirname(path)) if "/" in path else None
        self.files[path] = (stat.S_IFLNK | 0o777, None, target)

    def add_host_file(self, host_path: str, path: str | None = None) -> None:
        """Copy a file of the controller into the image (following links), keeping its mode."""
        real = os.path.realpath(host_path)
        st = os.stat(real)
        self.add_file(path or host_path, Path(real).read_bytes(), stat.S_IMODE(st.st_mode))

    def add_binary_with_libs(self, binary: str) -> None:
        """A dynamically linked program plus the shared libraries `ldd` lists, at their host paths."""
        self.add_host_file(binary)
        out = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
        for line in out.splitlines():
            parts = line.split()
            lib = parts[2] if "=>" in parts and len(parts) > 2 else parts[0] if parts and parts[0].startswith("/") else None
            if lib and lib.startswith("/"):
                self.add_host_file(lib)

    def tar_bytes(self) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            for path in sorted(self.files):
                mode, data, link = self.files[path]
                ti = tarfile.TarInfo(path)
                ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = 0, 0, 0, "", ""
                ti.mode = stat.S_IMODE(mode)
                if stat.S_ISDIR(mode):
                    ti.type = tarfile.DIRTYPE
                    tf.addfile(ti)
                elif stat.S_ISLNK(mode):
                    ti.type, ti.linkname = tarfile.SYMTYPE, link
                    tf.addfile(ti)
                else:
                    ti.size = len(data)
                    tf.addfile(ti, io.BytesIO(data))
        return buf.getvalue()


@dataclass(frozen=True)
class ImageArchive:
    """A loadable `docker save` archive and the image ID it yields."""

    ref: str
    image_id: str  # sha256:<hex of the config>
    data: bytes


def go_arch() -> str:
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(m, m)


def build_archive(ref: str, rootfs: RootFS, config: dict) -> ImageArchive:
    """A deterministic single-layer image archive: same inputs, same bytes, same image ID."""
    layer = rootfs.tar_bytes()
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    cfg = {
        "architecture": go_arch(),
        "os": "linux",
        "created": EPOCH,
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], **config,
                   "Labels": {MANAGED_LABEL: "true", **config.get("Labels", {})}},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": EPOCH, "created_by": f"gitkube image build {ref}"}],
    }
    cfg_bytes = json.dumps(cfg, sort_keys=True, separators=(",", ":")).encode()
    cfg_hex = hashlib.sha256(cfg_bytes).hexdigest()
    layer_dir = hashlib.sha256(layer).hexdigest()
    manifest = [{"Config": f"{cfg_hex}.json", "RepoTags": [ref], "Layers": [f"{layer_dir}/layer.tar"]}]
    outer = RootFS()
    outer.add_file(f"{cfg_hex}.json", cfg_bytes)
    outer.add_file(f"{layer_dir}/VERSION", b"1.0")
    outer.add_file(f"{layer_dir}/layer.tar", layer)
    outer.add_file("manifest.json", json.dumps(manifest, separators=(",", ":")).encode())
    return ImageArchive(ref=ref, image_id="sha256:" + cfg_hex, data=outer.tar_bytes())


def busybox_rootfs() -> RootFS:
    """A root filesystem of busybox-static with every applet linked into /bin, and minimal /etc files."""
    bb = shutil.which("busybox") or "/bin/busybox"
    if not os.path.exists(bb):
        raise ImageBuildError("busybox not found: apt-get install -y busybox-static")
    data = Path(os.path.realpath(bb)).read_bytes()
    if b"ld-linux" in data[:8192]:  # a dynamic binary names its ELF interpreter near the start
        raise ImageBuildError("busybox is dynamically linked: apt-get install -y busybox-static")
    fs = RootFS()
    fs.add_file("bin/busybox", data, 0o755)
    applets = subprocess.run([bb, "--list-full"], capture_output=True, text=True).stdout.split()
    for a in applets:
        if a.endswith("/busybox"):
            continue
        depth = a.count("/")
        fs.add_symlink(a, "../" * depth + "bin/busybox" if depth else "bin/busybox")
    fs.add_file("etc/passwd", PASSWD.encode())
    fs.add_file("etc/group", GROUP.encode())
    for d, m in (("tmp", 0o1777), ("root", 0o700), ("var/www", 0o755), ("proc", 0o555), ("sys", 0o555), ("dev", 0o755)):
        fs.add_dir(d, m)
    return fs


def busybox_image() -> ImageArchive:
    """`gitkube/busybox:latest`: busybox-static, a shell by default."""
    return build_archive(BUSYBOX_IMAGE, busybox_rootfs(), {"Cmd": ["sh"], "WorkingDir": "/"})


def pause_image() -> ImageArchive:
    """`gitkube/pause:3`: the infra container holding a pod's namespaces; sleeps until killed."""
    fs = RootFS()
    bb = Path(os.path.realpath(shutil.which("busybox") or "/bin/busybox")).read_bytes()
    fs.add_file("bin/busybox", bb, 0o755)
    fs.add_symlink("bin/sleep", "busybox")
    fs.add_file("etc/passwd", PASSWD.encode())
    fs.add_file("etc/group", GROUP.encode())
    return build_archive(PAUSE_IMAGE, fs, {"Entrypoint": ["/bin/sleep", "2147483647"], "StopSignal": "SIGKILL"})
