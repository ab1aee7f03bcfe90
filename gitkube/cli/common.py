"""What the commands share: the source options (which repo, revision, path, inventory) and how a failure is reported."""
from __future__ import annotations

import argparse
import sys


def add_source_args(parser: argparse.ArgumentParser) -> None:
    """Adds the options that say which desired state to read: --repo, --rev, --path, --inventory."""
    g = parser.add_argument_group("source (the desired state)")
    g.add_argument("--repo", default=".", metavar="PATH",
                   help="Git repository holding the manifests, working tree or bare (default: .)")
    g.add_argument("--rev", default=None, metavar="REV",
                   help="revision to read: branch, tag or commit SHA (default: the checked-out branch; HEAD of a "
                        "bare repository)")
    g.add_argument("--path", default="manifests", metavar="DIR",
                   help="directory inside the repository whose YAML/JSON files are the manifests, read recursively "
                        "(default: manifests)")
    g.add_argument("--inventory", default="inventory.yaml", metavar="FILE",
                   help="node inventory: read from the same revision when the file is in the repository, else from "
                        "disk (default: inventory.yaml)")
    g.add_argument("--age-identity", default=None, metavar="FILE",
                   help="age identity file (age-keygen's AGE-SECRET-KEY-1… lines) that decrypts the *.yaml.age "
                        "manifests of the revision (default: env GITKUBE_AGE_IDENTITY; none: an encrypted file is "
                        "refused)")


def fail(message: str, code: int = 1) -> int:
    """Prints `error: message` to stderr and returns the exit code to use."""
    print(f"error: {message}", file=sys.stderr)
    return code
