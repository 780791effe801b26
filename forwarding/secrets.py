"""Operator passwords: sent to the operator (HTTP Basic), so stored encrypted, never hashed.

Fernet (AES-128-CBC + HMAC-SHA256) with a key derived from `FORWARDING_KEY`, which defaults to
`SECRET_KEY`: any text works, its SHA-256 is the key. Changing it makes stored passwords
unreadable (the gateway then connects without one and reports the error): type them again."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


class UnreadableSecret(Exception):
    """The stored password was encrypted with another key."""


def _fernet() -> Fernet:
    secret = settings.FORWARDING_KEY or settings.SECRET_KEY
    digest = hashlib.sha256(b"sparklin.forwarding:" + secret.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def encrypt(password: str) -> str:
    return _fernet().encrypt(password.encode()).decode("ascii") if password else ""


def decrypt(token: str) -> str:
    if not token:
        return ""
    try:
        return _fernet().decrypt(token.encode("ascii")).decode()
    except (InvalidToken, ValueError) as e:
        raise UnreadableSecret(str(e)) from e
