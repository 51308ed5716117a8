"""TenSEAL contexts at 128-bit security, and raw vector encryption.

Parameters (HomomorphicEncryption.org security standard, table for classical
128-bit security with a ternary secret: N=8192 allows log q <= 218):

* CKKS: N=8192, coefficient moduli 60+40+40+60 = 200 bits, scale 2^40,
  4,096 slots. One multiplication by a plaintext (weights) fits.
* BFV: N=8192, coefficient moduli 60+60+60 = 180 bits, plaintext modulus
  T = 1,099,511,480,321 (a 40-bit prime = 1 mod 2N, so batching works),
  8,192 slots; results are exact while every sum stays below T/2.

No Galois (rotation) keys are generated and no relinearisation keys are
shipped: the recipes only add and multiply by plaintext scalars, and rotation
keys would make a context about 35 MB.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import tenseal as ts

__all__ = [
    "BFV_PLAIN_MODULUS",
    "CKKS_SCALE_BITS",
    "POLY_MODULUS_DEGREE",
    "HeScheme",
    "context_fingerprint",
    "decrypt_chunks",
    "encrypt_chunks",
    "load_context",
    "load_vector",
    "new_secret_context",
    "public_bytes",
    "public_context",
    "secret_bytes",
    "slots",
]

POLY_MODULUS_DEGREE = 8192
CKKS_COEFF_MOD_BITS = (60, 40, 40, 60)
CKKS_SCALE_BITS = 40
BFV_COEFF_MOD_BITS = (60, 60, 60)
BFV_PLAIN_MODULUS = 1_099_511_480_321
MAX_COEFF_MODULUS_BITS_128 = 218
"""HomomorphicEncryption.org standard, N=8192, classical 128-bit security."""


class HeScheme(enum.Enum):
    """CKKS for approximate real arithmetic, BFV for exact integers."""

    CKKS = "ckks"
    BFV = "bfv"


@dataclass(frozen=True)
class _Params:
    coeff_mod_bits: tuple[int, ...]

    def __post_init__(self) -> None:
        if sum(self.coeff_mod_bits) > MAX_COEFF_MODULUS_BITS_128:
            raise ValueError("coefficient modulus too large for 128-bit security at N=8192")


_PARAMS = {HeScheme.CKKS: _Params(CKKS_COEFF_MOD_BITS), HeScheme.BFV: _Params(BFV_COEFF_MOD_BITS)}


def slots(scheme: HeScheme) -> int:
    """Values one ciphertext holds."""
    return POLY_MODULUS_DEGREE // 2 if scheme is HeScheme.CKKS else POLY_MODULUS_DEGREE


def new_secret_context(scheme: HeScheme) -> ts.Context:
    """A fresh context with a new secret key and no rotation keys."""
    params = _PARAMS[scheme]
    if scheme is HeScheme.CKKS:
        ctx = ts.context(
            ts.SCHEME_TYPE.CKKS,
            poly_modulus_degree=POLY_MODULUS_DEGREE,
            coeff_mod_bit_sizes=list(params.coeff_mod_bits),
        )
        ctx.global_scale = 2.0**CKKS_SCALE_BITS
    else:
        ctx = ts.context(
            ts.SCHEME_TYPE.BFV,
            poly_modulus_degree=POLY_MODULUS_DEGREE,
            plain_modulus=BFV_PLAIN_MODULUS,
            coeff_mod_bit_sizes=list(params.coeff_mod_bits),
        )
    return ctx


def secret_bytes(ctx: ts.Context) -> bytes:
    """The parameters and the secret key alone, serialized (encrypt before storing!).

    The public key is left out: decryption needs only the secret key, and the
    public half is stored and handed out separately. Loading the smaller blob
    takes about two thirds of the time of a full context.
    """
    return bytes(
        ctx.serialize(
            save_public_key=False,
            save_secret_key=True,
            save_galois_keys=False,
            save_relin_keys=False,
        )
    )


def public_context(ctx: ts.Context) -> ts.Context:
    """A copy of ``ctx`` without its secret key: safe for enterprises and the aggregator."""
    public = ctx.copy()
    public.make_context_public()
    return public


def public_bytes(ctx: ts.Context) -> bytes:
    """A public context (see :func:`public_context`), serialized without relinearisation keys."""
    if ctx.is_private():
        ctx = public_context(ctx)
    return bytes(ctx.serialize(save_galois_keys=False, save_relin_keys=False))


def load_context(data: bytes) -> ts.Context:
    """Deserialize a context.

    Raises:
        ValueError: the bytes are not a TenSEAL context.
    """
    try:
        return ts.context_from(data)
    except Exception as exc:  # TenSEAL raises bare C++ exceptions
        raise ValueError("not a TenSEAL context") from exc


def context_fingerprint(public: bytes) -> str:
    """Hex SHA-256 of a serialized public context: names the job's key."""
    return hashlib.sha256(public).hexdigest()


def encrypt_chunks(ctx: ts.Context, scheme: HeScheme, values: Sequence[float]) -> list[bytes]:
    """Encrypt ``values`` as slot-sized ciphertexts (the last one may be short)."""
    width = slots(scheme)
    out: list[bytes] = []
    for start in range(0, len(values), width):
        chunk = list(values[start : start + width])
        if scheme is HeScheme.CKKS:
            vec = ts.ckks_vector(ctx, [float(v) for v in chunk])
        else:
            vec = ts.bfv_vector(ctx, [int(v) for v in chunk])
        out.append(bytes(vec.serialize()))
    return out


def load_vector(ctx: ts.Context, scheme: HeScheme, data: bytes) -> ts.CKKSVector | ts.BFVVector:
    """Deserialize one ciphertext vector under ``ctx``.

    Raises:
        ValueError: the bytes are not a ciphertext of this scheme.
    """
    try:
        if scheme is HeScheme.CKKS:
            return ts.ckks_vector_from(ctx, data)
        return ts.bfv_vector_from(ctx, data)
    except Exception as exc:  # TenSEAL raises bare C++ exceptions
        raise ValueError("not a ciphertext of this scheme") from exc


def decrypt_chunks(
    vectors: Sequence[ts.CKKSVector | ts.BFVVector], secret: ts.Context
) -> list[float]:
    """Decrypt with ``secret``'s key and concatenate.

    The vectors may be linked to a public context with the same parameters
    (the aggregator's): decryption takes the secret key explicitly.
    """
    key = secret.secret_key()
    out: list[float] = []
    for vec in vectors:
        out.extend(vec.decrypt(key))  # floats (CKKS) or ints (BFV)
    return out
