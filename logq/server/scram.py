"""SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677), server side, sans-IO.

Keys (what a credentials file stores, never the password)::

    SaltedPassword = PBKDF2-HMAC-H(password UTF-8, salt, iterations)
    ClientKey      = HMAC(SaltedPassword, "Client Key")
    StoredKey      = H(ClientKey)
    ServerKey      = HMAC(SaltedPassword, "Server Key")

The exchange (Kafka sends each message as SaslAuthenticate ``auth_bytes``)::

    client-first  "n,,n=<user>,r=<client nonce>[,<extensions>]"   (gs2 header "n,," or "y,,")
    server-first  "r=<client nonce><server nonce>,s=<base64 salt>,i=<iterations>"
    client-final  "c=<base64 gs2 header>,r=<nonce>,p=<base64 ClientProof>"
    server-final  "v=<base64 ServerSignature>"

    AuthMessage     = client-first-bare "," server-first "," client-final-without-proof
    ClientSignature = HMAC(StoredKey, AuthMessage);  ClientKey = ClientProof XOR ClientSignature
    the proof is right when H(ClientKey) == StoredKey; ServerSignature = HMAC(ServerKey, AuthMessage)

A failed or malformed exchange raises AuthenticationError. An unknown user gets a made-up salt (stable per user name, so probing reveals nothing) and
fails at the final step like a wrong password. Channel binding ("p=") is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from logq.errors import AuthenticationError

__all__ = ["MECHANISMS", "ScramKeys", "ScramServer", "derive_keys", "hash_name"]

MECHANISMS = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
MIN_ITERATIONS = 4096  # RFC 7677's minimum; Kafka's default too
MAX_MESSAGE_CHARS = 4096


def _fail(reason: str) -> AuthenticationError:
    return AuthenticationError(reason)


@dataclass(frozen=True)
class ScramKeys:
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes


def hash_name(mechanism: str) -> str:
    return MECHANISMS[mechanism]


def derive_keys(mechanism: str, password: str, salt: bytes, iterations: int) -> ScramKeys:
    """The keys a credentials file stores for ``password`` (see the module docstring)."""
    h = hash_name(mechanism)
    salted = hashlib.pbkdf2_hmac(h, password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", h).digest()
    stored = hashlib.new(h, client_key).digest()
    server = hmac.new(salted, b"Server Key", h).digest()
    return ScramKeys(salt, iterations, stored, server)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _attributes(message: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in message.split(","):
        if len(part) < 2 or part[1] != "=":
            raise _fail(f"malformed SCRAM attribute {part[:20]!r}")
        out.setdefault(part[0], part[2:])
    return out


def _unescape(name: str) -> str:
    if "=" in name.replace("=2C", "").replace("=3D", ""):
        raise _fail("malformed user name")
    return name.replace("=2C", ",").replace("=3D", "=")


class ScramServer:
    """One SCRAM exchange: :meth:`first` then :meth:`final`; ``user`` once it succeeded."""

    def __init__(self, mechanism: str, lookup: Callable[[str], ScramKeys | None], fake_seed: bytes) -> None:
        self.mechanism = mechanism
        self._h = hash_name(mechanism)
        self._lookup = lookup
        self._seed = fake_seed
        self._keys: ScramKeys | None = None
        self._known = False
        self._name = ""
        self._nonce = ""
        self._gs2 = ""
        self._auth_prefix = ""
        self.user: str | None = None

    def first(self, data: bytes) -> bytes:
        """The server-first message for a client-first message."""
        text = _text(data)
        if not text.startswith(("n,", "y,")):
            raise _fail("channel binding is not supported" if text.startswith("p=") else "bad gs2 header")
        parts = text.split(",", 2)
        if len(parts) != 3:
            raise _fail("bad client-first message")
        self._gs2 = f"{parts[0]},{parts[1]},"
        bare = parts[2]
        attrs = _attributes(bare)
        if "n" not in attrs or "r" not in attrs or not attrs["r"]:
            raise _fail("client-first message without user or nonce")
        self._name = _unescape(attrs["n"])
        keys = self._lookup(self._name)
        self._known = keys is not None
        self._keys = keys or self._fake_keys(self._name)
        self._nonce = attrs["r"] + secrets.token_urlsafe(24)
        server_first = f"r={self._nonce},s={_b64(self._keys.salt)},i={self._keys.iterations}"
        self._auth_prefix = f"{bare},{server_first}"
        return server_first.encode("ascii")

    def final(self, data: bytes) -> bytes:
        """The server-final message; AuthenticationError when the proof is wrong."""
        if self._keys is None:
            raise _fail("client-final message before client-first")
        text = _text(data)
        without_proof, sep, proof_b64 = text.rpartition(",p=")
        if not sep:
            raise _fail("client-final message without proof")
        attrs = _attributes(without_proof)
        if attrs.get("c") != _b64(self._gs2.encode("utf-8")) or attrs.get("r") != self._nonce:
            raise _fail("client-final message does not match the exchange")
        try:
            proof = base64.b64decode(proof_b64, validate=True)
        except ValueError:
            raise _fail("proof is not base64") from None
        auth = f"{self._auth_prefix},{without_proof}".encode()
        signature = hmac.new(self._keys.stored_key, auth, self._h).digest()
        if len(proof) != len(signature):
            raise _fail("proof has the wrong length")
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        ok = hmac.compare_digest(hashlib.new(self._h, client_key).digest(), self._keys.stored_key)
        if not (ok and self._known):
            raise _fail(f"wrong password for user {self._name!r}, or no such user")
        self.user = self._name
        return f"v={_b64(hmac.new(self._keys.server_key, auth, self._h).digest())}".encode("ascii")

    def _fake_keys(self, name: str) -> ScramKeys:
        salt = hmac.new(self._seed, name.encode("utf-8"), "sha256").digest()[:16]
        junk = secrets.token_bytes(64)
        return ScramKeys(salt, MIN_ITERATIONS, junk, junk)


def _text(data: bytes) -> str:
    if len(data) > MAX_MESSAGE_CHARS:
        raise _fail("SCRAM message too long")
    try:
        return bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        raise _fail("SCRAM message is not UTF-8") from None
