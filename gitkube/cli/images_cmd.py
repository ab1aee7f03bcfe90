"""`gitkube images`: build the project's images from Debian packages, load images into every node over SSH with
no registry (the air-gapped path), and list what the nodes hold."""
from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
import time
from pathlib import Path

from gitkube.cli.common import fail


def register(sub) -> None:
    p = sub.add_parser(
        "images",
        help="build the project's images and load images into the nodes over SSH (no registry)",
        description="Images without a registry. The project's images (busybox, pause, haproxy, dnsmasq, redis, "
        "guestbook-frontend, guestbook-frontend-v2) are built on this machine from its Debian packages as deterministic `docker save` "
        "archives: the same packages give the same image ID on every node. `load` streams an image to every node "
        "over its SSH connection and skips nodes that already hold that image ID.",
    )
    ss = p.add_subparsers(dest="images_cmd", metavar="ACTION")

    b = ss.add_parser("build", help="build the project's images (all, or the NAMEs given)",
                      description="Build the project's images from this machine's Debian packages and print their "
                      "references and image IDs. Nothing is sent to the nodes (see `images load`).")
    b.add_argument("names", nargs="*", metavar="NAME", help="images to build: " + ", ".join(_names()) + " (default: all)")
    b.add_argument("-o", "--output", metavar="DIR", help="also write each image as DIR/NAME.tar (`docker load` format)")
    b.set_defaults(func=cmd_build)

    ld = ss.add_parser("load", help="stream an image to every node over SSH, skipping nodes that have it",
                       description="Load IMAGE into the nodes: a `docker save` tar file, or one of the project's "
                       "images by name or reference (e.g. redis or gitkube/redis:7), built first. Nodes that already "
                       "hold the same image ID under that reference are skipped.")
    ld.add_argument("images", nargs="+", metavar="IMAGE|TARFILE", help="a project image name/reference, a tar file, or `all` (every project image)")
    _node_args(ld)
    ld.set_defaults(func=cmd_load)

    ls = ss.add_parser("list", help="list gitkube's images on each node",
                       description="Per node: the images gitkube built (label io.gitkube.managed=true) and any "
                       "gitkube/* reference, with image IDs and sizes.")
    _node_args(ls)
    ls.add_argument("-o", "--output", choices=["table", "json"], default="table", help="output format (default table)")
    ls.set_defaults(func=cmd_list)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def _names() -> list[str]:
    from gitkube.nodes.images.app import BUILDERS

    return list(BUILDERS)


def _node_args(p) -> None:
    p.add_argument("--inventory", default="inventory.yaml", metavar="FILE",
                   help="node inventory (default: inventory.yaml)")
    p.add_argument("--node", action="append", metavar="N", help="only this node (repeatable; default: every node)")


def _fleet(args):
    from gitkube.api.errors import InvalidInput
    from gitkube.nodes.transport.fleet import Fleet
    from gitkube.nodes.inventory import load_inventory

    try:
        nodes = load_inventory(args.inventory)
    except InvalidInput as e:
        raise _CliError("\n".join(str(p) for p in getattr(e, "problems", [])) or str(e)) from e
    names = [n.name for n in nodes]
    for n in args.node or []:
        if n not in names:
            raise _CliError(f"no node {n!r} in {args.inventory} (nodes: {', '.join(names)})")
    return Fleet(nodes), (args.node or names)


class _CliError(Exception):
    pass


def _build(names: list[str]):
    from gitkube.nodes.images.app import BUILDERS, build, builtin_name

    out = []
    for n in names:
        key = builtin_name(n)
        if key is None:
            raise _CliError(f"unknown image {n!r}: the project's images are {', '.join(BUILDERS)}")
        t0 = time.monotonic()
        a = build(key)
        out.append((key, a, time.monotonic() - t0))
    return out


def cmd_build(args) -> int:
    from gitkube.nodes.images.archive import ImageBuildError

    try:
        built = _build(args.names or _names())
    except (_CliError, ImageBuildError) as e:
        return fail(str(e), 2)
    if args.output:
        Path(args.output).mkdir(parents=True, exist_ok=True)
    for key, a, secs in built:
        line = f"{a.ref:34} {a.image_id[7:19]}  {len(a.data) / 1e6:6.1f} MB  {secs:.2f}s"
        if args.output:
            path = Path(args.output) / f"{key}.tar"
            path.write_bytes(a.data)
            line += f"  {path}"
        print(line)
    return 0


def archive_from_tar(path: str):
    """An ImageArchive for a `docker save` tar file: its tag and the image ID (the digest of its config)."""
    from gitkube.nodes.images.archive import ImageArchive

    data = Path(path).read_bytes()
    try:
        with tarfile.open(fileobj=io.BytesIO(data)) as tf:
            manifest = json.load(tf.extractfile("manifest.json"))
            out = []
            for entry in manifest:
                cfg = tf.extractfile(entry["Config"]).read()
                for ref in entry.get("RepoTags") or []:
                    out.append(ImageArchive(ref=ref, image_id="sha256:" + hashlib.sha256(cfg).hexdigest(), data=data))
    except (tarfile.TarError, KeyError, TypeError, ValueError) as e:
        raise _CliError(f"{path}: not a `docker save` archive ({e})") from e
    if not out:
        raise _CliError(f"{path}: the archive names no tagged image (save it with `docker save REPO:TAG`)")
    return out


def cmd_load(args) -> int:
    from gitkube.nodes.images.ship import ship
    from gitkube.nodes.images.archive import ImageBuildError

    try:
        archives = []
        for img in args.images:
            if img == "all" and not Path(img).is_file():
                archives.extend(a for _, a, _ in _build(_names()))
            elif Path(img).is_file():
                archives.extend(archive_from_tar(img))
            else:
                archives.extend(a for _, a, _ in _build([img]))
        fleet, names = _fleet(args)
    except (_CliError, ImageBuildError, OSError) as e:
        return fail(str(e), 2)
    try:
        t0 = time.monotonic()
        loaded = ship(fleet, archives, progress=lambda m: print(m, file=sys.stderr, flush=True), names=names)
        secs = time.monotonic() - t0
    except RuntimeError as e:
        return fail(str(e), 1)
    finally:
        fleet.close()
    for n in names:
        got = loaded.get(n) or []
        skipped = [a.ref for a in archives if a.ref not in got]
        parts = ([f"loaded {', '.join(got)}"] if got else []) + ([f"already had {', '.join(skipped)}"] if skipped else [])
        print(f"{n}: {'; '.join(parts)}")
    print(f"done in {secs:.1f}s", file=sys.stderr)
    return 0


def cmd_list(args) -> int:
    try:
        fleet, names = _fleet(args)
    except _CliError as e:
        return fail(str(e), 2)

    def one(h):
        imgs = h.docker.images()
        out = []
        for i in imgs:
            tags = [t for t in (i.get("RepoTags") or []) if t != "<none>:<none>"]
            managed = (i.get("Labels") or {}).get("io.gitkube.managed") == "true"
            if managed or any(t.startswith("gitkube/") for t in tags):
                for t in tags or ["<none>"]:
                    out.append({"image": t, "id": i["Id"], "size": i.get("Size", 0)})
        return sorted(out, key=lambda x: x["image"])

    try:
        res = fleet.map(one, names, timeout=60)
    finally:
        fleet.close()
    rc = 0
    if args.output == "json":
        print(json.dumps({n: (r if not isinstance(r, Exception) else {"error": str(r)}) for n, r in sorted(res.items())},
                         indent=2))
        return 1 if any(isinstance(r, Exception) for r in res.values()) else 0
    print(f"{'NODE':8} {'IMAGE':36} {'IMAGE ID':14} SIZE")
    for n in names:
        r = res[n]
        if isinstance(r, Exception):
            print(f"{n:8} error: {r}")
            rc = 1
            continue
        for i in r:
            print(f"{n:8} {i['image']:36} {i['id'][7:19]:14} {i['size'] / 1e6:.1f} MB")
    return rc
