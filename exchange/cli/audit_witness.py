"""``ibx audit witness``: cosign the exchange's checkpoints, or raise a fork.

Thin: the logic is :class:`audit.witness.Witness`; this module speaks HTTPS
to the exchange for it (:class:`HttpWitnessTransport`) and runs the rounds.
"""

from __future__ import annotations

import base64
import binascii
import signal
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from exchange.cli._api_client import user_client
from exchange.cli._context import (
    CA_BUNDLE_OPTION,
    CLIENT_CERT_OPTION,
    CLIENT_KEY_OPTION,
    EXCHANGE_OPTION,
    TOKEN_OPTION,
)
from exchange.error_table import ExitCode, RemoteRefusalError

if TYPE_CHECKING:
    from audit.witness import Witness
    from exchange.client import ExchangeClient
    from ledger import LedgerEntry, NoteVerifier

__all__ = ["HttpWitnessTransport", "witness"]


class HttpWitnessTransport:
    """:class:`audit.witness.WitnessTransport` over the exchange's API, as the witness."""

    def __init__(self, client: ExchangeClient) -> None:
        self._client = client

    def checkpoint(self) -> str:
        """``GET /v1/ledger/checkpoint``."""
        return self._client.call("GET", "/v1/ledger/checkpoint").text

    def witnessed(self) -> str | None:
        """``GET /v1/ledger/checkpoint?witnessed=true``; None before any cosignature.

        Raises:
            RemoteRefusalError: another refusal than 404.
        """
        try:
            return self._client.call(
                "GET", "/v1/ledger/checkpoint", params={"witnessed": "true"}
            ).text
        except RemoteRefusalError as exc:
            if exc.status == 404:
                return None
            raise

    def consistency(self, first: int, second: int) -> tuple[bytes, ...]:
        """``GET /v1/ledger/proof/consistency`` (a malformed answer is an empty proof,
        which then does not verify).

        Raises:
            RemoteRefusalError: the exchange refused.
        """
        body: Any = self._client.get("/v1/ledger/proof/consistency", first=first, second=second)
        try:
            return tuple(base64.b64decode(h, validate=True) for h in body["hashes"])
        except (KeyError, TypeError, ValueError, binascii.Error):
            return ()

    def entries(self, start: int, stop: int) -> Sequence[LedgerEntry]:
        """``GET /v1/ledger/entries`` for ``[start, stop)``.

        Raises:
            RemoteRefusalError: the exchange refused.
        """
        from core.canonical import canonical_bytes
        from ledger import LedgerEntry

        body: Any = self._client.get("/v1/ledger/entries", start=start, limit=stop - start)
        return [
            LedgerEntry.from_leaf_input(canonical_bytes(item["entry"])) for item in body["entries"]
        ]

    def post_cosignature(self, note: str) -> None:
        """``POST /v1/ledger/cosignatures`` (text/plain).

        Raises:
            RemoteRefusalError: the exchange refused.
        """
        self._client.call(
            "POST",
            "/v1/ledger/cosignatures",
            content=note.encode(),
            headers={"Content-Type": "text/plain; charset=utf-8"},
        )

    def post_fork(
        self, checkpoints: Sequence[str], consistency: Sequence[bytes], reason: str
    ) -> None:
        """``POST /v1/ledger/forks``.

        Raises:
            RemoteRefusalError: the exchange refused.
        """
        self._client.post(
            "/v1/ledger/forks",
            {
                "checkpoints": list(checkpoints),
                "consistency": [base64.b64encode(h).decode() for h in consistency],
                "reason": reason[:500],
            },
        )


def _ledger_key(value: str) -> NoteVerifier:
    from ledger import CheckpointError, NoteVerifier

    path = Path(value)
    text = path.read_text() if path.is_file() else value
    try:
        return NoteVerifier.from_vkey(text)
    except CheckpointError as exc:
        raise typer.BadParameter(f"--ledger-vkey: not a ledger verifier key ({exc})") from exc


def witness(
    ctx: typer.Context,
    *,
    state: Path = typer.Option(  # noqa: B008
        ..., "--state", help="state dir (0700): the kept checkpoint, fork evidence"
    ),
    key: Path = typer.Option(  # noqa: B008
        ..., "--key", help="the witness's key file (ibx identity keygen): its cosignature key"
    ),
    ledger_vkey: str = typer.Option(
        ...,
        "--ledger-vkey",
        help="the ledger's verifier key (C2SP vkey), or a file holding it, obtained out of "
        "band: every checkpoint must be signed by it",
    ),
    once: bool = typer.Option(False, "--once", help="one round, then exit"),
    interval: float = typer.Option(
        60.0, "--interval", min=0.1, help="seconds between rounds (without --once)"
    ),
    max_backoff: float = typer.Option(
        60.0, "--max-backoff", min=0.1, help="the longest wait between reconnection attempts"
    ),
    token: str | None = TOKEN_OPTION,
    exchange: str | None = EXCHANGE_OPTION,
    ca_bundle: Path | None = CA_BUNDLE_OPTION,
    client_cert: Path | None = CLIENT_CERT_OPTION,
    client_key: Path | None = CLIENT_KEY_OPTION,
) -> None:
    """Witness the ledger: verify each new checkpoint extends the kept one, cosign, post.

    Each round fetches the checkpoint, verifies it with --ledger-vkey and its
    consistency with the kept one, cosigns it (C2SP tlog-cosignature) and posts
    the cosignature (POST /v1/ledger/cosignatures). A fork or rollback prints
    one line 'FORK ...', keeps both checkpoints and the proof in STATE/forks/,
    reports it to the exchange (a witness.fork alert) and exits 5; the witness
    then cosigns nothing until STATE/fork is removed. Outages are waited out
    with backoff (one line when one starts, one when it ends).
    """
    from audit.witness import ForkDetected, Witness, WitnessError, WitnessState
    from consent import EnterpriseKey

    pinned = _ledger_key(ledger_vkey)
    signer = EnterpriseKey.load(key).signer
    witness_state = WitnessState.open(state)
    client = user_client(
        ctx,
        token,
        exchange=exchange,
        ca_bundle=ca_bundle,
        client_cert=client_cert,
        client_key=client_key,
    )
    with client:
        me = client.get("/v1/me")
        if me.get("role") != "witness":
            raise typer.BadParameter(
                f"the token is {me.get('name')}'s, a {me.get('role')}: a witness cosigns with "
                "a witness identity's token"
            )
        name = str(me["name"])
        runner = Witness(
            HttpWitnessTransport(client),
            witness_state,
            name=name,
            signer=signer,
            ledger_key=pinned,
        )

        def say(line: str) -> None:
            typer.echo(f"ibx audit witness {name}: {line}")

        say(f"cosigning as {runner.verifier.to_vkey()} (give agents this --witness key)")

        try:
            if once:
                _round(runner, say)
                return
            _loop(runner, say, interval=interval, max_backoff=max_backoff)
        except ForkDetected as exc:
            typer.echo(f"FORK {pinned.name}: {exc}")
            raise typer.Exit(ExitCode.VERIFICATION_FAILED) from exc
        except WitnessError as exc:
            typer.echo(f"ibx audit witness {name}: {exc}", err=True)
            raise typer.Exit(ExitCode.VERIFICATION_FAILED) from exc


def _round(runner: Witness, say: Callable[[str], None], last: int | None = None) -> int:
    """One round; its lines (a checkpoint not cosigned only when it is new since
    ``last``, the size the previous round saw). The size seen."""
    result = runner.round()
    for size in result.cosigned:
        say(f"cosigned checkpoint {size}")
    if result.skipped is not None and result.size != last:
        say(f"checkpoint {result.size} verified, not cosigned: {result.skipped}")
    return result.size


def _outage(exc: Exception) -> str | None:
    """Why ``exc`` is an outage (wait and retry), or None when it is a refusal to raise."""
    import httpx

    if isinstance(exc, httpx.TransportError):
        return f"{type(exc).__name__}: {exc}"
    if isinstance(exc, RemoteRefusalError) and (exc.status >= 500 or exc.status == 429):
        return f"HTTP {exc.status}: {exc}"
    return None


def _loop(
    runner: Witness, say: Callable[[str], None], *, interval: float, max_backoff: float
) -> None:
    """Rounds every ``interval`` seconds until SIGINT/SIGTERM; outages waited out."""
    stop = threading.Event()
    down_since: datetime | None = None
    delay = min(1.0, max_backoff)
    last: int | None = None
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stop.is_set():
            try:
                last = _round(runner, say, last)
            except Exception as exc:
                why = _outage(exc)
                if why is None:
                    raise
                if down_since is None:
                    down_since = datetime.now(UTC)
                    say(f"exchange unreachable ({why}); reconnecting with backoff")
                stop.wait(delay)
                delay = min(delay * 2, max_backoff)
                continue
            if down_since is not None:
                seconds = (datetime.now(UTC) - down_since).total_seconds()
                say(f"exchange reachable again after {seconds:.0f} s")
                down_since = None
                delay = min(1.0, max_backoff)
            stop.wait(interval)
        say("stopped")
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
