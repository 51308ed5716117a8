"""The Gateway double's channel: its members (MSPs), its blocks, and the committing
peer's validation of each ordered transaction.

A committer validates ordered transactions in block order as Fabric's does
(``core/common/validation/msgvalidation.go``, ``core/committer/txvalidator``,
``core/ledger/kvledger/txmgmt/validation``): the envelope's header and creator
signature, the transaction id, duplicates, the proposal hash, the endorsements
against the endorsement policy (distinct organisations' peers), then MVCC (every
read version must equal the committed one; range reads are re-run for phantoms).
A valid transaction's writes are applied at ``Version(block, tx)``; an invalid
one changes nothing and its code is recorded. The first status of a transaction
id stays (a duplicate is ``DUPLICATE_TXID`` and never replaces it).
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID
from fabric_protos.common import common_pb2
from fabric_protos.ledger.rwset import rwset_pb2
from fabric_protos.ledger.rwset.kvrwset import kv_rwset_pb2
from fabric_protos.msp import identities_pb2
from fabric_protos.peer import (
    chaincode_event_pb2,
    proposal_pb2,
    proposal_response_pb2,
    transaction_pb2,
)
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]

from tests.ledger.fabric.fabric_pki import Organisation, verify_signature
from tests.ledger.fabric.raw_gateway import compute_tx_id
from tests.ledger.fabric.shim_peer import RangeRead, Version, World
from tests.ledger.fabric.shim_peer import _range_query_info as range_query_info

__all__ = [
    "AccessDeniedError",
    "Block",
    "ChannelMsps",
    "CommittedTx",
    "Committer",
    "TxCode",
    "code_name",
    "proposal_hash",
]

TxCode = int
"""A ``peer.TxValidationCode`` value."""

VALID: TxCode = transaction_pb2.VALID


def code_name(code: TxCode) -> str:
    """The ``TxValidationCode`` name of ``code``."""
    return str(transaction_pb2.TxValidationCode.Name(code))


class AccessDeniedError(Exception):
    """An identity is not a member of the channel, or its signature does not verify."""


@dataclass(frozen=True)
class Member:
    """A verified signer: its MSP id and certificate."""

    msp_id: str
    certificate: x509.Certificate

    @property
    def role(self) -> str:
        """Its NodeOU role (``peer``, ``client``, ...): the certificate's organisational unit."""
        units = self.certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
        return str(units[0].value) if units else ""


class ChannelMsps:
    """The channel's organisations, as a peer's MSP manager deserializes and validates
    identities (chain to the MSP's root CA, validity period)."""

    def __init__(self, organisations: Sequence[Organisation]) -> None:
        self._orgs = {org.msp_id: org for org in organisations}

    def deserialize(self, serialized: bytes, channel: str) -> Member:
        """The member a ``SerializedIdentity`` names.

        Raises:
            AccessDeniedError: malformed, an unknown MSP, or a certificate the MSP did not
                issue or that has expired (Fabric's messages).
        """
        try:
            identity = identities_pb2.SerializedIdentity.FromString(serialized)
            certificate = x509.load_pem_x509_certificate(identity.id_bytes)
        except (DecodeError, ValueError) as exc:
            raise AccessDeniedError(
                f"access denied: channel [{channel}] creator org unknown, creator is malformed"
            ) from exc
        org = self._orgs.get(identity.mspid)
        if org is None:
            raise AccessDeniedError(
                f"access denied: channel [{channel}] creator org unknown, creator is malformed"
            )
        if not org.validates(certificate, datetime.datetime.now(datetime.UTC)):
            raise AccessDeniedError(
                f"access denied: channel [{channel}] creator org [{identity.mspid}]"
            )
        return Member(identity.mspid, certificate)

    def verify(self, serialized: bytes, channel: str, message: bytes, signature: bytes) -> Member:
        """The member, after checking its low-S ECDSA signature over ``message``.

        Raises:
            AccessDeniedError: as :meth:`deserialize`, or the signature does not verify.
        """
        member = self.deserialize(serialized, channel)
        if not verify_signature(member.certificate, message, signature):
            raise AccessDeniedError(
                f"access denied: channel [{channel}] creator org [{member.msp_id}]"
            )
        return member


def proposal_hash(channel_header: bytes, signature_header: bytes, cpp_bytes: bytes) -> bytes:
    """``protoutil.GetProposalHash2``: what a proposal response's payload commits to."""
    return hashlib.sha256(channel_header + signature_header + cpp_bytes).digest()


@dataclass(frozen=True)
class CommittedTx:
    """One transaction of a block and the code it was committed with."""

    tx_id: str
    code: TxCode
    event: Any | None
    """Its ``peer.ChaincodeEvent`` (streamed only when the code is VALID)."""


@dataclass(frozen=True)
class Block:
    """A committed block: number and transactions in order (block 0 is the genesis)."""

    number: int
    transactions: tuple[CommittedTx, ...]


@dataclass(frozen=True)
class _Action:
    tx_id: str
    results: bytes
    event: Any | None


class _InvalidTxError(Exception):
    def __init__(self, code: TxCode, tx_id: str = "", event: Any | None = None) -> None:
        super().__init__(code_name(code))
        self.code = code
        self.tx_id = tx_id
        self.event = event


class Committer:
    """The channel's ledger and the committing peer's validator.

    ``policy()`` gives how many distinct organisations' peers must have endorsed a
    transaction (the chaincode's endorsement policy, ``MAJORITY Endorsement`` over
    ``'OrgN.peer'`` principals): a client's own signature over a response counts for nothing.
    """

    def __init__(
        self,
        world: World,
        msps: ChannelMsps,
        *,
        channel: str,
        chaincode: str,
        policy: Callable[[], int],
    ) -> None:
        self.world = world
        self.msps = msps
        self.channel = channel
        self.chaincode = chaincode
        self._policy = policy
        self.blocks: list[Block] = [Block(0, ())]
        self._statuses: dict[str, tuple[TxCode, int]] = {}

    @property
    def height(self) -> int:
        """The number of the next block."""
        return len(self.blocks)

    def status(self, tx_id: str) -> tuple[TxCode, int] | None:
        """A committed transaction's (first) code and block number."""
        return self._statuses.get(tx_id)

    def block_of(self, tx_id: str) -> int | None:
        """The block that committed ``tx_id`` first, if any."""
        status = self._statuses.get(tx_id)
        return None if status is None else status[1]

    def commit(self, envelopes: Sequence[bytes]) -> Block:
        """Validate the ordered ``envelopes`` as the next block and commit it."""
        number = self.height
        seen: set[str] = set()
        committed = []
        for index, raw in enumerate(envelopes):
            try:
                action = self._validate(raw, seen)
            except _InvalidTxError as invalid:
                code, tx_id, event = invalid.code, invalid.tx_id, invalid.event
            else:
                code, tx_id, event = VALID, action.tx_id, action.event
                self._apply(action.results, Version(number, index))
            if tx_id:
                seen.add(tx_id)
                self._statuses.setdefault(tx_id, (code, number))
            committed.append(CommittedTx(tx_id, code, event))
        block = Block(number, tuple(committed))
        self.blocks.append(block)
        return block

    # -- validation ------------------------------------------------------------------

    def _validate(self, raw: bytes, seen: set[str]) -> _Action:
        try:
            envelope = common_pb2.Envelope.FromString(raw)
            payload = common_pb2.Payload.FromString(envelope.payload)
            header = payload.header
            channel_header = common_pb2.ChannelHeader.FromString(header.channel_header)
            signature_header = common_pb2.SignatureHeader.FromString(header.signature_header)
        except DecodeError:
            raise _InvalidTxError(transaction_pb2.BAD_PAYLOAD) from None
        tx_id = channel_header.tx_id
        if (
            channel_header.type != common_pb2.ENDORSER_TRANSACTION
            or channel_header.epoch != 0
            or channel_header.channel_id != self.channel
            or not signature_header.nonce
            or not signature_header.creator
        ):
            raise _InvalidTxError(transaction_pb2.BAD_COMMON_HEADER)
        try:
            self.msps.verify(
                signature_header.creator, self.channel, envelope.payload, envelope.signature
            )
        except AccessDeniedError:
            raise _InvalidTxError(transaction_pb2.BAD_CREATOR_SIGNATURE) from None
        if tx_id != compute_tx_id(signature_header.nonce, signature_header.creator):
            raise _InvalidTxError(transaction_pb2.BAD_PROPOSAL_TXID)
        if tx_id in seen or tx_id in self._statuses:
            raise _InvalidTxError(transaction_pb2.DUPLICATE_TXID, tx_id)
        try:
            transaction = transaction_pb2.Transaction.FromString(payload.data)
            if len(transaction.actions) != 1:
                raise _InvalidTxError(transaction_pb2.INVALID_ENDORSER_TRANSACTION, tx_id)
            act = transaction.actions[0]
            action_payload = transaction_pb2.ChaincodeActionPayload.FromString(act.payload)
            prp_bytes = action_payload.action.proposal_response_payload
            prp = proposal_response_pb2.ProposalResponsePayload.FromString(prp_bytes)
            cc_action = proposal_pb2.ChaincodeAction.FromString(prp.extension)
            event = (
                chaincode_event_pb2.ChaincodeEvent.FromString(cc_action.events)
                if cc_action.events
                else None
            )
        except DecodeError:
            raise _InvalidTxError(transaction_pb2.INVALID_ENDORSER_TRANSACTION, tx_id) from None
        expected = proposal_hash(
            header.channel_header, act.header, action_payload.chaincode_proposal_payload
        )
        if act.header != header.signature_header or prp.proposal_hash != expected:
            raise _InvalidTxError(transaction_pb2.INVALID_ENDORSER_TRANSACTION, tx_id)
        if cc_action.chaincode_id.name != self.chaincode:
            raise _InvalidTxError(transaction_pb2.INVALID_CHAINCODE, tx_id)
        self._check_endorsements(prp_bytes, action_payload.action.endorsements, tx_id)
        self._check_reads(cc_action.results, tx_id)
        return _Action(tx_id, cc_action.results, event)

    def _check_endorsements(self, prp_bytes: bytes, endorsements: Any, tx_id: str) -> None:
        orgs: set[str] = set()
        for endorsement in endorsements:
            try:
                member = self.msps.verify(
                    endorsement.endorser,
                    self.channel,
                    prp_bytes + endorsement.endorser,
                    endorsement.signature,
                )
            except AccessDeniedError:
                continue
            if member.role == "peer":  # the policy names each organisation's peers
                orgs.add(member.msp_id)
        if len(orgs) < self._policy():
            raise _InvalidTxError(transaction_pb2.ENDORSEMENT_POLICY_FAILURE, tx_id)

    def _namespace_rwset(self, results: bytes, tx_id: str) -> Any | None:
        try:
            rwset = rwset_pb2.TxReadWriteSet.FromString(results)
            for ns in rwset.ns_rwset:
                if ns.namespace == self.chaincode:
                    return kv_rwset_pb2.KVRWSet.FromString(ns.rwset)
        except DecodeError:
            raise _InvalidTxError(transaction_pb2.BAD_RWSET, tx_id) from None
        return None

    def _check_reads(self, results: bytes, tx_id: str) -> None:
        kv = self._namespace_rwset(results, tx_id)
        if kv is None:
            return
        for read in kv.reads:
            current = self.world.get(read.key)
            committed = None if current is None else current[1]
            wanted = (
                Version(read.version.block_num, read.version.tx_num)
                if read.HasField("version")
                else None
            )
            if committed != wanted:
                raise _InvalidTxError(transaction_pb2.MVCC_READ_CONFLICT, tx_id)
        for info in kv.range_queries_info:
            if not self._same_range(info):
                raise _InvalidTxError(transaction_pb2.PHANTOM_READ_CONFLICT, tx_id)

    def _same_range(self, info: Any) -> bool:
        """The range query re-run on the committed state gives what the simulation read
        (``rangeQueryResultsValidator`` / ``rangeQueryHashValidator``): the same
        ``RangeQueryInfo``, raw reads or Merkle summary alike."""
        if info.itr_exhausted:
            rows = self.world.range(info.start_key, info.end_key)
        elif info.end_key:
            # The iterator was not exhausted: its end is the last key it read, inclusive
            # (validator.go: includeEndKey = !ItrExhausted).
            rows = self.world.range(info.start_key, info.end_key)
            last = self.world.get(info.end_key)
            if last is not None:
                rows.append((info.end_key, last[0], last[1]))
        else:
            rows = []
        now = RangeRead(
            info.start_key,
            info.end_key,
            tuple((key, version) for key, _, version in rows),
            info.itr_exhausted,
        )
        return bool(range_query_info(now) == info)

    def _apply(self, results: bytes, version: Version) -> None:
        kv = self._namespace_rwset(results, "")
        if kv is None:
            return
        writes: dict[str, bytes | None] = {}
        for write in kv.writes:
            writes[write.key] = None if write.is_delete else write.value
        if writes:
            self.world.apply(writes, version)
