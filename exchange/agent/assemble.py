"""One agent, wired: the exchange client, the pinned ledger key, the key, the source, the state."""

from __future__ import annotations

from core.keys import Ed25519Signer
from exchange.agent.contribute import Contributor
from exchange.agent.journal import AgentState
from exchange.agent.loop import AgentConfig, DataAgent, Say
from exchange.agent.reads import ExchangeReads
from exchange.agent.sources import ColumnMap, FieldReader, Source
from exchange.agent.verify import TaskVerifier, WitnessQuorum
from exchange.client import ExchangeClient
from ledger import NoteVerifier

__all__ = ["assemble_agent"]


def assemble_agent(
    client: ExchangeClient,
    *,
    enterprise: str,
    signer: Ed25519Signer,
    ledger_key: NoteVerifier,
    source: Source,
    state: AgentState,
    columns: ColumnMap | None = None,
    say: Say = print,
    warn: Say | None = None,
    config: AgentConfig | None = None,
    witnesses: WitnessQuorum | None = None,
) -> DataAgent:
    """The data agent of ``enterprise`` speaking through ``client`` (as its token).

    ``ledger_key`` is the verifier key the enterprise was handed out of band;
    ``signer`` its consent key (from its key file); ``witnesses`` the witness
    cosignatures a checkpoint must carry to be trusted (none by default).
    """
    public_key = signer.public_key
    reads = ExchangeReads(client)
    verifier = TaskVerifier(
        reads,
        ledger_key,
        state,
        enterprise=enterprise,
        public_key=public_key,
        witnesses=witnesses,
    )

    def he_context(job_id: str) -> bytes:
        return client.call("GET", f"/v1/agent/jobs/{job_id}/he-context").content

    reader = FieldReader(source, columns or ColumnMap())
    contributor = Contributor(enterprise, reader, he_context, state)
    return DataAgent(
        client,
        enterprise=enterprise,
        signer=signer,
        verifier=verifier,
        contributor=contributor,
        state=state,
        say=say,
        warn=warn or say,
        config=config,
    )
