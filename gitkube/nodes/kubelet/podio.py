"""Reading from and running in pod containers on a node: logs and exec, as kubectl does."""
from __future__ import annotations

from gitkube.nodes.transport.fleet import NodeHandle

L = "io.gitkube."


def container_for(h: NodeHandle, pod_uid: str, container: str, previous: bool = False) -> str | None:
    """The Docker id of a pod container's current (or previous) instance on the node."""
    found = h.docker.list([f"{L}pod.uid={pod_uid}", f"{L}container.name={container}"])
    found.sort(key=lambda c: int((c.get("Labels") or {}).get(f"{L}container.restartCount", "0")))
    if previous:
        return found[-2]["Id"] if len(found) > 1 else None
    return found[-1]["Id"] if found else None


def stream_logs(h: NodeHandle, cid: str, follow: bool, tail: int):
    """Log bytes of a container (stdout and stderr interleaved), streamed when following."""
    kw = {"stdout": True, "stderr": True, "tail": tail if tail >= 0 else "all"}
    if follow:
        yield from h.docker.logs_stream(cid, **kw)
    else:
        yield h.docker.logs(cid, **kw)


def exec_stream(h: NodeHandle, cid: str, cmd: list[str], out, err) -> int:
    """Run a command in a container, copying its output; returns its exit code."""
    exec_id, stream = h.docker.exec_stream(cid, cmd)
    for o, e in stream:
        if o:
            out.write(o)
            out.flush()
        if e:
            err.write(e)
            err.flush()
    return int(h.docker.exec_exit_code(exec_id) or 0)
