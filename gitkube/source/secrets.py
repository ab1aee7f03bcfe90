"""Secrets encrypted in Git with age (age-encryption.org/v1): which identity decrypts them, decrypting a
revision's `*.age` files, and encrypting a manifest for a recipient. The cryptography is pyrage's (the Rust
`age` crate); gitkube only reads keys and calls it."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

import pyrage
from pyrage import x25519

from gitkube.api.errors import Problem

AGE_SUFFIX = ".age"
ARMOR_BEGIN = b"-----BEGIN AGE ENCRYPTED FILE-----"
# A repository (or a --path directory) that holds this file opts in to plain-text Secret manifests.
PLAINTEXT_MARKER = ".gitkube-plaintext-secrets"
IDENTITY_ENV = "GITKUBE_AGE_IDENTITY"


class IdentityError(Exception):
    """The identity file cannot be read or holds no age identity."""


@dataclass(frozen=True)
class Identities:
    """age identities read from one file, and the key that makes Secret digests (HMAC) unguessable without it."""

    path: str | None = None
    keys: tuple = field(default=(), repr=False)
    digest_key: bytes = field(default=b"gitkube", repr=False)

    def __repr__(self) -> str:  # never print key material
        return f"Identities(path={self.path!r}, count={len(self.keys)})"


def load_identities(path: str | None) -> Identities:
    """The age identities of `path` (age-keygen's format: `AGE-SECRET-KEY-1…` lines, `#` comments), or none when
    no path is given. Raises IdentityError naming the file and the reason."""
    if not path:
        return Identities()
    try:
        with open(os.path.expanduser(path), "rb") as f:
            raw = f.read()
    except OSError as e:
        raise IdentityError(f"{path}: cannot read the age identity file: {e.strerror or e}") from None
    keys = []
    for n, line in enumerate(raw.decode("utf-8", "replace").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            keys.append(x25519.Identity.from_str(line))
        except Exception:  # noqa: BLE001 - pyrage raises its own error types; the message must not echo the line
            raise IdentityError(f"{path}:{n}: not an age identity (expected AGE-SECRET-KEY-1…)") from None
    if not keys:
        raise IdentityError(f"{path}: holds no age identity (AGE-SECRET-KEY-1…)")
    return Identities(path, tuple(keys), hashlib.sha256(b"gitkube secret digest\0" + raw).digest())


def identity_path(option: str | None) -> str | None:
    """The identity file to use: the --age-identity option, else env GITKUBE_AGE_IDENTITY, else none."""
    return option or os.environ.get(IDENTITY_ENV) or None


def is_encrypted_name(path: str) -> bool:
    """Whether a manifest path names an age-encrypted manifest (`x.yaml.age`, `x.yml.age`, `x.json.age`)."""
    return path.endswith((".yaml.age", ".yml.age", ".json.age"))


def decrypt_files(files: list[tuple[str, bytes]], ids: Identities) -> tuple[list[tuple[str, bytes]], list[Problem]]:
    """Each `*.age` file of `files` decrypted (its path kept, so errors name the file in Git); a file that cannot be
    decrypted is a problem naming it and the reason (which refuses the revision)."""
    out: list[tuple[str, bytes]] = []
    problems: list[Problem] = []
    for path, data in files:
        if not is_encrypted_name(path):
            out.append((path, data))
            continue
        if not ids.keys:
            problems.append(Problem(path, None, "", "age-encrypted, but no identity was given to decrypt it "
                                                    f"(--age-identity FILE or env {IDENTITY_ENV})"))
            continue
        try:
            out.append((path, pyrage.decrypt(data, list(ids.keys))))
        except pyrage.DecryptError as e:
            problems.append(Problem(path, None, "", f"cannot be decrypted: {_reason(str(e), data)}"))
    return out, problems


def _reason(message: str, data: bytes) -> str:
    """pyrage's message in words a user can act on."""
    if "No matching keys" in message:
        return f"no matching identity (it was encrypted to other recipients): {message}"
    if not data.startswith((b"age-encryption.org/", ARMOR_BEGIN)):
        return f"not an age file (neither binary nor armored age): {message}"
    return f"corrupted or truncated age file: {message}"


def encrypt(plaintext: bytes, recipients: list[str], armor: bool = True) -> bytes:
    """`plaintext` encrypted to age X25519 recipients (`age1…`), ASCII-armored by default (diff-friendly in Git).
    Raises ValueError for a recipient that is not an age public key."""
    recips = []
    for r in recipients:
        try:
            recips.append(x25519.Recipient.from_str(r.strip()))
        except Exception:  # noqa: BLE001
            raise ValueError(f"{r!r} is not an age recipient (expected a public key age1…)") from None
    if not recips:
        raise ValueError("at least one --recipient is needed")
    return pyrage.encrypt(plaintext, recips, armored=armor)
