"""Handlers run from the node's side, for probes and lifecycle hooks: exec inside the container (Docker exec),
TCP and HTTP to the pod over a direct-tcpip channel of the node's SSH connection."""
from __future__ import annotations

import concurrent.futures as cf
import time

from gitkube.nodes.docker_api import APIError, NotFound
from gitkube.nodes.fleet import NodeHandle

_pool = cf.ThreadPoolExecutor(max_workers=16, thread_name_prefix="handler")


def _port(port, named: dict[str, int] | None) -> int:
    if isinstance(port, int):
        return port
    if str(port).isdigit():
        return int(port)
    if named and port in named:
        return named[port]
    raise ValueError(f"no container port named {port!r}")


def exec_in(h: NodeHandle, cid: str, cmd: list[str], timeout: float) -> tuple[bool, str]:
    """Run a command in the container; success is exit code 0 within the timeout."""
    api = h.docker.api

    def go():
        ex = h.docker.call(api.exec_create, cid, cmd, stdout=True, stderr=True)
        out = h.docker.call(api.exec_start, ex["Id"])
        code = h.docker.call(api.exec_inspect, ex["Id"]).get("ExitCode")
        return code, out

    fut = _pool.submit(go)
    try:
        code, out = fut.result(timeout=timeout)
    except cf.TimeoutError:
        return False, f"command {cmd!r} timed out after {timeout:g}s"
    except (APIError, NotFound) as e:
        return False, f"exec {cmd!r} failed: {getattr(e, 'explanation', None) or e}"
    text = (out or b"").decode(errors="replace").strip()
    if code != 0:
        return False, f"command {cmd!r} exited with {code}: {text[:200]}"
    return True, text[:200]


def tcp_check(h: NodeHandle, host: str, port: int, timeout: float) -> tuple[bool, str]:
    """Whether a TCP connection to host:port opens from the node."""
    try:
        chan = h.ssh.open_tcp(host, port, timeout=timeout)
        chan.close()
        return True, ""
    except Exception as e:  # noqa: BLE001 - refused, unreachable and timed out are all failures
        return False, f"dial tcp {host}:{port}: {e}"


def http_get(h: NodeHandle, host: str, port: int, path: str, headers: list[tuple[str, str]], timeout: float) -> tuple[bool, str]:
    """An HTTP GET from the node; success is a status from 200 to 399."""
    deadline = time.monotonic() + timeout
    try:
        chan = h.ssh.open_tcp(host, port, timeout=timeout)
    except Exception as e:  # noqa: BLE001
        return False, f'Get "http://{host}:{port}{path}": {e}'
    try:
        hdrs = "".join(f"{k}: {v}\r\n" for k, v in headers)
        req = f"GET {path or '/'} HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: gitkube-probe/1.0\r\n{hdrs}Connection: close\r\n\r\n"
        chan.sendall(req.encode())
        buf = b""
        while b"\r\n" not in buf and time.monotonic() < deadline:
            chan.settimeout(max(0.05, deadline - time.monotonic()))
            chunk = chan.recv(4096)
            if not chunk:
                break
            buf += chunk
        line = buf.split(b"\r\n", 1)[0].decode(errors="replace")
        parts = line.split()
        if len(parts) < 2 or not parts[1].isdigit():
            return False, f'Get "http://{host}:{port}{path}": malformed or no response ({line[:80]!r})'
        code = int(parts[1])
        return (200 <= code < 400), f"HTTP probe failed with statuscode: {code}" if not 200 <= code < 400 else f"{code}"
    except Exception as e:  # noqa: BLE001 - a timeout is a failure
        return False, f'Get "http://{host}:{port}{path}": {e}'
    finally:
        chan.close()


def run_handler(h: NodeHandle, cid: str, handler, pod_ip: str, timeout: float,
                named_ports: dict[str, int] | None = None) -> tuple[bool, str]:
    """Run an exec/httpGet/tcpSocket handler (probe or hook) and say whether it succeeded, and why not."""
    try:
        if handler.exec is not None:
            return exec_in(h, cid, list(handler.exec.command or ()), timeout)
        if handler.httpGet is not None:
            g = handler.httpGet
            return http_get(h, g.host or pod_ip, _port(g.port, named_ports), g.path or "/",
                            [(x.name, x.value) for x in g.httpHeaders or ()], timeout)
        if handler.tcpSocket is not None:
            t = handler.tcpSocket
            return tcp_check(h, t.host or pod_ip, _port(t.port, named_ports), timeout)
    except ValueError as e:
        return False, str(e)
    return False, "handler has no action"
