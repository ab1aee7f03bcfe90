"""httpGet probes and hooks: HTTP and HTTPS (no certificate checks, as the kubelet's) over any byte stream.

The stream here is a loopback socket to a real server; on nodes it is an SSH direct-tcpip channel."""
from __future__ import annotations

import socket

import pytest

from gitkube.nodes.kubelet.hooks import http_get_over
from tests.tls_helper import RecordingHandler, serve


@pytest.fixture
def servers(tmp_path):
    plain, tls = serve("127.0.0.1", None), serve("127.0.0.1", tmp_path)
    RecordingHandler.seen.clear()
    yield plain.server_address[1], tls.server_address[1]
    for s in (plain, tls):
        s.shutdown()
        s.server_close()


def get(port, path, scheme, headers=()):
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        return http_get_over(s, "127.0.0.1", port, path, list(headers), 3.0, scheme)


def test_https_with_a_self_signed_certificate_succeeds(servers):
    _, tls = servers
    assert get(tls, "/healthz", "HTTPS", [("X-Probe", "tls")]) == (True, "200")
    assert RecordingHandler.seen == [("/healthz", "tls", "gitkube-probe/1.0")]


def test_https_status_codes_count(servers):
    _, tls = servers
    assert get(tls, "/broken", "HTTPS") == (False, "HTTP probe failed with statuscode: 503")


def test_plain_http_still_works_and_schemes_do_not_mix(servers):
    plain, tls = servers
    assert get(plain, "/healthz", "HTTP") == (True, "200")
    ok, msg = get(tls, "/healthz", "HTTP")  # HTTP to a TLS port: no HTTP status line comes back
    assert not ok and msg.startswith(f'Get "http://127.0.0.1:{tls}/healthz"'), msg
    ok, msg = get(plain, "/healthz", "HTTPS")  # TLS to a plain port: the handshake fails
    assert not ok and msg.startswith(f'Get "https://127.0.0.1:{plain}/healthz"'), msg
