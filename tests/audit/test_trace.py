"""``ibx audit trace``: a released job's lineage from an operator's export of a real ledger.

The ledger is built once (:mod:`tests.audit.traced_ledger`): a four-eyes policy
activation, signed consents, an HE job contributed to and released. The trace
must name what the ledger says — the decision's index, the policy version and
its two officers, every consent with its signer, the key operations, the
contributors and the result hash — and refuse a job the ledger never decided.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from audit import LedgerExport, NodeKind, TraceNode, TraceNotFoundError, trace_job, write_export
from core.canonical import canonical_bytes
from exchange.cli.audit_verify import entry_types
from tests.audit.traced_ledger import OFFICERS, TracedLedger, ibx, traced_ledger


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> TracedLedger:
    return traced_ledger(tmp_path_factory)


@pytest.fixture(scope="module")
def tree(built: TracedLedger) -> dict[str, Any]:
    code, out, err = ibx("audit", "trace", built.job_id, "--export", str(built.export), "--json")
    assert code == 0, err
    parsed: dict[str, Any] = json.loads(out)
    return parsed


def _nodes(node: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    found = [node] if node["kind"] == kind else []
    for child in node["children"]:
        found.extend(_nodes(child, kind))
    return found


def test_the_tree_names_decision_policy_officers_consents_keys_contributors_result(
    built: TracedLedger, tree: dict[str, Any]
) -> None:
    root = tree["tree"]
    assert tree["job_id"] == built.job_id and tree["state"] == "released"
    [decision] = _nodes(root, "decision")
    assert decision["index"] == built.decision_index
    [policy] = _nodes(root, "policy")
    assert policy["details"]["version"] == built.policy_version
    assert policy["details"]["proposer"] == OFFICERS[0]
    assert policy["details"]["approver"] == OFFICERS[1]
    assert policy["details"]["activator"] == OFFICERS[1]
    steps = _nodes(root, "policy_step")
    assert [s["details"]["step"] for s in steps] == [
        "policy.propose", "policy.test", "policy.approve", "policy.activate",
    ]  # fmt: skip
    assert all(s["details"]["signed"] and s["index"] < decision["index"] for s in steps)
    consents = {c["details"]["enterprise"]: c for c in _nodes(root, "consent")}
    assert {e: c["details"]["consent_id"] for e, c in consents.items()} == built.consents
    for enterprise, node in consents.items():
        assert node["details"]["signer"] == enterprise
        assert node["details"]["signer_key"] == built.keys[enterprise]
        assert node["details"]["key_registered_index"] is not None
        assert node["problem"] is None
    keys = [k["details"]["type"] for k in _nodes(root, "key_operation")]
    assert keys == ["mpc.key.generate", "mpc.key.decrypt", "mpc.key.destroy"]
    contributors = {c["details"]["enterprise"] for c in _nodes(root, "contribution")}
    assert contributors == set(built.consents)
    [result] = _nodes(root, "result")
    assert result["index"] == built.result_index
    assert result["details"]["result_sha256"] == built.result_sha256 == tree["result_sha256"]
    assert not [n for n in _walk(root) if n["problem"]], "a clean job traces without problems"


def _walk(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(n for child in node["children"] for n in _walk(child))]


def test_every_index_in_the_tree_is_the_entry_it_describes(
    built: TracedLedger, tree: dict[str, Any]
) -> None:
    export = LedgerExport.read(built.export)
    types = {e.index: json.loads(e.leaf)["type"] for e in export.entries}
    expected = {
        "decision": "pipeline.decision", "consent": "consent.grant",
        "key_operation": "mpc.key.", "contribution": "pipeline.contribution",
        "result": "pipeline.result", "policy_step": "policy.", "state": "pipeline.job",
    }  # fmt: skip
    seen = 0
    for node in _walk(tree["tree"]):
        prefix = expected.get(node["kind"])
        if prefix is not None:
            assert types[node["index"]].startswith(prefix), node
            seen += 1
    assert seen >= 14


def test_text_tree_shows_each_node_with_its_ledger_index(built: TracedLedger) -> None:
    code, out, err = ibx("audit", "trace", built.job_id, "--export", str(built.export))
    assert code == 0, err
    assert out.splitlines()[0].startswith(f"job {built.job_id}")
    assert f"#{built.decision_index} decision: allowed" in out
    assert f"#{built.result_index} result sha256 {built.result_sha256}" in out
    for officer in OFFICERS:
        assert officer in out
    assert "└── " in out and "├── " in out


def test_the_result_hash_finds_the_same_job(built: TracedLedger) -> None:
    export = LedgerExport.read(built.export)
    by_hash = trace_job(export, built.result_sha256, entry_types=entry_types())
    assert by_hash.job_id == built.job_id
    assert by_hash.to_dict() == trace_job(export, built.job_id).to_dict()


def test_an_unknown_job_is_one_line_and_exit_1(built: TracedLedger) -> None:
    code, out, err = ibx("audit", "trace", "job_" + "0" * 32, "--export", str(built.export))
    assert code == 1
    assert out == ""
    [line] = err.strip().splitlines()
    assert line.startswith("ibx: not on the ledger: no pipeline.decision for job")
    with pytest.raises(TraceNotFoundError):
        trace_job(LedgerExport.read(built.export), "not-a-job")


def test_neither_export_nor_exchange_is_a_usage_error(built: TracedLedger) -> None:
    code, _, err = ibx("audit", "trace", built.job_id)
    assert code == 2
    assert "--export PATH or --exchange URL" in err


def test_a_consent_signed_by_another_key_is_marked(built: TracedLedger, tmp_path: Path) -> None:
    """An export whose grant carries a key the ledger never recorded for its enterprise
    (a forger's): the trace marks that consent (verify is what fails the ledger)."""
    export = LedgerExport.read(built.export)
    target = built.consents["e2"]
    lines = []
    for item in export.entries:
        entry = json.loads(item.leaf)
        if entry["type"] == "consent.grant" and entry["payload"]["consent_id"] == target:
            entry["payload"]["receipt"]["public_key"] = "A" * 43 + "="
        lines.append((item.index, canonical_bytes(entry)))
    forged = tmp_path / "forged.jsonl"
    with forged.open("wb") as stream:
        write_export(stream, export.header, lines, export.checkpoints)
    traced = trace_job(LedgerExport.read(forged), built.job_id)
    marked = [n for n in traced.problems if n.kind is NodeKind.CONSENT]
    assert [n.details["consent_id"] for n in marked] == [target]
    assert "is not a key the ledger recorded for e2" in str(marked[0].problem)
    assert isinstance(traced.root, TraceNode)
    code, out, _ = ibx("audit", "trace", built.job_id, "--export", str(forged))
    assert code == 0 and "[!]" in out and "run ibx audit verify" in out
