"""Consent check latency at scale, and receipt signature verification against raw PyNaCl.

    .venv/bin/python benchmarks/bench_consent.py [--enterprises 10000] [--consents 100000]

Builds a SQLite database (WAL, synchronous=FULL) with N enterprises, each with
one dataset, 100 sub-brains in 10 industries, and M signed consents (real
Ed25519 signatures; a mix of single-identity and industry-group requesters).
The bulk load writes the consent tables directly in one transaction instead of
calling ``ConsentService.grant`` M times (each grant is its own fsynced
transaction with a ledger append; that path is timed separately below).

Then it times ``covering_consents`` (the full check: index lookup, receipt
decode, signature re-verification, scope evaluation) for requests over 1 and
10 owners, ``use`` (check + count + ledger entry in one write transaction), and
the verification of 10,000 receipt signatures next to raw PyNaCl verification
of the same bytes in the same run.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from nacl.signing import VerifyKey
from sqlalchemy import insert, text

import consent
import core
import ledger
from consent import (
    Classification,
    ConsentConfig,
    ConsentReceipt,
    ConsentRequest,
    ConsentService,
    DatasetScope,
    Engine,
    Operation,
    Purpose,
    Requester,
    RequesterProfile,
    SignedReceipt,
    StaticDirectory,
    new_consent_id,
)
from consent._tables import DatasetRow, GrantRow, ScopeRow
from core.clock import format_rfc3339
from core.db import Database, migrate
from core.keys import Ed25519Signer, verify_ed25519

ORIGIN = "bench.ibx.localhost/ledger"
T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
FIELDS = ("energy_kwh", "output_units", "emissions_t", "water_m3")
INDUSTRIES = 10
SUBBRAINS = 100


@dataclass
class Built:
    """What :func:`build` made."""

    db: Database
    service: ConsentService
    directory: StaticDirectory
    enterprises: list[str]
    subbrains: list[str]
    signed: list[SignedReceipt]
    build_seconds: float


def _industry(i: int) -> str:
    return f"industry-{i % INDUSTRIES}"


def build(path: Path, *, enterprises: int, consents: int, seed: int = 7) -> Built:
    """A migrated database at ``path`` holding ``enterprises`` and ``consents``."""
    rng = random.Random(seed)
    started = time.perf_counter()
    db = Database(f"sqlite:///{path}")
    migrate(db, [core.MIGRATIONS, ledger.MIGRATIONS, consent.MIGRATIONS])
    led = ledger.Ledger(
        ledger.SqlLedgerBackend(db),
        Ed25519Signer.generate("ledger"),
        ledger.LedgerConfig(origin=ORIGIN),
    )
    directory = StaticDirectory()
    service = ConsentService(
        db, led, directory, directory, ConsentConfig(origin=ORIGIN), clock=lambda: T0
    )
    names = [f"ent-{i:05d}" for i in range(enterprises)]
    signers = {}
    for name in names:
        signers[name] = Ed25519Signer.generate(name)
        directory.add_enterprise(name, signers[name].public_key)
    subbrains = [f"sb-{i:03d}" for i in range(SUBBRAINS)]
    for i, name in enumerate(subbrains):
        directory.add_requester(RequesterProfile(name, "subbrain", _industry(i)))
    stamp = format_rfc3339(T0 - timedelta(days=30))
    signed: list[SignedReceipt] = []
    grant_rows: list[dict[str, object]] = []
    scope_rows: list[dict[str, object]] = []
    for n in range(consents):
        i = n % enterprises
        owner = names[i]
        if rng.random() < 0.5:
            requester = Requester.group("subbrain", _industry(i))
        else:
            requester = Requester.one(rng.choice(subbrains))
        fields = tuple(rng.sample(FIELDS, rng.randint(1, 3)))
        receipt = ConsentReceipt(
            consent_id=new_consent_id(),
            origin=ORIGIN,
            enterprise=owner,
            public_key=signers[owner].public_key,
            scope=(DatasetScope(f"{owner}.energy", fields),),
            requester=requester,
            purposes=tuple(rng.sample(list(Purpose), rng.randint(1, 3))),
            operations=tuple(rng.sample(list(Operation), rng.randint(1, 4))),
            engines=tuple(rng.sample(list(Engine), rng.randint(1, 2))),
            min_cohort=rng.randint(1, 5),
            valid_from=T0 - timedelta(days=rng.randint(31, 330)),
            valid_until=T0 + timedelta(days=rng.randint(-30, 300)),
            use_limit=rng.choice([None, None, 100, 1000]),
            signed_at=T0 - timedelta(days=331),
        )
        canonical = receipt.canonical()
        one = SignedReceipt(receipt, signers[owner].sign(canonical))
        signed.append(one)
        grant_rows.append(
            {
                "consent_id": receipt.consent_id,
                "enterprise": owner,
                "requester_key": requester.key,
                "receipt": canonical,
                "signature": one.signature,
                "receipt_hash": one.receipt_hash(),
                "valid_from": format_rfc3339(receipt.valid_from),
                "valid_until": format_rfc3339(receipt.valid_until),
                "use_limit": receipt.use_limit,
                "use_count": 0,
                "accepted_at": stamp,
                "ledger_index": n,
            }
        )
        scope_rows.extend(
            {
                "consent_id": receipt.consent_id,
                "dataset": f"{owner}.energy",
                "field": f,
                "requester_key": requester.key,
            }
            for f in fields
        )
    with db.write() as session:
        session.execute(
            insert(DatasetRow),
            [
                {
                    "dataset_id": f"{name}.energy",
                    "owner": name,
                    "fields": json.dumps(sorted(FIELDS)),
                    "classification": Classification.GENERAL.value,
                    "description": None,
                    "created_at": stamp,
                }
                for name in names
            ],
        )
        for start in range(0, len(grant_rows), 20_000):
            session.execute(insert(GrantRow), grant_rows[start : start + 20_000])
        for start in range(0, len(scope_rows), 20_000):
            session.execute(insert(ScopeRow), scope_rows[start : start + 20_000])
    with db.engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
    return Built(db, service, directory, names, subbrains, signed, time.perf_counter() - started)


def random_request(built: Built, rng: random.Random, owners: int) -> ConsentRequest:
    """A request by a random sub-brain over ``owners`` random enterprises' datasets."""
    return ConsentRequest(
        requester=rng.choice(built.subbrains),
        purpose=rng.choice(list(Purpose)),
        operation=rng.choice(list(Operation)),
        engine=rng.choice(list(Engine)),
        datasets=tuple(f"{e}.energy" for e in rng.sample(built.enterprises, owners)),
        fields=(rng.choice(FIELDS),),
    )


def covered_request(built: Built, rng: random.Random) -> ConsentRequest:
    """A request that one random stored consent covers (when it is still valid)."""
    receipt = rng.choice(built.signed).receipt
    if receipt.requester.identity is not None:
        requester = receipt.requester.identity
    else:
        industry = receipt.requester.industry
        requester = rng.choice(
            [s for i, s in enumerate(built.subbrains) if _industry(i) == industry]
        )
    return ConsentRequest(
        requester=requester,
        purpose=rng.choice(receipt.purposes),
        operation=rng.choice(receipt.operations),
        engine=rng.choice(receipt.engines),
        datasets=receipt.datasets(),
        fields=(rng.choice(receipt.scope[0].fields),),
    )


def query_plan(built: Built) -> list[str]:
    """SQLite's plan for the candidate lookup (must use the scope index, never a scan)."""
    with built.db.engine.connect() as conn:
        rows = conn.execute(
            text(
                "EXPLAIN QUERY PLAN SELECT DISTINCT consent_id FROM consent_scope "
                "WHERE dataset IN ('a', 'b') AND requester_key IN ('x', 'y')"
            )
        ).all()
    return [str(r[-1]) for r in rows]


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered), p99


def time_checks(built: Built, *, owners: int, n: int, seed: int = 11) -> tuple[float, float, float]:
    """Median and p99 latency (ms) of ``covering_consents``, and covered owners per request.

    ``owners=0`` asks, each time, for a request that a stored consent covers.
    """
    rng = random.Random(seed)
    samples: list[float] = []
    covered = 0
    for _ in range(n):
        request = random_request(built, rng, owners) if owners else covered_request(built, rng)
        started = time.perf_counter()
        report = built.service.covering_consents(request)
        samples.append((time.perf_counter() - started) * 1000)
        covered += len(report.covered_owners())
    median, p99 = _percentiles(samples)
    return median, p99, covered / n


def time_uses(built: Built, *, n: int) -> tuple[float, float]:
    """Median and p99 (ms) of ``use``: check + count + ledger entry, one fsynced transaction."""
    rng = random.Random(5)
    samples = []
    for k in range(n):
        request = random_request(built, rng, 10)
        started = time.perf_counter()
        built.service.use(request, decision_id=f"bench-{k}")
        samples.append((time.perf_counter() - started) * 1000)
    return _percentiles(samples)


def time_verification(built: Built, *, n: int, rounds: int = 3) -> dict[str, float]:
    """Seconds to verify ``n`` receipt signatures each way (best of ``rounds``, interleaved)."""
    chosen = built.signed[:n]
    keys = {s.receipt.enterprise: s.receipt.public_key for s in chosen}
    stored = [(s.canonical(), s.signature, s.receipt.enterprise) for s in chosen]

    def raw() -> None:
        for message, signature, owner in stored:
            VerifyKey(keys[owner].raw).verify(message, signature)

    def reencode() -> None:
        for one in chosen:
            one.verify(keys[one.receipt.enterprise])

    def check_path() -> None:
        for message, signature, owner in stored:
            if not verify_ed25519(keys[owner], message, signature):
                raise AssertionError("a stored receipt did not verify")
            ConsentReceipt.from_dict(json.loads(message))

    ways = {
        "**peer:** raw PyNaCl `VerifyKey.verify` over the stored bytes": raw,
        "verify stored bytes + strict decode (what a check does per candidate)": check_path,
        "`SignedReceipt.verify` (re-encode RFC 8785, then verify)": reencode,
    }
    best = dict.fromkeys(ways, float("inf"))
    for _ in range(rounds):
        for name, way in ways.items():
            started = time.perf_counter()
            way()
            best[name] = min(best[name], time.perf_counter() - started)
    return best


def main() -> None:
    """Run the benchmark and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--enterprises", type=int, default=10_000)
    parser.add_argument("--consents", type=int, default=100_000)
    parser.add_argument("--checks", type=int, default=2_000)
    parser.add_argument("--verify", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        built = build(Path(tmp) / "bench.db", enterprises=args.enterprises, consents=args.consents)
        print(
            f"built {args.enterprises:,} enterprises, {args.consents:,} signed consents "
            f"in {built.build_seconds:.1f} s"
        )
        print("candidate lookup plan:", "; ".join(query_plan(built)))
        print()
        print("| measurement | median | p99 |")
        print("|---|---|---|")
        for owners, n in ((0, args.checks), (1, args.checks), (10, max(1, args.checks // 4))):
            median, p99, covered = time_checks(built, owners=owners, n=n)
            what = "1 owner, a consent covers it" if owners == 0 else f"{owners} random owner(s)"
            print(
                f"| covering_consents, {what}, {n} requests "
                f"(avg {covered:.2f} owners covered) | {median:.3f} ms | {p99:.3f} ms |"
            )
        median, p99 = time_uses(built, n=200)
        print(
            f"| use (check + count + ledger entry, fsync), 10 owners, 200 | "
            f"{median:.2f} ms | {p99:.2f} ms |"
        )
        n = min(args.verify, len(built.signed))
        print()
        print(f"| verify {n:,} receipt signatures | total | per signature |")
        print("|---|---|---|")
        for name, seconds in time_verification(built, n=n).items():
            print(f"| {name} | {seconds * 1000:.0f} ms | {seconds / n * 1e6:.1f} µs |")
        built.db.dispose()


if __name__ == "__main__":
    main()
