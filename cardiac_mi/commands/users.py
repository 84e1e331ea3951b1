"""``cardiac-mi users``: the accounts of a state folder's embedded login (:mod:`cardiac_mi.auth`).

    cardiac-mi users list
    cardiac-mi users add NAME --role annotator [--password-stdin]
    cardiac-mi users passwd NAME [--password-stdin]
    cardiac-mi users roles NAME admin,annotator
    cardiac-mi users remove NAME
    cardiac-mi users token NAME [--minutes 60]

Every sub-command takes ``--state DIR`` (default ``$CARDIAC_MI_STATE``, else ``./state``): the accounts live
in ``DIR/auth/users.json``. A running ``serve`` sees changes at its next request, no restart needed.
A password is asked twice on a terminal, read as one line from standard input with ``--password-stdin``,
or, when neither is possible, generated and shown once. Bad input ends with one line and status 2.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from cardiac_mi.auth import ROLES, TOKEN_MINUTES, AuthError, AuthStore, generate_password

__all__ = ["register"]


def _store(args: argparse.Namespace, create: bool = False) -> AuthStore:
    from cardiac_mi.orthanc import default_state_dir

    state = Path(args.state) if args.state else default_state_dir()
    store = AuthStore.of_state(state)
    if not store.users_path.exists():
        if not create:
            raise AuthError(
                f"no accounts in {state} yet ({store.users_path} is missing): start `cardiac-mi serve "
                f"--state {state}` once, or add one with `cardiac-mi users add`"
            )
        if not state.is_dir():
            raise AuthError(f"{state}: no such state folder (give --state DIR, or start `cardiac-mi serve` once)")
        password = store.ensure()
        if password is not None:
            print(f"created the account 'admin' (roles: admin); its password is in {store.admin_password_path}")
    return store


def _password(args: argparse.Namespace) -> tuple[str, bool]:
    """(password, generated)."""
    if args.password_stdin:
        line = sys.stdin.readline()
        if not line.strip():
            raise AuthError("--password-stdin: no password on standard input")
        return line.rstrip("\r\n"), False
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if first != getpass.getpass("again: "):
            raise AuthError("the two passwords differ; nothing changed")
        return first, False
    return generate_password(), True


def cmd_list(args: argparse.Namespace) -> None:
    accounts = _store(args).accounts()
    width = max([4] + [len(a.name) for a in accounts])
    print(f"{'user':{width}s}  roles")
    for account in accounts:
        print(f"{account.name:{width}s}  {','.join(account.roles)}")


def cmd_add(args: argparse.Namespace) -> None:
    from cardiac_mi.auth import check_name, check_roles

    check_name(args.name), check_roles(args.role or [])  # before a password is asked
    store = _store(args, create=True)
    password, generated = _password(args)
    account = store.add(args.name, args.role, password)
    print(f"added {account.name} (roles: {','.join(account.roles)})")
    if generated:
        print(f"password of {account.name} (shown once): {password}")


def cmd_passwd(args: argparse.Namespace) -> None:
    store = _store(args)
    if store.account(args.name) is None:
        known = ", ".join(a.name for a in store.accounts()) or "none"
        raise AuthError(f"no account {args.name!r} (accounts: {known})")
    password, generated = _password(args)
    store.set_password(args.name, password)
    print(f"password of {args.name} changed")
    if generated:
        print(f"new password of {args.name} (shown once): {password}")


def cmd_roles(args: argparse.Namespace) -> None:
    account = _store(args).set_roles(args.name, args.roles)
    print(f"{account.name}: roles {','.join(account.roles)}")


def cmd_remove(args: argparse.Namespace) -> None:
    _store(args).remove(args.name)
    print(f"removed {args.name}")


def cmd_token(args: argparse.Namespace) -> None:
    store = _store(args)
    account = store.account(args.name)
    if account is None:
        raise AuthError(f"no account {args.name!r}")
    if not 0 < args.minutes <= 60 * 24 * 366:
        raise AuthError(f"--minutes {args.minutes:g}: expected more than 0 and at most a year")
    print(store.issue(account, args.minutes, "api"))


def _roles(text: str) -> list[str]:
    return [r.strip() for r in text.split(",") if r.strip()]


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    description = "manage the accounts (user names, passwords, roles) of the server's embedded login"
    p = subparsers.add_parser(
        "users",
        help=description,
        description=description,
        epilog="roles: reviewer (view, run the model), annotator (also save labels, upload "
        "studies), admin (also train, publish, upload or delete models, logs)",
    )
    sub = p.add_subparsers(dest="users_command", required=True, metavar="ACTION")

    def add(name: str, func, help: str) -> argparse.ArgumentParser:
        q = sub.add_parser(name, help=help, description=help)
        q.add_argument("--state", type=Path, help="state folder (default $CARDIAC_MI_STATE or ./state)")
        q.set_defaults(func=func)
        return q

    add("list", cmd_list, "list the accounts and their roles")
    q = add("add", cmd_add, "add an account")
    q.add_argument("name", help="user name (letters, digits, '.', '_', '@', '-')")
    q.add_argument(
        "--role",
        action="extend",
        type=_roles,
        required=True,
        help=f"one of {', '.join(ROLES)} (repeat, or comma-separated, for several)",
    )
    q.add_argument("--password-stdin", action="store_true", help="read the password as one line from stdin")
    q = add("passwd", cmd_passwd, "set an account's password")
    q.add_argument("name")
    q.add_argument("--password-stdin", action="store_true", help="read the password as one line from stdin")
    q = add("roles", cmd_roles, "set an account's roles")
    q.add_argument("name")
    q.add_argument("roles", type=_roles, help=f"comma-separated: {', '.join(ROLES)}")
    q = add("remove", cmd_remove, "remove an account (not the last admin)")
    q.add_argument("name")
    q = add(
        "token",
        cmd_token,
        "print a token for scripts ('Authorization: Bearer TOKEN'), signed with this state folder's key",
    )
    q.add_argument("name")
    q.add_argument("--minutes", type=float, default=TOKEN_MINUTES, help=f"valid this long (default {TOKEN_MINUTES})")
    return p
