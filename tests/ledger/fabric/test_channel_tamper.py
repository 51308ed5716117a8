"""A colluding majority of the consortium rewrites what the channel stores, and is found.

Organisations that together meet the endorsement policy can get any write set
committed as valid on every peer (a modified chaincode, or a write set signed by
hand), so they can change the channel's world state; what they cannot do is
sign a checkpoint with the ledger's key. Here they do what they can: the
channel's committed world state in the Gateway double (every peer's, the
auditor's organisation's included) is rewritten directly, as such a transaction
would rewrite it:

- an entry's bytes (the head left alone, or recomputed to match the forged entry);
- the head's root and frontier (those of another tree of the same size);
- the latest anchored checkpoint and the anchor head (a checkpoint of another tree,
  signed by a key the colluders hold);
- the head rolled back to an earlier genuine one (what they *can* do unnoticed for a
  while: it reads as lag, and the shipper ships the same entries again).

For each, the operator's ``ibx ledger verify --fabric`` (exit 5, naming what differs),
the auditor's ``ibx audit verify --export F --fabric`` through another organisation's
identity (a ``fabric.*`` finding) and the shipper (``ibx ledger ship --once``: the
shipper's ``LedgerIntegrityError``, exit 5 "ledger ship refused: ...") are run
against the rewritten channel. One data dir, shipped once for the module (full
mode, then anchored), and every rewrite is undone after its test.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.alerts import Alert, Severity
from core.keys import Ed25519Signer
from exchange.runtime import Runtime
from exchange.settings import Settings
from ledger import Checkpoint, leaf_hash, sign_note
from ledger._compact import CompactRange
from ledger.fabric import FabricConfig, FabricMode
from ledger.fabric.wire import (
    AnchorHead,
    ChannelHead,
    anchor_head_key,
    anchor_key,
    entry_key,
    head_key,
)
from tests.conftest import initialised
from tests.in_process import Done, ibx
from tests.ledger.fabric import conftest as fabric_fixtures
from tests.ledger.fabric.conftest import FabricTarget
from tests.ledger.fabric.gateway_double import GatewayDouble, double_fabric_config
from tests.ledger.fabric.shim_peer import Version

# The Gateway double's fixtures (tests/ledger/fabric/conftest.py).
fabric_pki = fabric_fixtures.fabric_pki
chaincode_service = fabric_fixtures.chaincode_service
gateway_double = fabric_fixtures.gateway_double

FIRST = 20
"""Readings appended before the first shipment (full, then anchored)."""
SECOND = 12
"""Readings appended before the second."""


def _environment(config: FabricConfig) -> dict[str, str]:
    """``IBX_LEDGER_FABRIC_*`` for a client of the double (the mode left to the caller)."""
    return {
        "IBX_LEDGER_FABRIC_GATEWAY": config.gateway,
        "IBX_LEDGER_FABRIC_TLS_ROOT": str(config.tls_root),
        "IBX_LEDGER_FABRIC_MSP_ID": config.msp_id,
        "IBX_LEDGER_FABRIC_CERT": str(config.cert),
        "IBX_LEDGER_FABRIC_KEY": str(config.key),
        "IBX_LEDGER_FABRIC_CHANNEL": config.channel,
        "IBX_LEDGER_FABRIC_CHAINCODE": config.chaincode,
        "IBX_LEDGER_FABRIC_RETRIES": "0",
    }


@dataclass
class Consortium:
    """The operator's data dir shipping to the double, and an auditor of Org2."""

    directory: Path
    double: GatewayDouble
    data_dir: Path
    origin: str
    operator: dict[str, str]
    auditor: dict[str, str]
    vkey: Path
    runtime: Runtime
    """The operator's runtime: the exchange's own ledger appends."""
    earlier: ChannelHead
    """The channel's head after the first shipment (a genuine, older head)."""

    # -- the operator --------------------------------------------------------------------

    def ibx(self, *argv: str, mode: FabricMode = FabricMode.FULL) -> Done:
        env = {**self.operator, "IBX_LEDGER_FABRIC_MODE": str(mode)}
        return ibx("--data-dir", str(self.data_dir), *argv, env=env)

    def append(self, count: int, first: int = 0) -> None:
        """``count`` alerts recorded by the exchange (entries the audit parses), ``reading
        N`` each."""
        self.runtime.ledger.append(
            [
                Alert("demo.reading", Severity.WARNING, "sensor", f"reading {first + i}").event(
                    "ibx"
                )
                for i in range(count)
            ]
        )

    def ship(self, mode: FabricMode = FabricMode.FULL) -> Done:
        """``ibx ledger ship --once``."""
        return self.ibx("ledger", "ship", "--once", mode=mode)

    def verify(self, mode: FabricMode = FabricMode.FULL) -> Done:
        """``ibx ledger verify --fabric``: the operator's comparison."""
        return self.ibx("ledger", "verify", "--fabric", mode=mode)

    # -- the auditor ---------------------------------------------------------------------

    def audit(self, *extra: str) -> Done:
        """``ibx audit verify --export F --ledger-vkey V --fabric`` on an export made now,
        through the Org2 auditor's identity and peer (the mode read from the channel)."""
        export = self.directory / "ledger.jsonl"
        done = self.ibx("ledger", "export", "--out", str(export), "--force")
        assert done.returncode == 0, done.stderr
        return ibx(
            "audit", "verify", "--export", str(export), "--ledger-vkey", str(self.vkey),
            "--fabric", *extra, env=self.auditor,
        )  # fmt: skip

    def fabric_findings(self) -> list[tuple[str, int | None, str]]:
        """The audit's ``fabric.*`` findings: code, index, message."""
        done = self.audit("--json")
        assert done.returncode == 5, done.stdout + done.stderr
        return [
            (f["code"], f["index"], f["message"])
            for f in json.loads(done.stdout)["findings"]
            if str(f["code"]).startswith("fabric.")
        ]

    # -- the channel's world state ---------------------------------------------------------

    def stored(self, key: str) -> bytes:
        found = self.double.world.get(key)
        assert found is not None, key
        return found[0]

    def head(self) -> ChannelHead:
        return ChannelHead.from_json(self.stored(head_key(self.origin)))

    def anchored(self) -> AnchorHead:
        return AnchorHead.from_json(self.stored(anchor_head_key(self.origin)))

    def leaves(self, size: int) -> list[bytes]:
        """The channel's entries ``[0, size)``, as stored."""
        return [self.stored(entry_key(self.origin, i)) for i in range(size)]

    @contextlib.contextmanager
    def colluding(self, writes: Mapping[str, bytes]) -> Iterator[None]:
        """A colluding majority's write set, committed on every peer; undone afterwards
        (the keys' values when the block ends, written back)."""
        world = self.double.world
        before = {key: world.get(key) for key in writes}
        _commit(self.double, writes)
        try:
            yield
        finally:
            _commit(self.double, {k: None if v is None else v[0] for k, v in before.items()})


def _commit(double: GatewayDouble, writes: Mapping[str, bytes | None]) -> None:
    """Apply ``writes`` to the channel's committed state, above everything committed (and
    below the next block the double cuts)."""
    height = double.world.height
    assert height is not None
    double.world.apply(writes, Version(height.block, height.tx + 1))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _forged(leaf: bytes) -> bytes:
    """An entry with its reading changed (still a well-formed ledger entry)."""
    forged = leaf.replace(b"reading ", b"reading -")
    assert forged != leaf
    return forged


@pytest.fixture(scope="module")
def consortium(
    tmp_path_factory: pytest.TempPathFactory, gateway_double: GatewayDouble
) -> Iterator[Consortium]:
    directory = tmp_path_factory.mktemp("channel-tamper")
    origin = FabricTarget.new_log_id("test.ibx/tamper")
    data_dir = initialised(directory / "data", ledger_origin=origin)
    operator = double_fabric_config(directory / "operator", gateway_double)
    org2 = gateway_double.pki.organisation("Org2MSP")
    assert org2 is not None
    auditor = double_fabric_config(
        directory / "auditor", gateway_double, identity=org2.issue("auditor@org2")
    )
    made = Consortium(
        directory,
        gateway_double,
        data_dir,
        origin,
        {**_environment(operator), "IBX_LEDGER_ORIGIN": origin},
        _environment(auditor),
        directory / "ledger.vkey",
        Runtime(Settings(data_dir=data_dir, ledger_origin=origin)),
        ChannelHead.of(CompactRange.empty()),  # until the first shipment
    )
    try:
        made.vkey.write_text(made.runtime.ledger.vkey())
        made.append(FIRST)
        for mode in (FabricMode.FULL, FabricMode.ANCHOR):
            assert made.ship(mode).returncode == 0
        made.earlier = made.head()
        made.append(SECOND, FIRST)
        for mode in (FabricMode.FULL, FabricMode.ANCHOR):
            assert made.ship(mode).returncode == 0
        assert made.anchored().size == made.head().size > made.earlier.size
        yield made
    finally:
        made.runtime.close()


def _refused(consortium: Consortium, mode: FabricMode = FabricMode.FULL) -> str:
    """``ibx ledger ship --once`` with an entry waiting: refused (the shipper's
    ``LedgerIntegrityError``, exit 5) and nothing shipped. Its message."""
    size = consortium.head().size
    anchored = consortium.anchored().size
    consortium.append(1, 1000)
    done = consortium.ship(mode)
    assert done.returncode == 5, done.stdout + done.stderr
    assert done.stdout == "" and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith("ibx: ledger ship refused: "), done.stderr
    assert (consortium.head().size, consortium.anchored().size) == (size, anchored)
    return done.stderr


def _operator_finds(consortium: Consortium, mode: FabricMode = FabricMode.FULL) -> str:
    """``ibx ledger verify --fabric``: exit 5 and one line; what it names."""
    done = consortium.verify(mode)
    assert done.returncode == 5, done.stdout + done.stderr
    assert done.stdout == "" and len(done.stderr.strip().splitlines()) == 1, done.stderr
    prefix = "ibx: ledger verify --fabric failed: "
    assert done.stderr.startswith(prefix), done.stderr
    return done.stderr.removeprefix(prefix).strip()


# -- before: the honest channel agrees -------------------------------------------------------


def test_the_untouched_channel_agrees_with_the_operator_and_the_auditor(
    consortium: Consortium,
) -> None:
    assert consortium.verify().returncode == 0
    assert consortium.verify(FabricMode.ANCHOR).returncode == 0
    done = consortium.audit()
    assert done.returncode == 0, done.stdout + done.stderr
    assert " agrees (lag " in done.stdout.splitlines()[-1]


# -- an entry ------------------------------------------------------------------------------


def test_an_entry_rewritten_with_its_head_is_found_and_refused(consortium: Consortium) -> None:
    """The colluders rewrite entry 5 and, to keep their copy self-consistent, the head's
    root and frontier; the checkpoint the head keeps they cannot re-sign."""
    head = consortium.head()
    leaves = consortium.leaves(head.size)
    leaves[5] = _forged(leaves[5])
    forged_head = ChannelHead.of(CompactRange.empty().append(leaves), head.checkpoint)
    with consortium.colluding(
        {
            entry_key(consortium.origin, 5): leaves[5],
            head_key(consortium.origin): forged_head.to_json(),
        }
    ):
        assert _operator_finds(consortium).startswith("entry 5 differs: channel leaf hash ")
        findings = consortium.fabric_findings()
        assert [(code, index) for code, index, _ in findings] == [("fabric.entry", 5)]
        assert "the Fabric channel: entry 5 differs" in findings[0][2]
        refused = _refused(consortium)
        assert f"disagree at size {head.size}: channel root " in refused
        assert "nothing shipped" in refused
    assert consortium.ship().returncode == 0  # undone: the waiting entry ships


def test_an_entry_rewritten_alone_is_found_and_shipping_on_top_does_not_hide_it(
    consortium: Consortium,
) -> None:
    """The head left alone: the shipper checks the head (O(1) a pass), not every entry,
    and the chaincode extends the head's frontier, never the stored entries. So the next
    batch ships on top, consistent with SQL, and the rewritten entry is still found by
    the full comparisons."""
    size = consortium.head().size
    key = entry_key(consortium.origin, 9)
    with consortium.colluding({key: _forged(consortium.stored(key))}):
        found = _operator_finds(consortium)
        assert found.startswith("entry 9 differs: channel leaf hash ")
        findings = consortium.fabric_findings()
        assert [(code, index) for code, index, _ in findings] == [("fabric.entry", 9)]
        consortium.append(2, 2000)
        shipped = consortium.ship()
        assert shipped.returncode == 0, shipped.stderr
        assert consortium.head().size == size + 2
        assert _operator_finds(consortium) == found
        assert [(c, i) for c, i, _ in consortium.fabric_findings()] == [("fabric.entry", 9)]
    assert consortium.verify().returncode == 0


# -- the head --------------------------------------------------------------------------------


def test_a_head_rewritten_to_another_tree_is_found_and_refused(consortium: Consortium) -> None:
    """The head's root and frontier replaced by those of another tree of the same size
    (the entries and the kept checkpoint left alone)."""
    head = consortium.head()
    other = consortium.leaves(head.size)
    other[3] = _forged(other[3])
    forged = ChannelHead.of(CompactRange.empty().append(other), head.checkpoint)
    assert forged.root != head.root and forged.size == head.size
    with consortium.colluding({head_key(consortium.origin): forged.to_json()}):
        found = _operator_finds(consortium)
        assert found.startswith("the channel's entries rebuild root ")
        assert f"not its head root {_b64(forged.root)} (size {head.size})" in found
        findings = consortium.fabric_findings()
        assert [(code, index) for code, index, _ in findings] == [("fabric.root", None)]
        assert "the channel's entries rebuild root" in findings[0][2]
        refused = _refused(consortium)
        assert f"disagree at size {head.size}: channel root {_b64(forged.root)}" in refused
    assert consortium.ship().returncode == 0


def test_a_head_rolled_back_to_an_earlier_genuine_one_is_refused_by_the_deployment_that_saw_it(
    consortium: Consortium,
) -> None:
    """A colluding majority puts back an earlier head they once endorsed (its own signed
    checkpoint, entries beyond it left as they are). A comparison alone sees a channel
    behind — lag, and so does the auditor's export check — but the operator's deployment
    remembers how far the channel had got: ``verify --fabric`` fails naming the rollback
    and the shipper refuses to ship on top."""
    size = consortium.head().size
    earlier = consortium.earlier
    with consortium.colluding({head_key(consortium.origin): earlier.to_json()}):
        done = consortium.verify()
        assert done.returncode == 5, done.stdout + done.stderr
        assert (
            f"is at size {earlier.size} but held {size} when this deployment last saw it"
            in done.stderr
        )
        audit = consortium.audit("--json")
        assert audit.returncode == 0, audit.stdout
        assert json.loads(audit.stdout)["fabric"]["channel_size"] == earlier.size
        refused = _refused(consortium)
        assert f"held {size} when this deployment last saw it committed" in refused
    assert consortium.head().size == size
    assert consortium.verify().returncode == 0


# -- an anchored checkpoint --------------------------------------------------------------------


def test_an_anchor_replaced_by_another_trees_checkpoint_is_found_and_refused(
    consortium: Consortium,
) -> None:
    """The latest anchored checkpoint and the anchor head replaced by a checkpoint of
    another tree of the same size. The colluders cannot sign with the ledger's key, so
    they sign with one of their own under the log's name."""
    anchored = consortium.anchored()
    other = consortium.leaves(anchored.size)
    other[4] = _forged(other[4])
    root = CompactRange.empty().append_hashes(leaf_hash(leaf) for leaf in other).root()
    body = Checkpoint(consortium.origin, anchored.size, root).to_text()
    note = sign_note(body, consortium.origin, Ed25519Signer.generate(consortium.origin)).to_text()
    with consortium.colluding(
        {
            anchor_key(consortium.origin, anchored.size): note.encode(),
            anchor_head_key(consortium.origin): AnchorHead(anchored.size, root, note).to_json(),
        }
    ):
        found = _operator_finds(consortium, FabricMode.ANCHOR)
        assert found.startswith("the anchored checkpoint does not verify under the ledger's key")
        findings = consortium.fabric_findings()
        assert [(code, index) for code, index, _ in findings] == [("fabric.anchor", None)]
        assert "the anchored checkpoint does not verify" in findings[0][2]
        refused = _refused(consortium, FabricMode.ANCHOR)
        assert (
            f"the channel's anchored checkpoint of size {anchored.size} does not verify under "
            "this ledger's key" in refused
        )
    assert consortium.ship(FabricMode.ANCHOR).returncode == 0
