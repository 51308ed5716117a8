"""The ledger contract suite and the tamper tests, on a Fabric channel.

Every test runs through the real Gateway client (``ledger.fabric.gateway``)
against ``fabric_target``: the in-process Gateway double running the real
chaincode, and a real Fabric network when ``IBX_FABRIC_*`` says where one is
(skipped otherwise, never faked). Each test ships a log of its own (a fresh
log id, which is the ledger's origin), so a long-lived network serves them all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text

from core.db import Database, migrate
from core.events import Event
from core.keys import Ed25519Signer
from ledger import (
    MIGRATIONS,
    Checkpoint,
    Ledger,
    LedgerConfig,
    LedgerIntegrityError,
    SignedNote,
    SqlLedgerBackend,
    leaf_hash,
    sign_note,
)
from ledger._compact import CompactRange
from ledger.fabric import (
    AnchorRequest,
    AppendBatch,
    ChaincodeRefusedError,
    FabricMode,
    LedgerChannel,
)
from ledger.fabric.compare import compare
from ledger.fabric.gateway import open_channel
from ledger.fabric.shipper import FabricShipper
from tests.ledger.fabric.conftest import FabricTarget


@dataclass
class Site:
    """One ledger (SQLite) and its log on the channel."""

    ledger: Ledger
    backend: SqlLedgerBackend
    db: Database
    channel: LedgerChannel

    def append(self, count: int, tag: str = "x") -> None:
        """Append ``count`` entries in one batch."""
        start = self.ledger.size()
        events = [Event("demo.reading", "sensor", {tag: start + i}) for i in range(count)]
        self.ledger.append(events)

    def shipper(self, mode: FabricMode = FabricMode.FULL, batch_size: int = 500) -> FabricShipper:
        return FabricShipper(self.ledger, self.backend, self.channel, mode, batch_size=batch_size)

    def channel_leaves(self) -> list[bytes]:
        size = self.channel.head().size
        leaves: list[bytes] = []
        while len(leaves) < size:
            leaves.extend(self.channel.entries(len(leaves), 1000).leaves)
        return leaves

    def sql_leaves(self) -> list[bytes]:
        return [leaf for _, leaf in self.backend.scan_entries(0, self.ledger.size())]


@pytest.fixture
def sites(tmp_path: Path, fabric_target: FabricTarget) -> Iterator[Callable[..., Site]]:
    """Make ledgers shipping to fresh logs (``log=`` and ``signer=`` to share them)."""
    made: list[Site] = []

    def make(log: str | None = None, signer: Ed25519Signer | None = None) -> Site:
        log = log or FabricTarget.new_log_id("test.ibx/contract")
        index = len(made)
        db = Database(f"sqlite:///{tmp_path / f'ledger{index}.db'}")
        migrate(db, [MIGRATIONS])
        backend = SqlLedgerBackend(db)
        ledger = Ledger(backend, signer or Ed25519Signer.generate("ledger"), LedgerConfig(log))
        config = fabric_target()
        site = Site(ledger, backend, db, open_channel(config, log))
        made.append(site)
        return site

    yield make
    for site in made:
        site.channel.close()
        site.db.dispose()


@pytest.mark.parametrize(("batch", "entries"), [(1, 5), (100, 250), (1000, 1500)])
def test_entries_ship_in_order_and_the_channel_head_is_the_sql_head(
    sites: Callable[..., Site], batch: int, entries: int
) -> None:
    site = sites()
    site.append(entries)
    report = site.shipper(batch_size=batch).ship()
    assert (report.shipped, report.channel_size, report.sql_size) == (entries, entries, entries)
    assert report.transactions == -(-entries // batch)
    head, sql = site.channel.head(), site.ledger.head()
    assert (head.size, head.root) == (sql.size, sql.root)
    assert head.checkpoint == sql.checkpoint  # the last batch carried the signed head
    assert site.channel_leaves() == site.sql_leaves()
    again = site.shipper(batch_size=batch).ship()
    assert (again.shipped, again.transactions, again.channel_size) == (0, 0, entries)
    verdict = compare(site.ledger, site.backend, site.channel, FabricMode.FULL)
    assert verdict.ok and verdict.lag == 0, verdict


def test_the_channel_alone_rebuilds_the_log(sites: Callable[..., Site]) -> None:
    site = sites()
    site.append(130)
    site.shipper(batch_size=50).ship()
    leaves = site.channel_leaves()
    rebuilt = CompactRange.empty().append_hashes(leaf_hash(leaf) for leaf in leaves)
    assert rebuilt.root() == site.channel.head().root == site.ledger.head().root
    note = SignedNote.from_text(site.channel.head().checkpoint)
    note.verify(site.ledger.verifier)
    assert Checkpoint.from_text(note.text).root == rebuilt.root()


def test_a_restarted_shipper_resumes_without_duplicates(sites: Callable[..., Site]) -> None:
    site = sites()
    site.append(120)
    first = site.shipper(batch_size=50).ship(max_batches=1)
    assert (first.shipped, first.channel_size) == (50, 50)
    site.append(30)
    resumed = site.shipper(batch_size=50).ship()  # a new shipper: reads the channel's head
    assert (resumed.shipped, resumed.transactions, resumed.channel_size) == (100, 2, 150)
    assert site.channel_leaves() == site.sql_leaves()
    verdict = compare(site.ledger, site.backend, site.channel, FabricMode.FULL)
    assert verdict.ok and verdict.channel_size == 150


def test_a_channel_behind_sql_is_lag_not_a_failure(sites: Callable[..., Site]) -> None:
    site = sites()
    site.append(20)
    site.shipper().ship()
    site.append(7)
    verdict = compare(site.ledger, site.backend, site.channel, FabricMode.FULL)
    assert verdict.ok and (verdict.channel_size, verdict.sql_size, verdict.lag) == (20, 27, 7)


def test_anchor_mode_anchors_and_reanchors_with_consistency(
    sites: Callable[..., Site],
) -> None:
    site = sites()
    site.append(40)
    anchor = site.shipper(FabricMode.ANCHOR)
    first = anchor.ship()
    assert (first.shipped, first.transactions, first.channel_size) == (40, 1, 40)
    assert anchor.ship().transactions == 0  # nothing newer
    site.append(25)
    second = anchor.ship()
    assert (second.shipped, second.transactions, second.channel_size) == (25, 1, 65)
    head = site.channel.anchor_head()
    assert (head.size, head.root) == (65, site.ledger.head().root)
    notes = site.channel.anchors(0, 10).checkpoints
    assert [Checkpoint.from_text(SignedNote.from_text(n).text).size for n in notes] == [40, 65]
    assert site.channel.head().size == 0  # anchor mode ships no entries
    verdict = compare(site.ledger, site.backend, site.channel, FabricMode.ANCHOR)
    assert verdict.ok and verdict.channel_size == 65, verdict


def _signed_by_another_key(ledger: Ledger, size: int, root: bytes) -> str:
    """A checkpoint of the right tree and origin, signed by a key that is not the log's."""
    origin = ledger.config.origin
    body = Checkpoint(origin, size, root).to_text()
    return sign_note(body, origin, Ed25519Signer.generate("ledger")).to_text()


# -- tampering -------------------------------------------------------------------------


def test_an_sql_entry_edited_after_shipping_is_named_by_the_comparison(
    sites: Callable[..., Site],
) -> None:
    site = sites()
    site.append(60)
    site.shipper().ship()
    with site.db.write() as session:
        session.execute(
            text("UPDATE ledger_entries SET leaf_input = :forged WHERE idx = 41"),
            {"forged": site.sql_leaves()[41].replace(b'"x":41', b'"x":4100')},
        )
    verdict = compare(site.ledger, site.backend, site.channel, FabricMode.FULL)
    assert not verdict.ok
    assert verdict.first_disagreement is not None
    assert verdict.first_disagreement.startswith("entry 41 differs: channel")


def test_a_diverged_sql_log_is_refused_by_the_shipper(sites: Callable[..., Site]) -> None:
    """A second SQL log with the same key and origin but other entries (a restored or
    rewritten database): the shipper names the disagreement and ships nothing."""
    signer = Ed25519Signer.generate("ledger")
    honest = sites(signer=signer)
    honest.append(30)
    honest.shipper().ship()
    forked = sites(log=honest.ledger.config.origin, signer=signer)
    forked.append(45, tag="y")
    with pytest.raises(LedgerIntegrityError, match="disagree at size 30") as refused:
        forked.shipper().ship()
    assert "nothing shipped" in str(refused.value)
    assert honest.channel.head().size == 30
    verdict = compare(forked.ledger, forked.backend, forked.channel, FabricMode.FULL)
    assert not verdict.ok and verdict.first_disagreement is not None
    assert verdict.first_disagreement.startswith("entry 0 differs")


def test_a_rolled_back_sql_log_is_refused_by_the_shipper(sites: Callable[..., Site]) -> None:
    signer = Ed25519Signer.generate("ledger")
    shipped = sites(signer=signer)
    shipped.append(30)
    shipped.shipper().ship()
    restored = sites(log=shipped.ledger.config.origin, signer=signer)  # an older backup
    restored.append(10)
    with pytest.raises(LedgerIntegrityError, match="holds 30 entries but the SQL log only 10"):
        restored.shipper().ship()
    verdict = compare(restored.ledger, restored.backend, restored.channel, FabricMode.FULL)
    assert not verdict.ok


def test_a_log_of_another_key_is_refused(sites: Callable[..., Site]) -> None:
    first = sites()
    first.append(3)
    first.shipper().ship()
    impostor = sites(log=first.ledger.config.origin)  # same log id, another signer
    impostor.append(3)
    with pytest.raises(LedgerIntegrityError, match="another checkpoint key"):
        impostor.shipper().ship()
    with pytest.raises(ChaincodeRefusedError) as refused:
        impostor.channel.create(impostor.ledger.vkey())
    assert refused.value.refusal.code == "exists"


def test_forged_batches_are_refused_by_the_chaincode(sites: Callable[..., Site]) -> None:
    site = sites()
    site.append(12)
    site.shipper(batch_size=10).ship(max_batches=1)
    leaves = site.sql_leaves()
    root = site.ledger.root_at(12)
    forged = {
        "gap": AppendBatch(11, (leaves[11],), root),  # skips entry 10
        "replay": AppendBatch(0, tuple(leaves[:12]), root),  # starts before the head
        "root-mismatch": AppendBatch(10, tuple(leaves[10:12]), site.ledger.root_at(11)),
        "bad-request": AppendBatch(10, (leaves[11], leaves[10]), root),  # indices swapped
    }
    expected = {"gap": "gap", "replay": "gap", "root-mismatch": "root-mismatch"}
    for name, batch in forged.items():
        with pytest.raises(ChaincodeRefusedError) as refused:
            site.channel.append(batch)
        assert refused.value.refusal.code == expected.get(name, "bad-request"), name
    alien = _signed_by_another_key(site.ledger, 12, root)
    with pytest.raises(ChaincodeRefusedError) as refused:
        site.channel.append(AppendBatch(10, tuple(leaves[10:12]), root, alien))
    assert refused.value.refusal.code == "bad-checkpoint"
    assert site.channel.head().size == 10  # every forgery left the head alone
    assert site.shipper().ship().shipped == 2


def test_forged_anchors_are_refused_by_the_chaincode(sites: Callable[..., Site]) -> None:
    site = sites()
    site.append(8)
    site.shipper(FabricMode.ANCHOR).ship()
    site.append(8)
    good = site.ledger.head().checkpoint
    alien = _signed_by_another_key(site.ledger, 16, site.ledger.root_at(16))
    proof = site.ledger.consistency_proof(8, 16).hashes
    with pytest.raises(ChaincodeRefusedError) as refused:
        site.channel.anchor(AnchorRequest(alien, proof))
    assert refused.value.refusal.code == "bad-checkpoint"
    bad_proof = (bytes(32), *proof[1:])
    with pytest.raises(ChaincodeRefusedError) as refused:
        site.channel.anchor(AnchorRequest(good, bad_proof))
    assert refused.value.refusal.code == "inconsistent"
    with pytest.raises(ChaincodeRefusedError) as refused:
        site.channel.anchor(AnchorRequest(site.channel.anchor_head().checkpoint, ()))
    assert refused.value.refusal.code == "not-newer"
    assert site.channel.anchor_head().size == 8
    assert site.shipper(FabricMode.ANCHOR).ship().channel_size == 16
