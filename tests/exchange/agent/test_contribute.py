"""The agent's payloads, per engine, opened on the other side with the real engines' keys."""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path

import pytest
from nacl.public import PrivateKey

import mpc
from consent import Operation, Purpose
from exchange.agent import AgentState, Contributor, CsvSource, FieldReader, Task, TaskRefused
from exchange.agent.contribute import reduce_column
from exchange.pipeline.request import ComputeRequest, EngineName, Parameters, Reduce
from exchange.pipeline.statements import new_job_id
from mpc.hazmat import he as raw
from mpc.hazmat import shamir
from mpc.sharing import open_envelopes


def _task(
    job_id: str,
    engine: EngineName,
    operation: Operation,
    material: Mapping[str, object],
    *,
    round_no: int = 1,
    fields: tuple[str, ...] = ("energy_kwh",),
    parameters: Parameters | None = None,
) -> Task:
    request = ComputeRequest(
        purpose=Purpose.BENCHMARKING,
        operation=operation,
        fields=fields,
        datasets=("ds",),
        engine=engine,
        parameters=parameters or Parameters(),
    )
    return Task.from_dict(
        {
            "job_id": job_id,
            "round": round_no,
            "decision_index": 1,
            "engine": engine.value,
            "request": request.to_dict(),
            "dataset": "ds",
            "consent_id": "cst_" + "0" * 32,
            "deadline": None,
            "material": material,
        }
    )


def _reader(tmp_path: Path, body: str) -> FieldReader:
    path = tmp_path / "data.csv"
    path.write_text(body)
    return FieldReader(CsvSource(path))


def test_he_mean_encrypts_the_column_under_the_served_context(tmp_path: Path) -> None:
    job_id = new_job_id()
    spec = mpc.HeJobSpec(job_id, mpc.HeOperation.MEAN, length=3, bound=1000.0)
    secret = raw.new_secret_context(spec.scheme)
    public = raw.public_bytes(raw.public_context(secret))
    material = {"spec": spec.to_dict(), "context_sha256": hashlib.sha256(public).hexdigest()}
    reader = _reader(tmp_path, "energy_kwh\n1.5\n-2.25\n300\n")
    contributor = Contributor("cathode-co", reader, lambda _job: public)
    task = _task(job_id, EngineName.HE, Operation.MEAN, material, parameters=Parameters(length=3))
    made = contributor.contribute(task, EngineName.HE)
    chunks = tuple(base64.b64decode(c) for c in made.payload["chunks"])  # type: ignore[arg-type,union-attr]
    contribution = mpc.HeContribution(
        job_id, "cathode-co", str(made.payload["key_fingerprint"]), chunks
    )
    assert made.payload_sha256 == contribution.digest
    job = mpc.HeJobPublic(spec, public)
    aggregator = mpc.HeAggregator(job)
    aggregator.add(contribution)  # the engine's own checks: this job's key, the right shape
    vectors = [raw.load_vector(secret, spec.scheme, c) for c in chunks]
    slots = raw.decrypt_chunks(vectors, secret)
    decoded = [math.ldexp(v, -spec.ckks_shift) for v in slots[:3]]
    assert decoded == pytest.approx([1.5, -2.25, 300.0], abs=1e-6)


def test_he_refuses_a_context_that_is_not_the_named_one(tmp_path: Path) -> None:
    job_id = new_job_id()
    spec = mpc.HeJobSpec(job_id, mpc.HeOperation.SUM, length=1)
    public = raw.public_bytes(raw.public_context(raw.new_secret_context(spec.scheme)))
    other = raw.public_bytes(raw.public_context(raw.new_secret_context(spec.scheme)))
    material = {"spec": spec.to_dict(), "context_sha256": hashlib.sha256(public).hexdigest()}
    contributor = Contributor("c", _reader(tmp_path, "energy_kwh\n1\n"), lambda _job: other)
    task = _task(job_id, EngineName.HE, Operation.SUM, material)
    with pytest.raises(TaskRefused, match="not the one the task names"):
        contributor.contribute(task, EngineName.HE)


def test_he_refuses_a_spec_of_another_job_or_operation(tmp_path: Path) -> None:
    contributor = Contributor("c", _reader(tmp_path, "energy_kwh\n1\n"), lambda _job: b"")
    job_id = new_job_id()
    other = mpc.HeJobSpec(new_job_id(), mpc.HeOperation.MEAN)
    with pytest.raises(TaskRefused, match="spec is for job"):
        contributor.contribute(
            _task(
                job_id,
                EngineName.HE,
                Operation.MEAN,
                {"spec": other.to_dict(), "context_sha256": ""},
            ),
            EngineName.HE,
        )
    variance = mpc.HeJobSpec(job_id, mpc.HeOperation.VARIANCE)
    with pytest.raises(TaskRefused, match="computes variance"):
        contributor.contribute(
            _task(
                job_id,
                EngineName.HE,
                Operation.MEAN,
                {"spec": variance.to_dict(), "context_sha256": ""},
            ),
            EngineName.HE,
        )


def test_he_refuses_a_column_of_the_wrong_length(tmp_path: Path) -> None:
    job_id = new_job_id()
    spec = mpc.HeJobSpec(job_id, mpc.HeOperation.MEAN, length=3)
    public = raw.public_bytes(raw.public_context(raw.new_secret_context(spec.scheme)))
    material = {"spec": spec.to_dict(), "context_sha256": hashlib.sha256(public).hexdigest()}
    contributor = Contributor("c", _reader(tmp_path, "energy_kwh\n1\n2\n"), lambda _job: public)
    task = _task(job_id, EngineName.HE, Operation.MEAN, material, parameters=Parameters(length=3))
    with pytest.raises(TaskRefused, match="has 2 rows, the job takes 3"):
        contributor.contribute(task, EngineName.HE)


def test_mpc_deals_one_sealed_share_per_party_and_keeps_the_rank_tag(tmp_path: Path) -> None:
    job_id = new_job_id()
    spec = mpc.MpcJobSpec(job_id, percentile_ranks=True, bound=1000.0)
    keys = [PrivateKey.generate() for _ in range(3)]
    material = {
        "spec": spec.to_dict(),
        "box_public_keys": [base64.b64encode(bytes(k.public_key)).decode() for k in keys],
        "threshold": 1,
        "ranks": True,
    }
    contributor = Contributor(
        "anode-co", _reader(tmp_path, "energy_kwh\n10\n20\n60\n"), lambda _j: b""
    )
    made = contributor.contribute(
        _task(job_id, EngineName.MPC, Operation.PERCENTILE_RANK, material), EngineName.MPC
    )
    assert made.rank_tag is not None
    shares = [mpc.SealedShare.from_dict(s) for s in made.payload["shares"]]  # type: ignore[arg-type,union-attr]
    points = []
    for party, key in enumerate(keys):
        opened, refused = open_envelopes(spec, party, bytes(key), [shares[party]])
        assert not refused
        assert opened[0].tag_share is not None
        points.append((party + 1, opened[0].value_share))
    value = (
        Fraction(shamir.decode_signed(shamir.reconstruct(points[:2]))) * spec.encoding.resolution
    )
    assert float(value) == pytest.approx(30.0)  # the mean of the column (reduce: mean)


def test_psi_two_agents_find_their_overlap_across_a_restart(tmp_path: Path) -> None:
    job_id = new_job_id()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    state_a = AgentState.open(tmp_path / "a" / "state")
    a = Contributor("a", _reader(tmp_path / "a", "energy_kwh\nx\ny\nz\n"), lambda _j: b"", state_a)
    b = Contributor("b", _reader(tmp_path / "b", "energy_kwh\ny\nz\nw\nv\n"), lambda _j: b"")
    first = {"session": job_id, "parties": 2}
    op = Operation.SET_INTERSECTION_SIZE
    a1 = a.contribute(_task(job_id, EngineName.PSI, op, first), EngineName.PSI)
    b1 = b.contribute(_task(job_id, EngineName.PSI, op, first), EngineName.PSI)
    assert state_a.psi_key(job_id) is not None
    # agent a restarts between rounds: a fresh Contributor over the same state dir
    a = Contributor("a", _reader(tmp_path / "a", "energy_kwh\nx\ny\nz\n"), lambda _j: b"", state_a)
    a2 = a.contribute(
        _task(
            job_id,
            EngineName.PSI,
            op,
            {"session": job_id, "points": b1.payload["points"]},
            round_no=2,
        ),
        EngineName.PSI,
    )
    b2 = b.contribute(
        _task(
            job_id,
            EngineName.PSI,
            op,
            {"session": job_id, "points": a1.payload["points"]},
            round_no=2,
        ),
        EngineName.PSI,
    )
    assert state_a.psi_key(job_id) is None  # forgotten after the last round

    def blinded(made: object) -> mpc.BlindedSet:
        points = made.payload["points"]  # type: ignore[attr-defined]
        return mpc.BlindedSet(job_id, tuple(base64.b64decode(p) for p in points))

    assert mpc.common_size([blinded(a2), blinded(b2)]) == 2


def test_psi_without_the_round_one_key_refuses(tmp_path: Path) -> None:
    job_id = new_job_id()
    contributor = Contributor("a", _reader(tmp_path, "energy_kwh\nx\n"), lambda _j: b"")
    task = _task(
        job_id,
        EngineName.PSI,
        Operation.SET_INTERSECTION_SIZE,
        {"session": job_id, "points": []},
        round_no=2,
    )
    with pytest.raises(TaskRefused, match="no PSI key"):
        contributor.contribute(task, EngineName.PSI)


def test_reduce_column() -> None:
    assert reduce_column((1.0, 2.0, 6.0), Reduce.SUM) == 9.0
    assert reduce_column((1.0, 2.0, 6.0), Reduce.MEAN) == 3.0
    assert reduce_column((1.0, 2.0, 6.0), Reduce.LAST) == 6.0
    with pytest.raises(TaskRefused, match="no rows"):
        reduce_column((), Reduce.MEAN)


def test_he_keeps_a_context_by_its_sha256_and_never_a_wrong_one(tmp_path: Path) -> None:
    job_id = new_job_id()
    spec = mpc.HeJobSpec(job_id, mpc.HeOperation.SUM, length=1)
    public = raw.public_bytes(raw.public_context(raw.new_secret_context(spec.scheme)))
    other = raw.public_bytes(raw.public_context(raw.new_secret_context(spec.scheme)))
    material = {"spec": spec.to_dict(), "context_sha256": hashlib.sha256(public).hexdigest()}
    served = [other, public]
    fetched: list[str] = []

    def fetch(job: str) -> bytes:
        fetched.append(job)
        return served.pop(0) if served else public

    contributor = Contributor("c", _reader(tmp_path, "energy_kwh\n1\n"), fetch)
    task = _task(job_id, EngineName.HE, Operation.SUM, material)
    with pytest.raises(TaskRefused, match="not the one the task names"):
        contributor.contribute(task, EngineName.HE)  # the wrong one is not kept
    first = contributor.contribute(task, EngineName.HE)
    second = contributor.contribute(task, EngineName.HE)  # the kept one: no fetch
    assert fetched == [job_id, job_id]
    for made in (first, second):
        chunks = made.payload["chunks"]
        assert isinstance(chunks, list)
        assert made.he_chunks == tuple(base64.b64decode(str(c)) for c in chunks)
