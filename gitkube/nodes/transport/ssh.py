"""The one SSH seam: a long-lived, host-key-verified paramiko connection per node.

Nothing else in gitkube imports paramiko. The connection is opened by gitkube's own client (never the
user's ~/.ssh files), with TCP_NODELAY and keepalives, and carries many channels: Docker API streams
(`docker system dial-stdio`), commands, and direct-tcpip tunnels for probes.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import logging
import os
import shlex
import socket
import stat
import threading
import time
from dataclasses import dataclass

import paramiko

log = logging.getLogger(__name__)


class _RefusedChannelFilter(logging.Filter):
    """paramiko logs every refused direct-tcpip channel as an error; gitkube raises ConnectionRefusedError for it
    and reports it where it matters (a failing tcpSocket probe, a proxy not listening yet), so the line is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not (msg.startswith("Secsh channel") and "open FAILED" in msg)


logging.getLogger("paramiko.transport").addFilter(_RefusedChannelFilter())


class SSHError(Exception):
    """A node could not be reached or refused us; the message says what to do next."""


class HostKeyError(SSHError):
    """The node's host key is not the one pinned in the inventory."""


@dataclass(frozen=True)
class SSHTarget:
    """Where and how to reach one node."""

    name: str
    host: str
    port: int
    user: str
    identity_file: str
    host_keys: tuple[str, ...]  # known_hosts-style "TYPE BASE64" entries pinned for this node
    connect_timeout: float = 5.0
    keepalive: int = 10


def fingerprint(key: paramiko.PKey) -> str:
    """The OpenSSH SHA256 fingerprint of a key, as `ssh-keygen -lf` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def parse_pinned(entries: tuple[str, ...]) -> list[tuple[str, bytes]]:
    """Pinned host keys as (type, blob); tolerates a leading host field and a trailing comment."""
    out = []
    for line in entries:
        parts = line.split()
        for i, p in enumerate(parts):
            if p.startswith(("ssh-", "ecdsa-", "sk-")) and i + 1 < len(parts):
                try:
                    out.append((p, base64.b64decode(parts[i + 1])))
                except ValueError:
                    pass
                break
    return out


def load_private_key(path: str) -> paramiko.PKey:
    """The client key at `path`, whatever its type."""
    errors = []
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key_file(path)
        except (paramiko.SSHException, ValueError) as e:
            errors.append(f"{cls.__name__}: {e}")
        except OSError as e:
            raise SSHError(f"cannot read identity file {path}: {e.strerror}") from e
    raise SSHError(f"identity file {path} holds no key paramiko can use ({'; '.join(errors)})")


class SSHConnection:
    """One warm, verified SSH transport to a node, reopened on demand after a failure."""

    def __init__(self, target: SSHTarget):
        self.target = target
        self._transport: paramiko.Transport | None = None
        self._lock = threading.Lock()
        self.connects = 0  # how many handshakes were made: a warm connection keeps this at 1
        self._sftp_client: paramiko.SFTPClient | None = None

    # -- connection -------------------------------------------------------------------------
    def transport(self) -> paramiko.Transport:
        """The live transport, connecting (and verifying the host key) when there is none."""
        with self._lock:
            t = self._transport
            if t is not None and t.is_active():
                return t
            self._transport = None
            self._transport = self._connect()
            return self._transport

    def _connect(self) -> paramiko.Transport:
        tg = self.target
        pinned = parse_pinned(tg.host_keys)
        if not pinned:
            raise HostKeyError(
                f"node {tg.name}: no host key pinned in the inventory. Pin it with hostKeys "
                f"(a line of `ssh-keyscan -p {tg.port} {tg.host}` checked out of band) or knownHostsFile."
            )
        try:
            sock = socket.create_connection((tg.host, tg.port), timeout=tg.connect_timeout)
        except OSError as e:
            raise SSHError(f"node {tg.name}: cannot connect to {tg.host}:{tg.port}: {e}") from e
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t = paramiko.Transport(sock)
        # Ask the server for a key type we have pinned, so a node with several host keys is checked
        # against the one the operator recorded.
        opts = t.get_security_options()
        wanted = [k for k, _ in pinned]
        opts.key_types = [k for k in wanted if k in opts.key_types] + [k for k in opts.key_types if k not in wanted]
        try:
            t.start_client(timeout=tg.connect_timeout)
        except (paramiko.SSHException, OSError, EOFError) as e:
            t.close()
            raise SSHError(f"node {tg.name}: SSH handshake with {tg.host}:{tg.port} failed: {e}") from e
        key = t.get_remote_server_key()
        if (key.get_name(), key.asbytes()) not in pinned:
            t.close()
            raise HostKeyError(
                f"node {tg.name}: host key mismatch for {tg.host}:{tg.port}: the server presented "
                f"{key.get_name()} {fingerprint(key)}, which is not pinned in the inventory. If the node was "
                f"legitimately reinstalled, verify the new key out of band (`ssh-keygen -lf` on the node) and pin "
                f"`{key.get_name()} {key.get_base64()}` in its hostKeys; otherwise someone may be intercepting."
            )
        try:
            t.auth_publickey(tg.user, load_private_key(tg.identity_file))
        except paramiko.AuthenticationException as e:
            t.close()
            raise SSHError(
                f"node {tg.name}: {tg.user}@{tg.host} refused key {tg.identity_file}: add its public key to "
                f"~{tg.user}/.ssh/authorized_keys on the node"
            ) from e
        except paramiko.SSHException as e:
            t.close()
            raise SSHError(f"node {tg.name}: authentication failed: {e}") from e
        t.set_keepalive(tg.keepalive)
        self.connects += 1
        log.debug("node %s: SSH connected", tg.name)
        return t

    def close(self) -> None:
        """Drop the transport; the next call reconnects."""
        with self._lock:
            if self._transport is not None:
                self._transport.close()
                self._transport = None

    @property
    def connected(self) -> bool:
        t = self._transport
        return t is not None and t.is_active()

    # -- channels ---------------------------------------------------------------------------
    def exec_channel(self, argv: list[str], timeout: float | None = None) -> paramiko.Channel:
        """A channel running `argv` on the node (quoted: never a shell string built from input)."""
        try:
            chan = self.transport().open_session(timeout=self.target.connect_timeout)
            if timeout is not None:
                chan.settimeout(timeout)
            chan.exec_command(shlex.join(argv))
            return chan
        except (paramiko.SSHException, OSError, EOFError) as e:
            self.close()
            raise SSHError(f"node {self.target.name}: cannot open a channel: {e}") from e

    def run(self, argv: list[str], timeout: float = 30.0, stdin: bytes | None = None) -> tuple[int, bytes, bytes]:
        """Run a command on the node; returns (exit status, stdout, stderr)."""
        chan = self.exec_channel(argv, timeout=timeout)
        try:
            if stdin:
                chan.sendall(stdin)
            chan.shutdown_write()
            out, err = bytearray(), bytearray()
            deadline = time.monotonic() + timeout
            while True:
                if chan.recv_ready():
                    out += chan.recv(65536)
                elif chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                elif chan.exit_status_ready():
                    while chan.recv_ready():
                        out += chan.recv(65536)
                    while chan.recv_stderr_ready():
                        err += chan.recv_stderr(65536)
                    return chan.recv_exit_status(), bytes(out), bytes(err)
                elif time.monotonic() > deadline:
                    raise SSHError(f"node {self.target.name}: `{shlex.join(argv)}` timed out after {timeout}s")
                else:
                    time.sleep(0.005)
        finally:
            chan.close()

    def open_tcp(self, host: str, port: int, timeout: float = 5.0) -> paramiko.Channel:
        """A TCP connection made from the node's side (sshd's direct-tcpip), e.g. to a pod IP for a probe."""
        try:
            chan = self.transport().open_channel("direct-tcpip", (host, port), ("127.0.0.1", 0), timeout=timeout)
        except paramiko.ChannelException as e:
            raise ConnectionRefusedError(f"{host}:{port} from node {self.target.name}: {e}") from e
        except (paramiko.SSHException, OSError, EOFError) as e:
            self.close()
            raise SSHError(f"node {self.target.name}: cannot tunnel to {host}:{port}: {e}") from e
        chan.settimeout(timeout)
        return chan


    # -- files (SFTP: paths travel as protocol fields, never through a shell) ------------------------------
    def _sftp(self) -> paramiko.SFTPClient:
        t = self.transport()
        with self._lock:
            c = self._sftp_client
            if c is not None and c.get_channel() is not None and c.get_channel().get_transport() is t and not c.get_channel().closed:
                return c
            try:
                self._sftp_client = paramiko.SFTPClient.from_transport(t)
                self._sftp_client.get_channel().settimeout(self.target.connect_timeout * 2)
            except (paramiko.SSHException, OSError, EOFError) as e:
                raise SSHError(
                    f"node {self.target.name}: the SSH server offers no SFTP subsystem, which gitkube needs to check "
                    f"and create hostPath volumes; enable it (`Subsystem sftp internal-sftp` in sshd_config): {e}"
                ) from e
            return self._sftp_client

    def _file_op(self, what: str, fn):
        try:
            return fn(self._sftp())
        except (paramiko.SSHException, EOFError) as e:
            with self._lock:
                self._sftp_client = None
            raise SSHError(f"node {self.target.name}: cannot {what}: {e}") from e

    def path_kind(self, path: str) -> str | None:
        """What the node has at `path` (following symlinks): directory, file, socket, char, block, other; None if nothing."""
        def look(sftp):
            try:
                return sftp.stat(path).st_mode or 0
            except FileNotFoundError:
                return None

        mode = self._file_op(f"look at {path}", look)
        if mode is None:
            return None
        for test, kind in ((stat.S_ISDIR, "directory"), (stat.S_ISREG, "file"), (stat.S_ISSOCK, "socket"),
                           (stat.S_ISCHR, "char"), (stat.S_ISBLK, "block")):
            if test(mode):
                return kind
        return "other"

    def make_dirs(self, path: str, mode: int = 0o755) -> None:
        """Create the directory `path` and any missing parents (an existing one is left as it is)."""
        def mk(sftp):
            cur = ""
            for part in [p for p in path.split("/") if p]:
                cur += "/" + part
                try:
                    sftp.stat(cur)
                except FileNotFoundError:
                    sftp.mkdir(cur, mode)
                    sftp.chmod(cur, mode)  # mkdir's mode is filtered by the server's umask

        self._file_op(f"create directory {path}", mk)

    def home(self) -> str:
        """The SSH user's home directory on the node (where SFTP's relative paths start)."""
        return self._file_op("find the home directory", lambda sftp: sftp.normalize("."))

    def write_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        """Replace the file at `path` with `data` whole (written beside it, then renamed over it)."""
        def put(sftp):
            tmp = f"{path}.gk-new"
            with sftp.open(tmp, "wb") as f:
                f.write(data)
            sftp.chmod(tmp, mode)
            sftp.posix_rename(tmp, path)

        self._file_op(f"write {path}", put)

    def append_file(self, path: str, data: bytes) -> None:
        """Append `data` to `path` in one write (created if missing). Opened read-write and in append mode: on a FIFO
        the open never blocks (Linux) and the server does not seek, so a line reaches the FIFO's reader."""
        def put(sftp):
            with sftp.open(path, "a+") as f:
                f.write(data)

        self._file_op(f"append to {path}", put)

    def read_file(self, path: str) -> bytes | None:
        """The content of the file at `path` (None when there is none)."""
        def get(sftp):
            try:
                with sftp.open(path, "rb") as f:
                    return f.read()
            except FileNotFoundError:
                return None

        return self._file_op(f"read {path}", get)

    def remove_tree(self, path: str) -> None:
        """Remove a directory of plain files (gitkube's own), ignoring what is already gone."""
        def rm(sftp):
            try:
                names = sftp.listdir(path)
            except FileNotFoundError:
                return
            for name in names:
                try:
                    sftp.remove(f"{path}/{name}")
                except FileNotFoundError:
                    pass
            try:
                sftp.rmdir(path)
            except (FileNotFoundError, OSError):
                pass

        self._file_op(f"remove {path}", rm)

    def create_file(self, path: str, mode: int = 0o644) -> None:
        """Create an empty file at `path` unless something is there (its directory must exist)."""
        def touch(sftp):
            with sftp.open(path, "a"):
                pass
            sftp.chmod(path, mode)

        self._file_op(f"create file {path}", touch)

    def remove_file(self, path: str) -> bool:
        """Remove a file on the node; False if there was none."""
        def rm(sftp):
            try:
                sftp.remove(path)
                return True
            except FileNotFoundError:
                return False

        return self._file_op(f"remove {path}", rm)


@functools.lru_cache(maxsize=1024)
def known_hosts_entries(text: str, host: str, port: int) -> tuple[str, ...]:
    """The "keytype key" entries for host:port in the text of an OpenSSH known_hosts file (plain host fields; hashed
    entries are matched too). Cached by the text: every pass loads the
    inventory, and matching each node against every line (an HMAC per hashed line) was most of a quiet pass's
    cost at 32 nodes."""
    names = {host if port == 22 else f"[{host}]:{port}"}
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) < 3 or parts[0].startswith("@"):
            continue
        hosts = parts[0].split(",")
        if any(h in names for h in hosts) or any(_hashed_match(h, n) for h in hosts for n in names):
            out.append(f"{parts[1]} {parts[2]}")
    return tuple(out)


def _hashed_match(entry: str, name: str) -> bool:
    if not entry.startswith("|1|"):
        return False
    import hmac

    try:
        _, _, salt, digest = entry.split("|")
        mac = hmac.new(base64.b64decode(salt), name.encode(), hashlib.sha1).digest()
        return hmac.compare_digest(base64.b64encode(mac).decode(), digest)
    except ValueError:
        return False
