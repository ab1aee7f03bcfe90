"""Handlers run from the node's side, for probes and lifecycle hooks: exec inside the container (Docker exec),
TCP and HTTP to the pod over a direct-tcpip channel of the node's SSH connection."""
from __future__ import annotations

import concurrent.futures as cf
import ipaddress
import ssl
import time

from gitkube.nodes.transport.docker_api import APIError, NotFound
from gitkube.nodes.transport.fleet import NodeHandle



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
    if h.pool is None:
        raise RuntimeError(f"node {h.name}: no pool for commands with a deadline (a handle outside a Fleet)")
    fut = h.pool.submit(h.docker.exec, cid, cmd)
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


def http_get(h: NodeHandle, host: str, port: int, path: str, headers: list[tuple[str, str]], timeout: float,
             scheme: str = "HTTP") -> tuple[bool, str]:
    """An HTTP(S) GET from the node; success is a status from 200 to 399.

    HTTPS is spoken over the same SSH channel and, as the kubelet's probes do, skips certificate verification."""
    try:
        chan = h.ssh.open_tcp(host, port, timeout=timeout)
    except Exception as e:  # noqa: BLE001
        return False, f'Get "{_url(scheme, host, port, path)}": {e}'
    try:
        return http_get_over(chan, host, port, path, headers, timeout, scheme)
    finally:
        chan.close()


def http_get_over(chan, host: str, port: int, path: str, headers: list[tuple[str, str]], timeout: float,
                  scheme: str = "HTTP") -> tuple[bool, str]:
    """The probe's GET over an open stream with sendall/recv/settimeout (an SSH channel, or a socket in tests)."""
    url = _url(scheme, host, port, path)
    try:
        line, _ = get_over(chan, host, port, path, headers, timeout, scheme)
    except Exception as e:  # noqa: BLE001 - a timeout, a reset or a failed handshake is a failure
        return False, f'Get "{url}": {e}'
    parts = line.split()
    if len(parts) < 2 or not parts[1].isdigit():
        return False, f'Get "{url}": malformed or no response ({line[:80]!r})'
    code = int(parts[1])
    return (200 <= code < 400), f"HTTP probe failed with statuscode: {code}" if not 200 <= code < 400 else f"{code}"


def get_over(chan, host: str, port: int, path: str, headers: list[tuple[str, str]], timeout: float,
             scheme: str = "HTTP", body: bool = False) -> tuple[str, bytes]:
    """An HTTP/1.0 GET over an open stream: (its status line, and with `body` what follows the headers, read to
    the end). Raises on a timeout, a reset or a failed TLS handshake."""
    deadline = time.monotonic() + timeout
    conn = _TLS(chan, host, deadline) if scheme == "HTTPS" else _Plain(chan, deadline)
    hdrs = "".join(f"{k}: {v}\r\n" for k, v in headers)
    req = f"GET {path or '/'} HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: gitkube-probe/1.0\r\n{hdrs}Connection: close\r\n\r\n"
    conn.send(req.encode())
    buf = b""
    while (body or b"\r\n" not in buf) and time.monotonic() < deadline:
        chunk = conn.recv()
        if not chunk:
            break
        buf += chunk
    return buf.split(b"\r\n", 1)[0].decode(errors="replace"), buf.partition(b"\r\n\r\n")[2] if body else b""


def _url(scheme: str, host: str, port: int, path: str) -> str:
    return f"{scheme.lower()}://{host}:{port}{path}"


class _Plain:
    def __init__(self, chan, deadline: float):
        self.chan, self.deadline = chan, deadline

    def send(self, data: bytes) -> None:
        self.chan.sendall(data)

    def recv(self) -> bytes:
        self.chan.settimeout(max(0.05, self.deadline - time.monotonic()))
        return self.chan.recv(4096)


class _TLS(_Plain):
    """TLS through memory buffers, so it runs over an SSH channel as over a socket. No certificate checks."""

    def __init__(self, chan, host: str, deadline: float):
        super().__init__(chan, deadline)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname=None if _is_ip(host) else host)
        self._until_done(self.tls.do_handshake)

    def _flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self.chan.sendall(data)

    def _fill(self) -> None:
        chunk = super().recv()  # raises on timeout
        if chunk:
            self.incoming.write(chunk)
        else:
            self.incoming.write_eof()  # the next TLS call raises, or ends the read

    def _until_done(self, op):
        while True:
            try:
                r = op()
                self._flush()
                return r
            except ssl.SSLWantReadError:
                self._flush()
                self._fill()

    def send(self, data: bytes) -> None:
        self._until_done(lambda: self.tls.write(data))

    def recv(self) -> bytes:
        try:
            return self._until_done(lambda: self.tls.read(4096))
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            return b""


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def run_handler(h: NodeHandle, cid: str, handler, pod_ip: str, timeout: float,
                named_ports: dict[str, int] | None = None) -> tuple[bool, str]:
    """Run an exec/httpGet/tcpSocket handler (probe or hook) and say whether it succeeded, and why not."""
    try:
        if handler.exec is not None:
            return exec_in(h, cid, list(handler.exec.command or ()), timeout)
        if handler.httpGet is not None:
            g = handler.httpGet
            return http_get(h, g.host or pod_ip, _port(g.port, named_ports), g.path or "/",
                            [(x.name, x.value) for x in g.httpHeaders or ()], timeout, g.scheme or "HTTP")
        if handler.tcpSocket is not None:
            t = handler.tcpSocket
            return tcp_check(h, t.host or pod_ip, _port(t.port, named_ports), timeout)
    except ValueError as e:
        return False, str(e)
    return False, "handler has no action"
