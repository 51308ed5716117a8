"""Demo step: record events, print the checkpoint, verify an inclusion proof offline."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

from core.events import Event
from ledger import Checkpoint, NoteVerifier, SignedNote, leaf_hash, verify_inclusion

if TYPE_CHECKING:
    from exchange.demo import Scene


def run(scene: Scene) -> None:
    """Append sample events, then check one entry as an outside auditor would."""
    ledger = scene.runtime.ledger
    events = [
        Event("demo.reading", "factory-a", {"line": "cell-assembly", "energy_kwh": 1250.5}),
        Event("demo.reading", "factory-b", {"line": "cathode", "energy_kwh": 980.0}),
        Event("demo.key_operation", "custodian", {"operation": "generate", "job": "job-1"}),
    ]
    recorded = ledger.record_batch(events)
    scene.say(f"recorded {len(recorded)} events at indices {[r.index for r in recorded]}")
    note_text = ledger.checkpoint().to_text()
    scene.say("signed checkpoint:")
    for line in note_text.splitlines():
        scene.say(f"    {line}")
    vkey = ledger.vkey()
    scene.say(f"verifier key: {vkey}")

    # What an auditor does with only the vkey, the note, the entry and the proof:
    verifier = NoteVerifier.from_vkey(vkey)
    note = SignedNote.from_text(note_text)
    note.verify(verifier)
    checkpoint = Checkpoint.from_text(note.text)
    target = recorded[1].index
    entry = ledger.entry(target)
    proof = ledger.inclusion_proof(target, checkpoint.size)
    verify_inclusion(
        target, checkpoint.size, leaf_hash(entry.leaf_input), proof.hashes, checkpoint.root
    )
    scene.say(
        f"entry {target} ({entry.type} by {entry.actor}) is in the tree of size {checkpoint.size}: "
        f"{len(proof.hashes)}-hash inclusion proof verified against root "
        f"{base64.b64encode(checkpoint.root).decode()}"
    )
    report = ledger.verify()
    scene.say(f"full ledger verify: ok, size {report.size}")
