"""python -m engine.keys (engine-keys): make CURVE key pairs and manage the broker's allow-lists.

    python -m engine.keys init --keys-dir KEYS          the broker's pair, KEYS/clients/, KEYS/workers/
    python -m engine.keys new NAME [--dir DIR]          NAME.key (public) and NAME.key_secret (mode 0600)
    python -m engine.keys allow --clients NAME.key      let that key submit tasks
    python -m engine.keys allow --workers NAME.key      let that key register as a worker
    python -m engine.keys revoke --clients NAME         take it away (at its next message)
    python -m engine.keys list                          who is allowed, by name and key

The layout is described in ``engine/security.py`` and SECURITY.md.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .errors import ConfigError
from .security import (
    BROKER_NAME,
    CLIENTS,
    ENV_KEYS_DIR,
    PUBLIC_SUFFIX,
    ROLES,
    WORKERS,
    key_name,
    load_public_key,
    write_key_pair,
)
from .settings import flag, prog

DEFAULT_KEYS_DIR = "keys"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog("engine.keys"), description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.split("\n\n")[1:2]))
    sub = p.add_subparsers(dest="command", required=True)

    def keys_dir(sp: argparse.ArgumentParser) -> None:
        flag(sp, "--keys-dir", env=ENV_KEYS_DIR, default=DEFAULT_KEYS_DIR,
             help="the broker's key folder (broker.key_secret, clients/, workers/)")

    def role(sp: argparse.ArgumentParser) -> None:
        group = sp.add_mutually_exclusive_group(required=True)
        group.add_argument("--clients", dest="role", action="store_const", const=CLIENTS,
                           help="the list of keys that may submit tasks")
        group.add_argument("--workers", dest="role", action="store_const", const=WORKERS,
                           help="the list of keys that may register as workers")

    sp = sub.add_parser("init", help="make the broker's key pair and the two allow-list folders")
    keys_dir(sp)
    sp.add_argument("--force", action="store_true", help="replace an existing broker key pair")
    sp = sub.add_parser("new", help="make a key pair NAME.key and NAME.key_secret")
    sp.add_argument("name")
    sp.add_argument("--dir", default=".", help="where to write the two files [default: .]")
    sp.add_argument("--force", action="store_true", help="replace an existing pair")
    sp = sub.add_parser("allow", help="copy a public key into an allow-list")
    role(sp)
    sp.add_argument("key_file", type=Path, help="NAME.key (a secret file works too: only its public key is copied)")
    sp.add_argument("--name", help="the name it is listed under [default: NAME from the file name]")
    keys_dir(sp)
    sp = sub.add_parser("revoke", help="remove a key from an allow-list")
    role(sp)
    sp.add_argument("name")
    keys_dir(sp)
    sp = sub.add_parser("list", help="print the allowed keys")
    keys_dir(sp)
    return p.parse_args(argv)


def init(keys_dir: Path, force: bool) -> str:
    keys_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(keys_dir, 0o700)
    for role in ROLES:
        (keys_dir / role).mkdir(exist_ok=True)
    public, _ = write_key_pair(keys_dir, BROKER_NAME, force=force)
    return (f"broker key pair in {keys_dir}; give {public} to clients and workers.\n"
            f"start the broker with --keys-dir {keys_dir} --secure")


def allow(keys_dir: Path, role: str, key_file: Path, name: str | None) -> str:
    key = load_public_key(key_file)
    name = name or key_name(key_file)
    folder = keys_dir / role
    if not folder.is_dir():
        raise ConfigError(f"{folder} does not exist; run: python -m engine.keys init --keys-dir {keys_dir}")
    target = folder / f"{name}{PUBLIC_SUFFIX}"
    target.write_text(f"# {role} key {name}, added by python -m engine.keys allow\n"
                      f"curve\n    public-key = \"{key.decode()}\"\n")
    other = next((r for r in ROLES if r != role and (keys_dir / r / target.name).exists()), None)
    warn = f"\nwarning: {name} is also in {other}/; a key should have one role" if other else ""
    return f"allowed {role[:-1]} {name} ({key.decode()}) in {target}{warn}"


def revoke(keys_dir: Path, role: str, name: str) -> str:
    target = keys_dir / role / f"{key_name(name)}{PUBLIC_SUFFIX}"
    if not target.exists():
        raise ConfigError(f"no {role[:-1]} named {key_name(name)!r} in {keys_dir / role}")
    target.unlink()
    return f"revoked {role[:-1]} {key_name(name)}: it loses service at its next message"


def listing(keys_dir: Path) -> str:
    lines = []
    broker = keys_dir / f"{BROKER_NAME}{PUBLIC_SUFFIX}"
    if broker.exists():
        lines.append(f"broker   {load_public_key(broker).decode()}")
    for role in ROLES:
        for path in sorted((keys_dir / role).glob(f"*{PUBLIC_SUFFIX}")):
            try:
                lines.append(f"{role[:-1]:8} {load_public_key(path).decode()}  {key_name(path)}")
            except ConfigError as exc:
                lines.append(f"{role[:-1]:8} unreadable: {exc}")
    return "\n".join(lines) or f"no keys in {keys_dir}"


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "init":
            out = init(Path(args.keys_dir), args.force)
        elif args.command == "new":
            public, secret = write_key_pair(args.dir, args.name, force=args.force)
            out = f"wrote {public} (give it to the broker's admin) and {secret} (keep it private)"
        elif args.command == "allow":
            out = allow(Path(args.keys_dir), args.role, args.key_file, args.name)
        elif args.command == "revoke":
            out = revoke(Path(args.keys_dir), args.role, args.name)
        else:
            out = listing(Path(args.keys_dir))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
