"""Resume tokens: opaque, unguessable, bound to an account and a login epoch.

A token is ``base64(account | epoch | nonce | HMAC-SHA256)``: the HMAC key is
``resume_secret`` (shared by the nodes of a cluster) or, when unset, random
per process. The signature makes a forged token fail before any lookup; the
nonce (16 random bytes) makes each token unique, so the holder of a session
can tell its current token from a spent one (single use).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass

_SEP = b"\x00"
_MAC_LEN = 32


@dataclass(frozen=True, slots=True)
class Claim:
    """What a verified token says: whose it is, and under which login epoch."""

    account: str
    epoch: int
    token: str


class TokenKeeper:
    """Issues and verifies tokens under one key."""

    def __init__(self, secret: str = "") -> None:
        self._key = secret.encode() if secret else secrets.token_bytes(32)

    def issue(self, account: str, epoch: int) -> str:
        body = account.encode() + _SEP + str(epoch).encode() + _SEP + secrets.token_bytes(16)
        mac = hmac.new(self._key, body, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(body + mac).decode()

    def verify(self, token: str) -> Claim | None:
        """The token's claim, or None when it is malformed or its signature is wrong."""
        try:
            raw = base64.urlsafe_b64decode(token.encode())
        except (binascii.Error, ValueError):
            return None
        body, mac = raw[:-_MAC_LEN], raw[-_MAC_LEN:]
        if len(raw) <= _MAC_LEN or not hmac.compare_digest(
            mac, hmac.new(self._key, body, hashlib.sha256).digest()
        ):
            return None
        parts = body.split(_SEP, 2)
        if len(parts) != 3:
            return None
        try:
            return Claim(parts[0].decode(), int(parts[1]), token)
        except (UnicodeDecodeError, ValueError):
            return None
