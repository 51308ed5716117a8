"""Fabric benchmark: the ledger shipped to a real Fabric channel, next to the SQL log.

    source <your network's env file>          # the IBX_FABRIC_* settings, docs/fabric.md
    .venv/bin/python benchmarks/bench_fabric.py
    .venv/bin/python benchmarks/bench_fabric.py --batches 1:50,100:1000 --anchors 10

Without the ``IBX_FABRIC_*`` settings it says so and exits 0 (``make bench`` runs
everywhere; CI has no Fabric network). Against a network it reports:

* the network's shape, read from the channel's configuration block (orderer type,
  block cutting: BatchTimeout, MaxMessageCount, byte limits) and from the settings
  (gateway, TLS, state database when ``IBX_FABRIC_STATE_DB`` says);
* full mode: entries shipped per second by the real shipper with batches of 1, 100 and
  1,000 entries (a fresh log each), as transactions/s and entries/s, next to the SQL
  ledger's append rate of the same entries in the same batches;
* anchor mode: the latency of anchoring a grown head (one signed checkpoint with its
  consistency proof, from submit to commit status), median and p95;
* a query's latency (``Head``, evaluated on one peer), median and p95.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import core
from core.db import Database, migrate
from core.events import Event
from core.keyring import KeyRing
from core.keys import MasterKey
from ledger import MIGRATIONS, Ledger, LedgerConfig, SqlLedgerBackend
from ledger.fabric import AnchorRequest, FabricConfig, FabricMode
from ledger.fabric.gateway import GatewayChannel, GatewayClient, open_channel
from ledger.fabric.shipper import FabricShipper

SETTINGS = {
    "gateway": "IBX_FABRIC_GATEWAY",
    "tls_root": "IBX_FABRIC_TLS_ROOT",
    "msp_id": "IBX_FABRIC_MSP_ID",
    "cert": "IBX_FABRIC_CERT",
    "key": "IBX_FABRIC_KEY",
    "channel": "IBX_FABRIC_CHANNEL",
    "chaincode": "IBX_FABRIC_CHAINCODE",
}
"""The settings the benchmark needs (as the real-network tests read them)."""


def fabric_config() -> FabricConfig | None:
    """The client configuration from ``IBX_FABRIC_*``, or None when any is unset."""
    values = {field: os.environ.get(name, "") for field, name in SETTINGS.items()}
    if not all(values.values()):
        return None
    return FabricConfig(
        mode=FabricMode.FULL,
        gateway=values["gateway"],
        tls_root=Path(values["tls_root"]),
        msp_id=values["msp_id"],
        cert=Path(values["cert"]),
        key=Path(values["key"]),
        channel=values["channel"],
        chaincode=values["chaincode"],
        server_name=os.environ.get("IBX_FABRIC_SERVER_NAME") or None,
    )


@dataclass(frozen=True)
class NetworkShape:
    """What the channel's configuration block says about ordering."""

    orderer_type: str
    batch_timeout: str
    max_message_count: int
    absolute_max_bytes: int
    preferred_max_bytes: int
    consenters: int
    orgs: tuple[str, ...]


def network_shape(client: GatewayClient, channel: str) -> NetworkShape:
    """Read the channel's configuration through the gateway (``cscc GetChannelConfig``).

    Raises:
        FabricError: the query failed.
    """
    from fabric_protos.common import configtx_pb2
    from fabric_protos.orderer import configuration_pb2
    from fabric_protos.orderer.etcdraft import configuration_pb2 as etcdraft_pb2

    raw = client.evaluate(channel, "cscc", [b"GetChannelConfig", channel.encode()])
    config = configtx_pb2.Config.FromString(raw)
    orderer = config.channel_group.groups["Orderer"].values
    kind = configuration_pb2.ConsensusType.FromString(orderer["ConsensusType"].value)
    timeout = configuration_pb2.BatchTimeout.FromString(orderer["BatchTimeout"].value)
    size = configuration_pb2.BatchSize.FromString(orderer["BatchSize"].value)
    consenters = 0
    if kind.type == "etcdraft":
        consenters = len(etcdraft_pb2.ConfigMetadata.FromString(kind.metadata).consenters)
    orgs = tuple(sorted(config.channel_group.groups["Application"].groups))
    return NetworkShape(
        str(kind.type),
        str(timeout.timeout),
        int(size.max_message_count),
        int(size.absolute_max_bytes),
        int(size.preferred_max_bytes),
        consenters,
        orgs,
    )


def _events(start: int, count: int) -> list[Event]:
    return [
        Event(
            "bench.reading",
            f"enterprise-{(start + i) % 97}",
            {"seq": start + i, "kwh": (start + i) * 0.25},
        )
        for i in range(count)
    ]


def _pct(times: list[float], q: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


class Bench:
    """One run: fresh SQLite ledgers in a temporary directory, one gateway connection."""

    def __init__(self, config: FabricConfig) -> None:
        self.config = config
        self.work = Path(tempfile.mkdtemp(prefix="ibx-bench-fabric-"))
        self.dbs: list[Database] = []
        self.run_id = secrets.token_hex(4)
        self.channel = open_channel(config, f"bench/fabric-{self.run_id}-probe")

    def fresh(self, name: str) -> tuple[Ledger, SqlLedgerBackend, GatewayChannel]:
        """A new ledger (its own database, key and origin) and its log on the channel."""
        log = f"bench/fabric-{self.run_id}-{name}"
        db = Database(f"sqlite:///{self.work / (name + '.db')}")
        self.dbs.append(db)
        migrate(db, [core.MIGRATIONS, MIGRATIONS])  # the SQL backend holds one log per database
        backend = SqlLedgerBackend(db)
        signer = KeyRing(db, MasterKey(os.urandom(32))).get_or_create("ledger")
        ledger = Ledger(backend, signer, LedgerConfig(origin=log))
        channel = GatewayChannel(
            self.channel.client, self.config.channel, self.config.chaincode, log
        )
        return ledger, backend, channel

    def full(self, batch: int, entries: int) -> tuple[float, float, float, float]:
        """Ship ``entries`` in batches of ``batch``: (SQL commits/s, SQL entries/s,
        Fabric tx/s, Fabric entries/s)."""
        ledger, backend, channel = self.fresh(f"full-{batch}")
        t = time.perf_counter()
        for start in range(0, entries, batch):
            ledger.append(_events(start, min(batch, entries - start)))
        sql_s = time.perf_counter() - t
        commits = -(-entries // batch)
        shipper = FabricShipper(ledger, backend, channel, FabricMode.FULL, batch_size=batch)
        shipper.ship(max_batches=0)  # create the log on the channel (not timed)
        t = time.perf_counter()
        report = shipper.ship()
        fabric_s = time.perf_counter() - t
        if report.error is not None or report.channel_size != entries:
            raise SystemExit(f"bench_fabric: shipping stopped: {report.error or report}")
        head = channel.head()
        if head.size != entries or head.root != ledger.head().root:
            raise SystemExit("bench_fabric: the channel's head is not the SQL head")
        return (
            commits / sql_s,
            entries / sql_s,
            report.transactions / fabric_s,
            entries / fabric_s,
        )

    def anchors(self, count: int, grow: int) -> list[float]:
        """Anchor ``count`` grown heads (``grow`` entries each): seconds per anchor."""
        ledger, _, channel = self.fresh("anchor")
        channel.create(ledger.vkey())
        times = []
        anchored = 0
        for i in range(count):
            ledger.append(_events(i * grow, grow))
            head = ledger.head()
            proof = ledger.consistency_proof(anchored, head.size).hashes if anchored else ()
            request = AnchorRequest(head.checkpoint, proof)
            t = time.perf_counter()
            result = channel.anchor(request)
            times.append(time.perf_counter() - t)
            if result.size != head.size:
                raise SystemExit("bench_fabric: the anchor head is not the SQL head")
            anchored = head.size
        return times

    def queries(self, count: int) -> list[float]:
        """Evaluate ``Head`` of a new log ``count`` times: seconds per query."""
        ledger, _, channel = self.fresh("query")
        channel.create(ledger.vkey())
        times = []
        for _ in range(count):
            t = time.perf_counter()
            channel.head()
            times.append(time.perf_counter() - t)
        return times

    def close(self) -> None:
        """Close the gateway connection and the database."""
        self.channel.close()
        for db in self.dbs:
            db.dispose()


def run(batches: list[tuple[int, int]], anchors: int, grow: int, queries: int) -> None:
    config = fabric_config()
    if config is None:
        print(
            "bench_fabric: skipped: no Fabric network (set "
            + ", ".join(SETTINGS.values())
            + "; docs/fabric.md)"
        )
        return
    bench = Bench(config)
    try:
        shape = network_shape(bench.channel.client, config.channel)
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}"
        )
        print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}\n")
        state_db = os.environ.get("IBX_FABRIC_STATE_DB", "not given (IBX_FABRIC_STATE_DB)")
        print("| network | |")
        print("|---|---|")
        print(f"| gateway | {config.gateway} (TLS, server name {config.server_name or '-'}) |")
        print(f"| channel / chaincode | {config.channel} / {config.chaincode} |")
        print(f"| application orgs | {', '.join(shape.orgs)} |")
        print(f"| orderer | {shape.orderer_type}, {shape.consenters} consenter(s) |")
        print(
            f"| block cutting | BatchTimeout {shape.batch_timeout}, MaxMessageCount "
            f"{shape.max_message_count}, AbsoluteMaxBytes {shape.absolute_max_bytes:,}, "
            f"PreferredMaxBytes {shape.preferred_max_bytes:,} |"
        )
        print(f"| state database | {state_db} |")
        print(f"| SQL side | SQLite (synchronous=FULL) in {bench.work} |\n")

        q = bench.queries(queries)
        print(f"| query (Head, {queries} evaluations) | median ms | p95 ms |")
        print("|---|---|---|")
        print(f"| evaluate | {statistics.median(q) * 1000:.1f} | {_pct(q, 0.95) * 1000:.1f} |\n")

        print(
            "| full mode, batch | entries | SQL commits/s | SQL entries/s | "
            "Fabric tx/s | Fabric entries/s |"
        )
        print("|---|---|---|---|---|---|")
        for batch, entries in batches:
            sql_tx, sql_e, fab_tx, fab_e = bench.full(batch, entries)
            print(
                f"| {batch:,} | {entries:,} | {sql_tx:,.1f} | {sql_e:,.0f} | "
                f"{fab_tx:,.2f} | {fab_e:,.1f} |"
            )
        print()
        a = bench.anchors(anchors, grow)
        print(f"| anchor mode ({anchors} anchors, +{grow} entries each) | median ms | p95 ms |")
        print("|---|---|---|")
        print(
            f"| submit to commit status | {statistics.median(a) * 1000:.0f} | "
            f"{_pct(a, 0.95) * 1000:.0f} |"
        )
    finally:
        bench.close()


def _batches(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(","):
        batch, _, entries = part.partition(":")
        out.append((int(batch), int(entries)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--batches",
        default="1:200,100:2000,1000:10000",
        type=_batches,
        help="BATCH:ENTRIES,... full-mode runs (a fresh log each)",
    )
    parser.add_argument("--anchors", type=int, default=30, help="anchors timed")
    parser.add_argument("--grow", type=int, default=50, help="entries appended between anchors")
    parser.add_argument("--queries", type=int, default=50, help="Head queries timed")
    args = parser.parse_args()
    run(args.batches, args.anchors, args.grow, args.queries)


if __name__ == "__main__":
    main()
