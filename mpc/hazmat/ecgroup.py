"""The Ed25519 prime-order subgroup, through libsodium's bindings in PyNaCl.

Items hash into the group with ``crypto_core_ed25519_from_uniform`` (Elligator 2
plus cofactor clearing) over the first 32 bytes of a domain-separated SHA-512;
blinding multiplies by a secret scalar reduced mod the group order ℓ with
``crypto_scalarmult_ed25519_noclamp``. Under the decisional Diffie-Hellman
assumption in this group, ``H(x)^a`` hides ``x`` from anyone without ``a``.
"""

from __future__ import annotations

import hashlib
import secrets

import nacl.bindings as sodium
from nacl.exceptions import RuntimeError as SodiumRuntimeError

__all__ = [
    "POINT_BYTES",
    "SCALAR_BYTES",
    "blind",
    "hash_to_group",
    "is_valid_point",
    "is_valid_scalar",
    "random_scalar",
]

POINT_BYTES = 32
SCALAR_BYTES = 32
_DOMAIN = b"ibx/psi/ed25519/v1\x00"


def hash_to_group(item: bytes) -> bytes:
    """The group element of ``item``."""
    digest = hashlib.sha512(_DOMAIN + item).digest()
    return bytes(sodium.crypto_core_ed25519_from_uniform(digest[:32]))


def random_scalar() -> bytes:
    """A uniformly random non-zero scalar mod ℓ."""
    while True:
        scalar = bytes(sodium.crypto_core_ed25519_scalar_reduce(secrets.token_bytes(64)))
        if any(scalar):
            return scalar


def is_valid_scalar(scalar: bytes) -> bool:
    """True when ``scalar`` is a canonical (reduced mod ℓ), non-zero 32-byte scalar."""
    if len(scalar) != SCALAR_BYTES or not any(scalar):
        return False
    reduced = bytes(sodium.crypto_core_ed25519_scalar_reduce(scalar + bytes(SCALAR_BYTES)))
    return reduced == scalar


def blind(scalar: bytes, point: bytes) -> bytes:
    """``point^scalar``.

    Raises:
        ValueError: ``point`` is not a valid point of the subgroup (or the result is the identity).
    """
    try:
        return bytes(sodium.crypto_scalarmult_ed25519_noclamp(scalar, point))
    except (SodiumRuntimeError, TypeError, ValueError) as exc:
        raise ValueError("not a valid Ed25519 group element") from exc


def is_valid_point(point: bytes) -> bool:
    """True when ``point`` is a canonical encoding of a main-subgroup point."""
    return len(point) == POINT_BYTES and bool(sodium.crypto_core_ed25519_is_valid_point(point))
