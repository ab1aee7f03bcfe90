"""Where the API server listens and how clients trust it: plain HTTP on loopback; beyond loopback (or with
--api-tls) HTTPS with a self-signed certificate made once per state dir and a bearer token required. The server
runs in its own thread and event loop beside the control loop; `gitkube kubeconfig` reads what it wrote."""
from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import json
import logging
import os
import secrets
import socket
import ssl
import threading

from aiohttp import web

from gitkube.server.app import build_app
from gitkube.server.context import ApiContext

log = logging.getLogger("gitkube.api")

DEFAULT_LISTEN = "127.0.0.1:6443"
API_DIR = "api"  # inside the state dir: tls.crt, tls.key, token, endpoint.json


class ListenError(ValueError):
    """An --api-listen value that is not HOST:PORT."""


def parse_listen(text: str) -> tuple[str, int]:
    """Decides host and port of an --api-listen value: HOST:PORT, [IPv6]:PORT or :PORT (loopback)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ListenError(f"--api-listen {text!r}: expected HOST:PORT, e.g. {DEFAULT_LISTEN}")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Decides whether an address is loopback only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def api_dir(state_dir: str) -> str:
    return os.path.join(state_dir, API_DIR)


def _write_private(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def ensure_token(state_dir: str) -> str:
    """The bearer token of this state dir's API (made once, kept mode 0600)."""
    d = api_dir(state_dir)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "token")
    if not os.path.exists(path):
        _write_private(path, secrets.token_urlsafe(32).encode())
    with open(path) as f:
        return f.read().strip()


def ensure_certificate(state_dir: str, host: str) -> tuple[str, str]:
    """A self-signed certificate (and key) valid for `host`, loopback and this machine's name; made when absent or
    when it does not name `host`. Returns (cert path, key path)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    d = api_dir(state_dir)
    os.makedirs(d, exist_ok=True)
    crt, key = os.path.join(d, "tls.crt"), os.path.join(d, "tls.key")
    names = {"localhost", socket.gethostname()}
    ips = {"127.0.0.1", "::1"}
    if host not in ("0.0.0.0", "::"):
        (ips if _is_ip(host) else names).add(host)
    if os.path.exists(crt) and os.path.exists(key):
        cert = x509.load_pem_x509_certificate(open(crt, "rb").read())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        have = {str(i) for i in san.get_values_for_type(x509.IPAddress)} | set(san.get_values_for_type(x509.DNSName))
        if (names | ips) <= have and cert.not_valid_after_utc > dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30):
            return crt, key
    pk = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gitkube-apiserver")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(pk.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=825))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in sorted(names)]
                                                       + [x509.IPAddress(ipaddress.ip_address(i)) for i in sorted(ips)]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(pk, hashes.SHA256()))
    _write_private(key, pk.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))
    with open(crt, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return crt, key


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def kubeconfig(state_dir: str, server: str | None = None) -> str:
    """Decides a kubeconfig (YAML) for this state dir's API: the address it listens on, its certificate and token
    when it serves HTTPS."""
    import yaml

    ep = read_endpoint(state_dir)
    url = server or (ep or {}).get("server") or f"http://{DEFAULT_LISTEN}"
    cluster: dict = {"server": url}
    user: dict = {}
    if url.startswith("https://"):
        crt = os.path.join(api_dir(state_dir), "tls.crt")
        if os.path.exists(crt):
            cluster["certificate-authority-data"] = base64.b64encode(open(crt, "rb").read()).decode()
        tok = os.path.join(api_dir(state_dir), "token")
        if os.path.exists(tok):
            user["token"] = open(tok).read().strip()
    doc = {"apiVersion": "v1", "kind": "Config", "clusters": [{"name": "gitkube", "cluster": cluster}],
           "users": [{"name": "gitkube", "user": user}],
           "contexts": [{"name": "gitkube", "context": {"cluster": "gitkube", "user": "gitkube", "namespace": "default"}}],
           "current-context": "gitkube", "preferences": {}}
    return yaml.safe_dump(doc, sort_keys=False)


def read_endpoint(state_dir: str) -> dict | None:
    try:
        with open(os.path.join(api_dir(state_dir), "endpoint.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ApiServer:
    """The API server in a thread of its own: start() binds (raising OSError when it cannot), stop() ends it."""

    def __init__(self, ctx: ApiContext, listen: str = DEFAULT_LISTEN, tls: bool = False):
        self.ctx = ctx
        self.host, self.port = parse_listen(listen)
        self.tls = tls or not is_loopback(self.host)
        self.url: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    def start(self, timeout: float = 15.0) -> str:
        """Bind and serve; returns the URL clients use."""
        ssl_ctx = None
        if self.tls:
            crt, key = ensure_certificate(self.ctx.state_dir, self.host)
            ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_ctx.load_cert_chain(crt, key)
            self.ctx.token = self.ctx.token or ensure_token(self.ctx.state_dir)
        ready = threading.Event()
        failure: list[BaseException] = []

        async def boot():
            self._runner = web.AppRunner(build_app(self.ctx), access_log=None, handle_signals=False,
                                         shutdown_timeout=1.0)
            await self._runner.setup()
            site = web.TCPSite(self._runner, self.host, self.port, ssl_context=ssl_ctx, reuse_address=True)
            await site.start()
            sock = site._server.sockets[0]  # the bound port, when 0 was asked for
            self.port = sock.getsockname()[1]

        def run():
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(boot())
            except BaseException as e:  # noqa: BLE001 - handed to start()
                failure.append(e)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()

        self._thread = threading.Thread(target=run, daemon=True, name="api-server")
        self._thread.start()
        if not ready.wait(timeout):
            raise OSError(f"API server did not start within {timeout:.0f}s")
        if failure:
            raise failure[0]
        host = f"[{self.host}]" if ":" in self.host else ("127.0.0.1" if self.host in ("0.0.0.0", "") else self.host)
        self.url = f"{'https' if self.tls else 'http'}://{host}:{self.port}"
        d = api_dir(self.ctx.state_dir)
        os.makedirs(d, exist_ok=True)
        ep = read_endpoint(self.ctx.state_dir)
        if not (ep and ep.get("pid") != os.getpid() and _alive(ep.get("pid"))):
            # the first live server of a state dir is the one `gitkube kubeconfig` names (serve, usually)
            with open(os.path.join(d, "endpoint.json"), "w") as f:
                json.dump({"server": self.url, "pid": os.getpid()}, f)
        log.info("API server on %s%s", self.url, " (HTTPS, bearer token required)" if self.tls else "")
        return self.url

    def stop(self) -> None:
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)
        ep = read_endpoint(self.ctx.state_dir)
        if ep and ep.get("pid") == os.getpid():
            try:
                os.remove(os.path.join(api_dir(self.ctx.state_dir), "endpoint.json"))
            except OSError:
                pass
