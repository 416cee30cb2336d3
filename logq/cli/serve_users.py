"""``logq serve-users``: the SASL users file of ``logq serve --users FILE``.

The file holds salted SCRAM-SHA-256 and SCRAM-SHA-512 secrets only (format in
logq/server/sasl.py). ``add`` reads the password from a prompt (typed twice) on a terminal,
else the first line of stdin, so that it never appears on a command line.
"""

from __future__ import annotations

import sys

import click

from logq.server.sasl import add_user, read_users, remove_user

__all__ = ["COMMANDS"]

USERS_OPTION = click.option(
    "--users", "users_file", required=True, type=click.Path(dir_okay=False), metavar="FILE", help="The users file."
)


@click.group("serve-users")
def serve_users_group() -> None:
    """Manage the SASL users file of `logq serve --users FILE`."""


def _password() -> str:
    if sys.stdin.isatty():
        return str(click.prompt("password", hide_input=True, confirmation_prompt=True))
    return sys.stdin.readline().rstrip("\r\n")


@serve_users_group.command("add")
@USERS_OPTION
@click.option("--name", required=True, help="The user name clients authenticate as.")
@click.option("--iterations", type=int, default=4096, show_default=True, help="SCRAM iterations (>= 4096).")
def users_add(users_file: str, name: str, iterations: int) -> None:
    """Add a user (or set its password); the password is read from a prompt or stdin."""
    add_user(users_file, name, _password(), iterations=iterations)
    click.echo(f"user {name} saved in {users_file} (SCRAM-SHA-256, SCRAM-SHA-512; PLAIN checks them)")


@serve_users_group.command("remove")
@USERS_OPTION
@click.option("--name", required=True, help="The user to remove.")
def users_remove(users_file: str, name: str) -> None:
    """Remove a user."""
    if not remove_user(users_file, name):
        raise click.ClickException(f"no user {name!r} in {users_file}")
    click.echo(f"user {name} removed from {users_file}")


@serve_users_group.command("list")
@USERS_OPTION
def users_list(users_file: str) -> None:
    """Print the user names and their mechanisms, one user a line."""
    for name, mechs in sorted(read_users(users_file).items()):
        click.echo(f"{name}\t{','.join(sorted(mechs))}")


COMMANDS: list[click.Command] = [serve_users_group]
