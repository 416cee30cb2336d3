"""SASL for `logq serve`: the credentials file and the mechanisms PLAIN, SCRAM-SHA-256/512.

The credentials file (``logq serve --users FILE``, made by ``logq serve-users add``) is JSON
holding only salted SCRAM secrets, never a password::

    {"format": 1,
     "users": {"<name>": {"SCRAM-SHA-256": {"salt": "<base64>", "iterations": 4096,
                                             "stored_key": "<base64>", "server_key": "<base64>"},
                          "SCRAM-SHA-512": {...}}}}

PLAIN (RFC 4616: ``authzid NUL authcid NUL password``) is checked by deriving the SCRAM keys
of the given password with the stored salt and iterations (SCRAM-SHA-512's if the user has
them, else SCRAM-SHA-256's) and comparing StoredKey in constant time. PLAIN sends the
password itself: use it over TLS only. An authorization id other than the user is refused.

:func:`load_authenticator` reads the file once, when the server starts (restart the server
after ``serve-users add``). :meth:`Authenticator.start` begins one exchange; its ``step``
takes each client message and returns the server's answer and, once done, the user name.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from typing import Any, Protocol

from logq.errors import AuthenticationError, ConfigError, LogqError
from logq.server.scram import MECHANISMS, MIN_ITERATIONS, ScramKeys, ScramServer, derive_keys
from logq.storage import files as _fs

__all__ = [
    "Authenticator",
    "Exchange",
    "load_authenticator",
    "add_user",
    "remove_user",
    "MECHANISM_NAMES",
]

FORMAT = 1
MECHANISM_NAMES = ("PLAIN", *MECHANISMS)
MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_PLAIN_BYTES = 4096


class Exchange(Protocol):
    mechanism: str

    def step(self, data: bytes) -> tuple[bytes, str | None]:
        """The answer to one client message, and the user name once authenticated."""
        ...


@dataclass
class _Plain:
    auth: Authenticator
    mechanism: str = "PLAIN"

    def step(self, data: bytes) -> tuple[bytes, str | None]:
        if len(data) > MAX_PLAIN_BYTES or data.count(b"\0") != 2:
            raise AuthenticationError("malformed PLAIN message", mechanism="PLAIN")
        authz, user_raw, password_raw = bytes(data).split(b"\0")
        try:
            user, password, authz_s = user_raw.decode(), password_raw.decode(), authz.decode()
        except UnicodeDecodeError:
            raise AuthenticationError("PLAIN message is not UTF-8", mechanism="PLAIN") from None
        if authz_s and authz_s != user:
            raise AuthenticationError(f"user {user!r} cannot act as {authz_s!r}", mechanism="PLAIN", user=user)
        if not self.auth.check_password(user, password):
            raise AuthenticationError(
                f"wrong password for user {user!r}, or no such user", mechanism="PLAIN", user=user
            )
        return b"", user


@dataclass
class _Scram:
    server: ScramServer
    mechanism: str
    _round: int = 0

    def step(self, data: bytes) -> tuple[bytes, str | None]:
        self._round += 1
        if self._round == 1:
            return self.server.first(data), None
        if self._round == 2:
            return self.server.final(data), self.server.user
        raise AuthenticationError("SCRAM exchange already finished", mechanism=self.mechanism)


class Authenticator:
    """The users of one server and the mechanisms it offers."""

    def __init__(self, users: dict[str, dict[str, ScramKeys]]) -> None:
        self.users = users
        self.mechanisms = list(MECHANISM_NAMES)
        self._seed = secrets.token_bytes(32)

    def start(self, mechanism: str) -> Exchange | None:
        """A new exchange, or None for a mechanism this server does not offer."""
        if mechanism == "PLAIN":
            return _Plain(self)
        if mechanism in MECHANISMS:
            return _Scram(ScramServer(mechanism, lambda u: self.users.get(u, {}).get(mechanism), self._seed), mechanism)
        return None

    def check_password(self, user: str, password: str) -> bool:
        secrets_of = self.users.get(user, {})
        mech = next((m for m in ("SCRAM-SHA-512", "SCRAM-SHA-256") if m in secrets_of), None)
        if mech is None:
            derive_keys("SCRAM-SHA-256", password, b"\0" * 16, MIN_ITERATIONS)  # same work for an unknown user
            return False
        keys = secrets_of[mech]
        got = derive_keys(mech, password, keys.salt, keys.iterations)
        return hmac.compare_digest(got.stored_key, keys.stored_key)


# ----------------------------------------------------------------------------- the file


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _keys_from_json(path: str, user: str, mech: str, obj: Any) -> ScramKeys:
    try:
        it = obj["iterations"]
        if isinstance(it, bool) or not isinstance(it, int) or it < MIN_ITERATIONS:
            raise ValueError(f"iterations must be an int >= {MIN_ITERATIONS}")
        raw = [base64.b64decode(obj[k], validate=True) for k in ("salt", "stored_key", "server_key")]
    except (KeyError, TypeError, ValueError, binascii.Error) as e:
        raise ConfigError(f"{path}: bad {mech} secret for user {user!r}: {e}") from None
    return ScramKeys(raw[0], it, raw[1], raw[2])


def read_users(path: str) -> dict[str, dict[str, ScramKeys]]:
    """The users of a credentials file; ConfigError naming what is wrong with it."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"cannot read the users file {path}: {e.strerror or e}") from None
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path} is not a logq users file (not JSON: {e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("users"), dict):
        raise ConfigError(f"{path} is not a logq users file (format {FORMAT} with a users map)")
    users: dict[str, dict[str, ScramKeys]] = {}
    for user, mechs in doc["users"].items():
        if not isinstance(mechs, dict) or not mechs:
            raise ConfigError(f"{path}: user {user!r} has no SCRAM secrets")
        users[user] = {}
        for mech, obj in mechs.items():
            if mech not in MECHANISMS:
                raise ConfigError(f"{path}: unknown mechanism {mech!r} for user {user!r}")
            users[user][mech] = _keys_from_json(path, user, mech, obj)
    return users


def load_authenticator(path: str) -> Authenticator:
    """The authenticator of ``Server(users_file=path)``."""
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigError(f"users_file must be a path, not {path!r}")
    return Authenticator(read_users(os.fspath(path)))


def _write_users(path: str, users: dict[str, dict[str, ScramKeys]]) -> None:
    doc = {
        "format": FORMAT,
        "users": {
            u: {
                m: {
                    "salt": _b64(k.salt),
                    "iterations": k.iterations,
                    "stored_key": _b64(k.stored_key),
                    "server_key": _b64(k.server_key),
                }
                for m, k in sorted(mechs.items())
            }
            for u, mechs in sorted(users.items())
        },
    }
    data = (json.dumps(doc, indent=1) + "\n").encode("utf-8")
    try:
        _fs.atomic_write(path, data)
        os.chmod(path, 0o600)
    except (OSError, LogqError) as e:
        raise ConfigError(f"cannot write the users file {path}: {e}") from None


def add_user(path: str, name: str, password: str, *, iterations: int = MIN_ITERATIONS) -> None:
    """Add (or replace) ``name`` with SCRAM-SHA-256 and -512 secrets of ``password``."""
    if not isinstance(name, str) or not name or any(c in name for c in ",=\0") or len(name) > 255:
        raise ConfigError(f"user name {name!r} must be 1-255 characters without ',', '=' or NUL")
    if not isinstance(password, str) or not password:
        raise ConfigError("the password must be a non-empty str")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < MIN_ITERATIONS:
        raise ConfigError(f"iterations must be an int >= {MIN_ITERATIONS}, got {iterations!r}")
    users = read_users(path) if os.path.exists(path) else {}
    users[name] = {m: derive_keys(m, password, secrets.token_bytes(16), iterations) for m in MECHANISMS}
    _write_users(path, users)


def remove_user(path: str, name: str) -> bool:
    """Remove ``name``; False if it was not there."""
    users = read_users(path)
    if users.pop(name, None) is None:
        return False
    _write_users(path, users)
    return True
