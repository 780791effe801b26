"""Charger password hashes.

Passwords people type (registering or editing a charger) are hashed with Django's default,
PBKDF2: deliberately slow, because a human-chosen password can be guessed offline. Passwords
Sparklin generates (`services.generate_charger_password`: 20 characters of `token_urlsafe`,
120 bits) use `ChargerSecretHasher`, a salted HMAC-SHA256: against 2^120 possibilities the cost
per guess adds nothing, and checking one costs microseconds instead of ~0.5 s of CPU, so a
reconnect storm of password-protected chargers after a gateway restart costs no hashing.

Transparent upgrade: a PBKDF2 hash whose password turns out, at a successful check, to have the
generator's shape (`looks_generated`) is replaced by the fast hash (the gateway does it, with a
conditional UPDATE on the old hash).
"""

from __future__ import annotations

import hashlib
import hmac
import string

from django.contrib.auth.hashers import BasePasswordHasher, check_password, make_password
from django.utils.crypto import constant_time_compare

GENERATED_LENGTH = 20
_URLSAFE = frozenset(string.ascii_letters + string.digits + "-_")


class ChargerSecretHasher(BasePasswordHasher):
    """Salted HMAC-SHA256, for high-entropy generated secrets only (see the module)."""

    algorithm = "sparklin_hmac_sha256"

    def encode(self, password, salt):
        # Django's own guard (BasePasswordHasher._check_encode_args, not in its public API).
        if password is None:
            raise TypeError("password must be provided.")
        if not salt or "$" in salt:
            raise ValueError("salt must be provided and cannot contain $.")
        digest = hmac.new(salt.encode(), password.encode(), hashlib.sha256).hexdigest()
        return f"{self.algorithm}${salt}${digest}"

    def decode(self, encoded):
        algorithm, salt, digest = encoded.split("$", 2)
        assert algorithm == self.algorithm
        return {"algorithm": algorithm, "hash": digest, "salt": salt}

    def verify(self, password, encoded):
        salt = self.decode(encoded)["salt"]
        return constant_time_compare(encoded, self.encode(password, salt))

    def safe_summary(self, encoded):
        decoded = self.decode(encoded)
        return {"algorithm": decoded["algorithm"], "salt": decoded["salt"][:4] + "…"}

    def must_update(self, encoded):
        return False

    def harden_runtime(self, password, encoded):
        pass


_FAST = ChargerSecretHasher()


def looks_generated(password: str) -> bool:
    """The shape of a password Sparklin generated: 20+ URL-safe characters mixing at least three
    of lower case, upper case, digits and -_ (a secret of ~120 bits, not a phrase)."""
    if len(password) < GENERATED_LENGTH or not set(password) <= _URLSAFE:
        return False
    classes = (
        any(c.islower() for c in password),
        any(c.isupper() for c in password),
        any(c.isdigit() for c in password),
        any(c in "-_" for c in password),
    )
    return sum(classes) >= 3


def hash_generated_password(password: str) -> str:
    if len(password) < GENERATED_LENGTH:
        raise ValueError("only generated secrets of 20+ characters get the fast hash")
    return make_password(password, hasher=_FAST)


def is_fast(encoded: str) -> bool:
    return encoded.startswith(ChargerSecretHasher.algorithm + "$")


def check_fast(password: str, encoded: str) -> bool:
    return _FAST.verify(password, encoded)


def check_charger_password(password: str, encoded: str) -> bool:
    """Any charger hash: the fast one inline, the others through Django (PBKDF2…)."""
    if is_fast(encoded):
        return check_fast(password, encoded)
    return check_password(password, encoded)
