"""Enterprise-side sharing and party-side opening of sealed Shamir shares.

An enterprise (:class:`ShareDealer`) checks its value, rounds it to the job's
resolution (:class:`mpc.mpc_spec.MpcEncoding`), splits the exact integer into
Shamir shares, and seals each share to its party's X25519 key (PyNaCl
``SealedBox``): the relay that forwards the envelopes sees only ciphertext. For percentile
ranks it also shares a random tag it keeps (:class:`RankKey`), so it alone
can find its rank in the list of tags the parties open.

A party (:func:`open_envelopes`) opens its envelopes and refuses, naming the
contributor, any that do not open, do not parse, belong to another job or
party, were dealt at another resolution, repeat a nonce or a contributor, or
carry the wrong number of shares.
"""

from __future__ import annotations

import base64
import json
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

from core.canonical import canonical_bytes
from mpc.errors import (
    DuplicateContributorError,
    InvalidContributionError,
    MalformedShareError,
    NonNumericValueError,
    ReplayedContributionError,
    ValueOutOfRangeError,
)
from mpc.hazmat import shamir
from mpc.mpc_spec import DEFAULT_BOUND, MpcEncoding, MpcJobSpec

__all__ = [
    "DealtInput",
    "OpenedInput",
    "RankKey",
    "SealedShare",
    "ShareDealer",
    "open_envelopes",
]

_VERSION = 2
_TAG_BITS = 46


@dataclass(frozen=True)
class SealedShare:
    """One share of one contributor, sealed to one party."""

    contributor: str
    party: int
    blob: bytes = field(repr=False)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "contributor": self.contributor,
            "party": self.party,
            "blob": base64.b64encode(self.blob).decode(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> SealedShare:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: malformed.
        """
        try:
            return cls(
                str(data["contributor"]),
                int(str(data["party"])),
                base64.b64decode(str(data["blob"]), validate=True),
            )
        except (KeyError, ValueError) as exc:
            raise ValueError(f"malformed sealed share: {exc}") from exc


@dataclass(frozen=True, repr=False)
class RankKey:
    """A contributor's secret random tag: it finds its own place in the ranked tag list.

    The parties sort (value, tag) pairs together and open only the tags, in
    value order. Tags are random and known only to their contributors, so the
    opened list tells the parties and the requester nothing; each contributor
    finds its own tag and so its rank. Ties are ordered arbitrarily.
    """

    contributor: str
    tag: int

    def __repr__(self) -> str:
        return f"RankKey(contributor={self.contributor!r}, tag=<redacted>)"

    def percentile(self, ranked_tags: Sequence[int]) -> float:
        """The share (in percent) of the other contributors ranked below this one.

        Raises:
            ValueError: this contributor's tag is not in the list.
        """
        for position, tag in enumerate(ranked_tags):
            if tag == self.tag:
                return 100.0 * position / (len(ranked_tags) - 1)
        raise ValueError("this contributor's tag is not among the ranked tags")


@dataclass(frozen=True)
class DealtInput:
    """One contributor's sealed shares (for the relay) and its rank key (kept at home)."""

    contributor: str
    envelopes: tuple[SealedShare, ...]
    rank_key: RankKey | None = field(default=None, repr=False)


class ShareDealer:
    """The enterprise side: validate a value, quantise it, share it, seal each share."""

    def __init__(
        self,
        job_id: str,
        box_public_keys: Sequence[bytes],
        threshold: int,
        *,
        bound: float = DEFAULT_BOUND,
    ) -> None:
        """A dealer for job ``job_id`` whose inputs are at most ``bound`` in magnitude.

        Raises:
            ValueError: a bound outside what a job may declare.
        """
        self._job_id = job_id
        self._keys = [PublicKey(k) for k in box_public_keys]
        self._threshold = threshold
        self._encoding = MpcEncoding(bound)

    @classmethod
    def for_job(
        cls, spec: MpcJobSpec, box_public_keys: Sequence[bytes], threshold: int
    ) -> ShareDealer:
        """A dealer for ``spec`` (its job id and bound).

        Raises:
            ValueError: never for a valid spec.
        """
        return cls(spec.job_id, box_public_keys, threshold, bound=spec.bound)

    def deal(self, contributor: str, value: object, *, with_rank_key: bool = False) -> DealtInput:
        """Share ``value`` among the parties.

        Raises:
            NonNumericValueError: not a finite real number.
            ValueOutOfRangeError: beyond the job's bound.
        """
        if isinstance(value, bool) or not isinstance(value, int | float | Fraction | Decimal):
            raise NonNumericValueError(f"{value!r} is not a number", contributor=contributor)
        if isinstance(value, Decimal):
            finite = value.is_finite()
        else:
            finite = not isinstance(value, float) or math.isfinite(value)
        if not finite:
            raise NonNumericValueError(f"{value!r} is not finite", contributor=contributor)
        try:
            encoded = self._encoding.quantise(Fraction(value))
        except ValueError as exc:
            raise ValueOutOfRangeError(str(exc), contributor=contributor) from exc
        secrets_to_share = [shamir.encode_signed(encoded)]
        rank_key = None
        if with_rank_key:
            rank_key = RankKey(contributor, secrets.randbits(_TAG_BITS))
            secrets_to_share.append(rank_key.tag)
        rows = shamir.split(secrets_to_share, len(self._keys), self._threshold)
        envelopes = []
        for party, (key, row) in enumerate(zip(self._keys, rows, strict=True)):
            payload = {
                "v": _VERSION,
                "job_id": self._job_id,
                "party": party,
                "contributor": contributor,
                "exponent": self._encoding.resolution_exponent,
                "nonce": secrets.token_hex(16),
                "shares": [str(s) for s in row],
            }
            envelopes.append(
                SealedShare(contributor, party, SealedBox(key).encrypt(canonical_bytes(payload)))
            )
        return DealtInput(contributor, tuple(envelopes), rank_key)

    def deal_all(
        self, pairs: Sequence[tuple[str, object]], *, with_rank_keys: bool = False
    ) -> list[DealtInput]:
        """Deal every ``(contributor, value)`` pair, in order, refusing the input by name.

        ``pairs`` keeps duplicates visible (e.g. a JSON object read with
        ``object_pairs_hook=list``, where a plain dict would keep the last).

        Raises:
            DuplicateContributorError: a contributor named twice.
            InvalidContributionError: an empty or non-text contributor name.
            NonNumericValueError: a value that is not a finite real number.
            ValueOutOfRangeError: a value beyond the job's bound.
        """
        seen: set[str] = set()
        dealt = []
        for who, value in pairs:
            if not isinstance(who, str) or not who.strip():
                raise InvalidContributionError("a contributor needs a name", contributor=str(who))
            if who in seen:
                raise DuplicateContributorError("is named twice in the input", contributor=who)
            seen.add(who)
            dealt.append(self.deal(who, value, with_rank_key=with_rank_keys))
        return dealt


@dataclass(frozen=True, repr=False)
class OpenedInput:
    """A party's opened share of one contributor's value (and rank tag)."""

    contributor: str
    value_share: int
    tag_share: int | None

    def __repr__(self) -> str:
        return f"OpenedInput(contributor={self.contributor!r}, shares=<redacted>)"


def _open_one(
    spec: MpcJobSpec, party: int, box: SealedBox[PrivateKey], envelope: SealedShare
) -> tuple[OpenedInput, str]:
    job_id = spec.job_id
    shares_expected = 2 if spec.percentile_ranks else 1
    who = envelope.contributor
    if envelope.party != party:
        raise MalformedShareError(f"envelope is for party {envelope.party}", contributor=who)
    try:
        payload = json.loads(box.decrypt(envelope.blob))
    except (CryptoError, ValueError) as exc:
        raise MalformedShareError("share does not open or parse", contributor=who) from exc
    if not isinstance(payload, dict) or payload.get("v") != _VERSION:
        raise MalformedShareError("share has an unknown format", contributor=who)
    if payload.get("job_id") != job_id:
        raise ReplayedContributionError(
            f"share was made for job {payload.get('job_id')!r}", contributor=who
        )
    if payload.get("party") != party or payload.get("contributor") != who:
        raise MalformedShareError("share names another party or contributor", contributor=who)
    exponent = spec.encoding.resolution_exponent
    if payload.get("exponent") != exponent:
        raise MalformedShareError(
            f"share was dealt at resolution 1e{payload.get('exponent')}, the job's is 1e{exponent}",
            contributor=who,
        )
    raw_shares = payload.get("shares")
    if not isinstance(raw_shares, list) or len(raw_shares) != shares_expected:
        raise MalformedShareError(
            f"expected {shares_expected} shares in the envelope", contributor=who
        )
    try:
        numbers = [int(s) for s in raw_shares]
    except (TypeError, ValueError) as exc:
        raise MalformedShareError("a share is not an integer", contributor=who) from exc
    if any(not 0 <= n < shamir.SUM_PRIME for n in numbers):
        raise MalformedShareError("a share is outside the field", contributor=who)
    nonce = payload.get("nonce")
    if not isinstance(nonce, str) or len(nonce) != 32:
        raise MalformedShareError("share lacks its nonce", contributor=who)
    tag = numbers[1] if shares_expected == 2 else None
    return OpenedInput(who, numbers[0], tag), nonce


def open_envelopes(
    spec: MpcJobSpec, party: int, private_key: bytes, envelopes: Sequence[SealedShare]
) -> tuple[list[OpenedInput], dict[str, str]]:
    """Open this party's envelopes of job ``spec``; return accepted inputs and refusals.

    A refused contributor maps to the reason (the message of the
    :class:`mpc.errors.InvalidContributionError` that refused it). A share
    carries a rank tag exactly when the job computes ranks.

    Raises:
        nacl.exceptions.CryptoError: ``private_key`` is not an X25519 key.
    """
    box = SealedBox(PrivateKey(private_key))
    accepted: dict[str, OpenedInput] = {}
    refused: dict[str, str] = {}
    nonces: set[str] = set()
    for envelope in envelopes:
        who = envelope.contributor
        try:
            if who in accepted or who in refused:
                raise ReplayedContributionError("sent more than one share", contributor=who)
            opened, nonce = _open_one(spec, party, box, envelope)
            if nonce in nonces:
                raise ReplayedContributionError("replayed another envelope", contributor=who)
            nonces.add(nonce)
            accepted[who] = opened
        except (MalformedShareError, ReplayedContributionError) as exc:
            refused[who] = str(exc)
            accepted.pop(who, None)
    return [accepted[w] for w in sorted(accepted)], refused
