"""Following many containers' logs at once (the Cluster Logging role): each container's stream read on its own
thread over its node's one SSH connection, cut into whole lines, and handed to one sink with the source named, so
lines of different pods interleave as they are written but never mix within a line."""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from gitkube.nodes.transport.fleet import NodeHandle


@dataclass(frozen=True)
class LogSource:
    """One container to read: its node, Docker id, and the names it is shown with."""

    node: str
    cid: str
    namespace: str
    pod: str
    container: str

    @property
    def prefix(self) -> str:
        return f"[pod/{self.pod}/{self.container}]"


def log_kwargs(tail: int | None, since: float | None, timestamps: bool) -> dict:
    kw = {"stdout": True, "stderr": True, "timestamps": timestamps, "tail": tail if tail is not None and tail >= 0 else "all"}
    if since is not None:
        kw["since"] = int(since)
    return kw


def read_lines(h: NodeHandle, src: LogSource, kw: dict) -> list[bytes]:
    """A container's log lines now (not following)."""
    data = h.docker.logs(src.cid, **kw)
    return data.splitlines(keepends=True)


def follow(h: NodeHandle, src: LogSource, kw: dict, sink: Callable[[LogSource, bytes], None],
           stop: threading.Event) -> None:
    """Stream a container's new lines to sink(src, line) until it ends or `stop` is set (checked per chunk)."""
    stream = h.docker.logs_stream(src.cid, **kw)
    buf = b""
    try:
        for chunk in stream:
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                sink(src, line + b"\n")
            if stop.is_set():
                return
        if buf:
            sink(src, buf + b"\n")
    finally:
        try:
            stream.close()
        except Exception:  # noqa: BLE001 - already closed by the engine
            pass
