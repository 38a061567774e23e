"""`gateway users add | remove | list`: manage the credentials file."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import time

from gateway.auth import SCOPES, CredentialsError, CredentialsFile


def _file(args: argparse.Namespace) -> CredentialsFile:
    path = args.auth_file or os.environ.get("GATEWAY_AUTH_FILE")
    if not path:
        sys.exit("gateway users: give --auth-file or set GATEWAY_AUTH_FILE")
    return CredentialsFile(path)


def _read_password() -> str:
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            sys.exit("gateway users: the passwords differ")
        return password
    return sys.stdin.readline().rstrip("\r\n")


def add(args: argparse.Namespace) -> None:
    credentials = _file(args)
    try:
        if args.password:
            credentials.add_password_user(args.name, args.scope, _read_password())
            print(f"added user {args.name} (scope {args.scope}, HTTP basic auth)", file=sys.stderr)
        else:
            token = credentials.add_token_user(args.name, args.scope)
            print(f"added user {args.name} (scope {args.scope}); its token, shown only now:", file=sys.stderr)
            print(token)
    except CredentialsError as exc:
        sys.exit(f"gateway users: {exc}")


def remove(args: argparse.Namespace) -> None:
    try:
        _file(args).remove_user(args.name)
    except CredentialsError as exc:
        sys.exit(f"gateway users: {exc}")
    print(f"removed user {args.name}", file=sys.stderr)


def list_users(args: argparse.Namespace) -> None:
    try:
        users = _file(args).load()
    except CredentialsError as exc:
        sys.exit(f"gateway users: {exc}")
    print(f"{'name':<32} {'scope':<6} {'kind':<8} created")
    for user in users:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(user.created)) if user.created else "-"
        print(f"{user.name:<32} {user.scope:<6} {user.kind:<8} {created}")


def add_users_parser(commands) -> None:
    """Register `users` and its subcommands on the CLI's subparsers."""
    users = commands.add_parser("users", help="manage the credentials file (--auth-file)")
    users_commands = users.add_subparsers(dest="users_command", required=True)

    def with_file(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument("--auth-file", default=None, help="the credentials file [GATEWAY_AUTH_FILE]")
        return parser

    add_parser = with_file(users_commands.add_parser("add", help="add a user; prints a new token once"))
    add_parser.add_argument("name")
    add_parser.add_argument("--scope", choices=SCOPES, default="write", help="read, write or admin (default: write)")
    add_parser.add_argument(
        "--password", action="store_true",
        help="sign in with HTTP basic auth; the password is prompted for, or read from one line of stdin",
    )
    add_parser.set_defaults(run=add)
    remove_parser = with_file(users_commands.add_parser("remove", help="remove a user"))
    remove_parser.add_argument("name")
    remove_parser.set_defaults(run=remove)
    list_parser = with_file(users_commands.add_parser("list", help="list users (never their secrets)"))
    list_parser.set_defaults(run=list_users)
