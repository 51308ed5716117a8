"""pymerkle, an independent RFC 9162 implementation, computes the same roots from our leaves."""

from __future__ import annotations

from pymerkle import InmemoryTree

from core.events import Event
from core.keys import Ed25519Signer
from ledger import Checkpoint, Ledger, LedgerConfig, MemoryLedgerBackend


def test_pymerkle_agrees_with_every_checkpoint_root() -> None:
    signer = Ed25519Signer.generate("t")
    ledger = Ledger(MemoryLedgerBackend(), signer, LedgerConfig(origin="t/log"))
    peer = InmemoryTree(algorithm="sha256")
    for batch in range(1, 30):
        events = [Event("t.e", "a", {"b": batch, "i": i}) for i in range(batch % 5 + 1)]
        for recorded in ledger.append(events):
            peer.append_entry(ledger.entry(recorded.index).leaf_input)
        checkpoint = Checkpoint.from_text(ledger.checkpoint().text)
        assert peer.get_size() == checkpoint.size
        assert peer.get_root() == checkpoint.root
