"""Privacy-compute benchmark: HE next to python-paillier and numpy, MPC with 3 processes, PSI.

    .venv/bin/python benchmarks/bench_mpc.py            # the full run (several minutes)
    .venv/bin/python benchmarks/bench_mpc.py --quick    # 10 and 100 only

HE: sum/mean over 10, 100, 1,000 enterprises of 1 and 4,096 values (CKKS,
N=8192; one ciphertext per enterprise either way). "engine" is the
aggregator's checks (job, key fingerprint, SHA-256 replay digest,
deserialisation and shape of every ciphertext) plus
``KeyCustodian.finish_job``: the guard's approval, opening the job key,
loading the secret context, the custodian's own sum, one decryption, the
range and check-slot checks, the key's destruction and the two ledger
entries, all in one durable commit. "raw ops" times the TenSEAL calls the
engine makes, bare: loading a secret context of the same form, deserialising
each of the same ciphertexts once, the additions and one decryption (under
a key of the benchmark's own, so the decrypted values are noise; the costs
are the same). "raw min" is the same without the secret context load.
Paillier (phe, 3,072-bit modulus ≈ 128-bit security): the same aggregation
(n-1 additions and one decryption per value), measured in full for 1 value;
for 4,096 values measured in full on 64 of them and scaled by 64 (a full run
would take hours; the values are independent). numpy: the plaintext floor.

HE variance (exact: values quantised, split into limbs, summed under BFV;
docs/adr/0007-he-accuracy.md) next to the mean of the same data through the
same engine in the same run (CKKS), at 1 and 682 values per enterprise (682
values × 12 limbs fill one BFV ciphertext); checked against exact fractions.

MPC: three party processes over TLS on this machine; sum+mean, and a
benchmarking round (percentile ranks for every enterprise plus mean and
median for the requester). Bytes are the parties' total sent; memory is the
largest party's peak RSS.

PSI: ECDH-PSI, 10,000 × 10,000 items, both sides learning the overlap size.
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import statistics
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import tenseal as ts
from phe import paillier

import core
import ledger
import mpc
from core.db import Database, migrate
from core.keyring import KeyRing
from core.keys import MasterKey
from mpc.hazmat import he as raw

PHE_BITS = 3072
PHE_SAMPLE = 64
"""Values of a 4,096-value vector Paillier aggregates in full; the time is scaled up."""


def _rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def _ratio(value: float) -> str:
    return f"{value:.2f}x" if value < 10 else f"{value:.0f}x"


def _custodian(work: Path) -> tuple[mpc.KeyCustodian, mpc.ReleaseGuard]:
    db = Database(f"sqlite:///{work / 'bench.db'}")
    migrate(db, [core.MIGRATIONS, ledger.MIGRATIONS, mpc.MIGRATIONS])
    master = MasterKey(b"\x01\x02\x03\x04\x05\x06\x07\x08" * 4)
    log = ledger.Ledger(
        ledger.SqlLedgerBackend(db),
        KeyRing(db, master).get_or_create("ledger"),
        ledger.LedgerConfig(origin="bench.ibx.localhost/ledger"),
    )
    guard = mpc.ReleaseGuard(db)
    return mpc.KeyCustodian(db, master, log, guard), guard


class _Paillier:
    """Per-operation costs of python-paillier, measured once."""

    def __init__(self) -> None:
        self.public, self.private = paillier.generate_paillier_keypair(n_length=PHE_BITS)
        t = time.perf_counter()
        self.pool = [self.public.encrypt(float(v)) for v in (1.5, 2.5, 3.5, 4.5)]
        self.encrypt_s = (time.perf_counter() - t) / 4
        acc = self.pool[0]
        t = time.perf_counter()
        for i in range(2000):
            acc = acc + self.pool[i % 4]
        self.add_s = (time.perf_counter() - t) / 2000
        t = time.perf_counter()
        for c in self.pool[:2]:
            self.private.decrypt(c)
        self.decrypt_s = (time.perf_counter() - t) / 2
        self.ciphertext_bytes = 2 * PHE_BITS // 8

    def aggregate(self, n: int, length: int) -> tuple[float, str]:
        measured = min(length, PHE_SAMPLE)
        t = time.perf_counter()
        for _ in range(measured):
            acc = self.pool[0]
            for i in range(n - 1):
                acc = acc + self.pool[i % 4]
            self.private.decrypt(acc)
        elapsed = time.perf_counter() - t
        if measured == length:
            return elapsed, "measured"
        return elapsed * length / measured, f"{measured} values measured, ×{length // measured}"


@dataclass(frozen=True)
class _HeRound:
    encrypt_s: float
    engine_s: float
    raw_s: float
    raw_min_s: float
    he_bytes: int


def _he_round(
    custodian: mpc.KeyCustodian, guard: mpc.ReleaseGuard, data: np.ndarray, job_id: str
) -> _HeRound:
    """One job end to end: encrypt, the engine's aggregation, then the bare TenSEAL baseline."""
    n, length = data.shape
    job = custodian.create_job(
        mpc.HeJobSpec(job_id, mpc.HeOperation.MEAN, length=length, max_contributors=n)
    )
    encryptor = mpc.HeContributor(job)
    t = time.perf_counter()
    contributions = [encryptor.encrypt(f"e{i:04d}", row.tolist()) for i, row in enumerate(data)]
    encrypt_s = (time.perf_counter() - t) / n
    assert all(len(c.chunks) == 1 for c in contributions)  # one ciphertext per enterprise

    subject = mpc.ReleaseSubject("bench", ("values",))
    request = mpc.ReleaseRequest(
        job_id, "bench", f"bench-{job_id}", subject, mpc.ReleasePolicy(min_cohort=2)
    )
    t = time.perf_counter()
    aggregator = mpc.HeAggregator(job)
    for c in contributions:
        aggregator.add(c)
    result = custodian.finish_job(request, aggregator.aggregate())
    engine_s = time.perf_counter() - t
    del aggregator
    assert guard.approval(job_id) is not None
    assert np.max(np.abs(np.array(result.values) - data.mean(axis=0))) < 1e-3

    raw_s, raw_min_s = _raw_ops(contributions)
    he_bytes = sum(len(c) for x in contributions for c in x.chunks)
    return _HeRound(encrypt_s, engine_s, raw_s, raw_min_s, he_bytes)


def bench_he(sizes: list[int], work: Path, reps: int) -> None:
    custodian, guard = _custodian(work)
    peer = _Paillier()
    print(
        f"\nPaillier {PHE_BITS}-bit per operation: encrypt {peer.encrypt_s * 1e3:.1f} ms, "
        f"add {peer.add_s * 1e3:.3f} ms, decrypt {peer.decrypt_s * 1e3:.1f} ms"
    )
    print(
        f"\nHE times are medians of {reps} jobs (a fresh key each, after one untimed warm-up "
        "job); engine/raw ops is the median of each job's own ratio, with its range."
    )
    print(
        "\n| enterprises × values | HE encrypt (per enterprise) | HE engine aggregate | "
        "raw ops | engine/raw ops (range) | raw min | HE bytes | Paillier aggregate | "
        "Paillier bytes | HE speed-up | numpy | process peak RSS |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(1)
    # one untimed job first: the process's first job also pays one-off costs (SQL statement
    # compilation, first TenSEAL allocations) that a running custodian does not
    _he_round(custodian, guard, rng.uniform(0, 1000, (10, 1)), "bench-warm-up")
    for length in (1, 4096):
        for n in sizes:
            data = rng.uniform(0, 1000, (n, length))
            rounds = [
                _he_round(custodian, guard, data, f"bench-{n}-{length}-{rep}")
                for rep in range(reps)
            ]
            engine_s = statistics.median(r.engine_s for r in rounds)
            ratios = [r.engine_s / r.raw_s for r in rounds]
            t = time.perf_counter()
            data.sum(axis=0) / n
            numpy_s = time.perf_counter() - t
            phe_s, how = peer.aggregate(n, length)
            phe_bytes = n * length * peer.ciphertext_bytes
            print(
                f"| {n} × {length} "
                f"| {statistics.median(r.encrypt_s for r in rounds) * 1e3:.1f} ms "
                f"| {engine_s * 1e3:.1f} ms "
                f"| {statistics.median(r.raw_s for r in rounds) * 1e3:.1f} ms "
                f"| {statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f}) "
                f"| {statistics.median(r.raw_min_s for r in rounds) * 1e3:.1f} ms "
                f"| {rounds[0].he_bytes / 1e6:.2f} MB | {phe_s:.2f} s ({how}) "
                f"| {phe_bytes / 1e6:.2f} MB | {_ratio(phe_s / engine_s)} "
                f"| {numpy_s * 1e6:.0f} µs | {_rss_mb():.0f} MB |",
                flush=True,
            )


def _sum_decrypt(
    public: ts.Context, secret: ts.Context, contributions: list[mpc.HeContribution]
) -> None:
    """Deserialise every ciphertext once, add them up, decrypt once: bare TenSEAL."""
    totals: list[ts.CKKSVector] = []
    for contribution in contributions:
        for i, chunk in enumerate(contribution.chunks):
            vector = ts.ckks_vector_from(public, chunk)
            vector.size()  # the aggregator's shape check
            if i == len(totals):
                totals.append(vector)
            else:
                totals[i] += vector
    key = secret.secret_key()
    for vector in totals:
        vector.decrypt(key)


def _raw_ops(contributions: list[mpc.HeContribution]) -> tuple[float, float]:
    """The TenSEAL calls the engine makes, timed bare; and the same without the key load.

    The job's own key stays with the custodian, so the baseline uses a key
    pair of its own with the same parameters, in the same stored form (secret
    key without the public key): deserialising and adding the very same
    ciphertexts costs the same under any context of these parameters, and
    decrypting the sum with another key costs the same (it yields noise).
    """
    ctx = raw.new_secret_context(raw.HeScheme.CKKS)
    public = raw.public_context(ctx)
    stored = raw.secret_bytes(ctx)
    t = time.perf_counter()
    secret = raw.load_context(stored)
    _sum_decrypt(public, secret, contributions)
    raw_s = time.perf_counter() - t
    t = time.perf_counter()
    _sum_decrypt(public, secret, contributions)
    return raw_s, time.perf_counter() - t


def bench_mpc(sizes: list[int], work: Path) -> None:
    deployment = mpc.MpcDeployment.create(work / "parties", now=dt.datetime.now(dt.UTC))
    runner = mpc.MpcRunner(deployment, mpc.RunnerConfig(deadline=1800))
    print(
        "\n| inputs | job | time (incl. process start, TLS) | bytes sent "
        "| peak RSS (largest party) |"
    )
    print("|---|---|---|---|---|")
    rng = np.random.default_rng(2)
    for n in sizes:
        values = rng.uniform(10, 5000, n)
        for label, spec, ranks in (
            (
                "sum + mean",
                mpc.MpcJobSpec(f"s{n}", (mpc.MpcStatistic.SUM, mpc.MpcStatistic.MEAN)),
                False,
            ),
            (
                "benchmarking round (ranks + mean + median)",
                mpc.MpcJobSpec(
                    f"r{n}", (mpc.MpcStatistic.MEAN, mpc.MpcStatistic.MEDIAN), percentile_ranks=True
                ),
                True,
            ),
        ):
            dealer = mpc.ShareDealer(spec.job_id, deployment.box_public_keys, deployment.threshold)
            dealt = [
                dealer.deal(f"e{i}", float(v), with_rank_key=ranks) for i, v in enumerate(values)
            ]
            t = time.perf_counter()
            result = runner.run(spec, dealt)
            elapsed = time.perf_counter() - t
            mean = result.statistic(mpc.MpcStatistic.MEAN)[0]
            assert abs(mean - values.mean()) <= 2**-15 * values.mean() + 2**-14
            if ranks:
                own = dealt[0].rank_key
                assert own is not None
                expected = 100 * np.sum(values < values[0]) / (n - 1)
                assert abs(own.percentile(result.rank_tags) - expected) < 1e-9
            print(
                f"| {n} | {label} | {elapsed:.2f} s | {result.bytes_sent / 1e6:.2f} MB | "
                f"{result.peak_party_rss / 2**20:.0f} MB |",
                flush=True,
            )


def bench_psi(size: int) -> None:
    a = [f"91330100MA{i:08d}" for i in range(size)]
    b = [f"91330100MA{i:08d}" for i in range(size // 2, size // 2 + size)]
    t = time.perf_counter()
    alice = mpc.PsiParty("bench", a, mpc.PsiMode.CARDINALITY)
    bob = mpc.PsiParty("bench", b, mpc.PsiMode.CARDINALITY)
    to_bob, to_alice = alice.blinded(), bob.blinded()
    back_a, back_b = bob.reblind(to_bob), alice.reblind(to_alice)
    left, right = alice.finish(back_a), bob.finish(back_b)
    elapsed = time.perf_counter() - t
    assert left.size == right.size == len(set(a) & set(b))
    sent = 32 * (
        len(to_bob.points) + len(to_alice.points) + len(back_a.points) + len(back_b.points)
    )
    t = time.perf_counter()
    plain = len(set(a) & set(b))
    plain_s = time.perf_counter() - t
    assert plain == left.size
    print("\n| PSI | time | bytes through the relay | process peak RSS | plain set intersection |")
    print("|---|---|---|---|---|")
    print(
        f"| {size:,} × {size:,}, both learn the size | {elapsed:.2f} s | {sent / 1e6:.2f} MB | "
        f"{_rss_mb():.0f} MB | {plain_s * 1e3:.1f} ms |"
    )


def _engine_job(
    custodian: mpc.KeyCustodian, operation: mpc.HeOperation, data: np.ndarray, job_id: str
) -> tuple[float, float, int, mpc.HeResult]:
    """Encrypt (per enterprise), aggregate + finish_job, bytes: one job end to end."""
    n, length = data.shape
    spec = mpc.HeJobSpec(job_id, operation, length=length, max_contributors=max(n, 2), bound=1e9)
    job = custodian.create_job(spec)
    encryptor = mpc.HeContributor(job)
    t = time.perf_counter()
    contributions = [encryptor.encrypt(f"e{i:04d}", row.tolist()) for i, row in enumerate(data)]
    encrypt_s = (time.perf_counter() - t) / n
    subject = mpc.ReleaseSubject("bench", ("values",))
    request = mpc.ReleaseRequest(
        job_id, "bench", f"bench-{job_id}", subject, mpc.ReleasePolicy(min_cohort=2)
    )
    t = time.perf_counter()
    aggregator = mpc.HeAggregator(job)
    for c in contributions:
        aggregator.add(c)
    result = custodian.finish_job(request, aggregator.aggregate())
    engine_s = time.perf_counter() - t
    return encrypt_s, engine_s, sum(len(b) for c in contributions for b in c.chunks), result


def bench_he_variance(sizes: list[int], work: Path, reps: int) -> None:
    custodian, _ = _custodian(work)
    print(
        "\n| enterprises × values | variance: encrypt (per enterprise) | variance: engine "
        "| variance bytes | mean: encrypt | mean: engine | mean bytes | engine ratio "
        "| worst relative error of the variance |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(2)
    _engine_job(custodian, mpc.HeOperation.VARIANCE, rng.uniform(0, 1, (3, 1)), "var-warm-up")
    for length in (1, 682):
        for n in sizes:
            # large and close together: 4.2e8 ± 420 (spread 1e-6 of the mean)
            data = 4.2e8 + rng.uniform(-420, 420, (n, length))
            var_runs, mean_runs = [], []
            for rep in range(reps):
                var_runs.append(
                    _engine_job(custodian, mpc.HeOperation.VARIANCE, data, f"v-{n}-{length}-{rep}")
                )
                mean_runs.append(
                    _engine_job(custodian, mpc.HeOperation.MEAN, data, f"m-{n}-{length}-{rep}")
                )
            exact = [
                _exact_pvariance(data[:, c].tolist()) for c in range(min(length, 8))
            ]  # the first columns: Fractions over 1,000 × 682 values would dominate the run
            got = var_runs[0][3].values[length:]
            worst = max(abs(Fraction(g) - e) / e for g, e in zip(got, exact, strict=False))
            v_engine = statistics.median(r[1] for r in var_runs)
            m_engine = statistics.median(r[1] for r in mean_runs)
            print(
                f"| {n} × {length} "
                f"| {statistics.median(r[0] for r in var_runs) * 1e3:.1f} ms "
                f"| {v_engine * 1e3:.0f} ms | {var_runs[0][2] / 1e6:.2f} MB "
                f"| {statistics.median(r[0] for r in mean_runs) * 1e3:.1f} ms "
                f"| {m_engine * 1e3:.0f} ms | {mean_runs[0][2] / 1e6:.2f} MB "
                f"| {v_engine / m_engine:.2f} | {float(worst):.1e} |",
                flush=True,
            )


def _exact_pvariance(column: list[float]) -> Fraction:
    xs = [Fraction(x) for x in column]
    mean = sum(xs, Fraction(0)) / len(xs)
    return sum(((x - mean) ** 2 for x in xs), Fraction(0)) / len(xs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="10 and 100 only; PSI 2,000")
    parser.add_argument("--reps", type=int, default=5, help="HE jobs per size (medians)")
    args = parser.parse_args()
    sizes = [10, 100] if args.quick else [10, 100, 1000]
    work = Path(tempfile.mkdtemp(prefix="ibx-bench-mpc-"))
    print(f"# bench_mpc {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, work dir {work}")
    bench_psi(2_000 if args.quick else 10_000)  # first: its peak RSS is then its own
    bench_mpc(sizes, work)
    bench_he(sizes, work, args.reps)
    bench_he_variance(sizes, work, min(args.reps, 3))


if __name__ == "__main__":
    main()
