"""`secret encrypt`: turn a Secret manifest into the age-encrypted file gitkube reads from Git."""
from __future__ import annotations

import argparse
import os
import sys

from gitkube.cli.common import fail


def register(sub) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    sp = sub.add_parser("secret", help="encrypt Secret manifests for Git (age)", formatter_class=fmt,
                        description="Secrets live in Git encrypted with age (age-encryption.org/v1). gitkube decrypts "
                                    "*.yaml.age / *.yml.age / *.json.age manifests with --age-identity FILE (or env "
                                    "GITKUBE_AGE_IDENTITY) when it validates, diffs and applies a revision.")
    ssub = sp.add_subparsers(dest="secret_command", metavar="SUBCOMMAND")
    en = ssub.add_parser(
        "encrypt", formatter_class=fmt, help="encrypt a manifest file to age recipients, writing FILE.age",
        description="Encrypt FILE (a Secret manifest, YAML or JSON) to one or more age recipients and write FILE.age "
                    "(ASCII-armored unless --binary). The `age` command decrypts it (`age -d -i KEY FILE.age`), and "
                    "gitkube decrypts files written by `age -r RECIPIENT`. The plain-text FILE is left in place: "
                    "delete it and commit only FILE.age.\n"
                    "Recipients are X25519 public keys (`age1…`, from `age-keygen -y KEYFILE`).",
        epilog="example:\n  age-keygen -o key.txt   # prints the public key\n"
               "  gitkube secret encrypt db-secret.yaml --recipient age1…   # writes db-secret.yaml.age\n"
               "  gitkube apply --age-identity key.txt")
    en.add_argument("file", metavar="FILE", help="the plain-text manifest to encrypt")
    en.add_argument("-r", "--recipient", action="append", required=True, metavar="AGE_PUBKEY",
                    help="age public key (age1…) to encrypt to; repeat for several")
    en.add_argument("-o", "--output", metavar="OUT", help="where to write (default: FILE.age)")
    en.add_argument("--binary", action="store_true", help="write binary age instead of ASCII armor")
    en.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    en.set_defaults(func=cmd_encrypt)
    sp.set_defaults(func=lambda args: (sp.print_help(), 2)[1])


def cmd_encrypt(args) -> int:
    """Encrypt FILE to the recipients; exit 0 written, 1 refused (bad recipient, existing output), 2 unreadable."""
    from gitkube.source.secrets import encrypt

    out = args.output or args.file + ".age"
    try:
        with open(args.file, "rb") as f:
            plain = f.read()
    except OSError as e:
        return fail(f"{args.file}: {e.strerror or e}", 2)
    if os.path.exists(out) and not args.force:
        return fail(f"{out} exists; pass --force to overwrite it", 1)
    try:
        data = encrypt(plain, args.recipient, armor=not args.binary)
    except ValueError as e:
        return fail(str(e), 1)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    print(f"wrote {out} ({len(data)} bytes, {len(args.recipient)} recipient(s)); commit it, not {args.file}",
          file=sys.stderr)
    return 0
