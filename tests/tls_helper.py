"""A throwaway self-signed certificate and a small HTTPS server for tests of HTTPS probes and hooks."""
from __future__ import annotations

import datetime
import http.server
import ssl
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def self_signed(directory: Path) -> tuple[Path, Path]:
    """(certificate, key) PEM files for a self-signed certificate no client could verify."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pod.invalid")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    c, k = directory / "cert.pem", directory / "key.pem"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    return c, k


class RecordingHandler(http.server.BaseHTTPRequestHandler):
    """200 for /healthz, 503 otherwise; records (path, X-Probe header, User-Agent) of every GET."""

    seen: list[tuple[str, str | None, str | None]] = []

    def do_GET(self):
        code = 200 if self.path == "/healthz" else 503
        body = self.path.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        type(self).seen.append((self.path, self.headers.get("X-Probe"), self.headers.get("User-Agent")))

    def log_message(self, *a):
        pass


def serve(host: str, directory: Path | None, handler=RecordingHandler) -> http.server.ThreadingHTTPServer:
    """An HTTP server on host (port chosen by the kernel), HTTPS when `directory` is given for the certificate."""
    srv = http.server.ThreadingHTTPServer((host, 0), handler)
    if directory is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*self_signed(directory))
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return srv
