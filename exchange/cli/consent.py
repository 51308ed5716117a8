"""``ibx consent``: keys, signed grants and revocations, listings, checks and usage.

The private key stays in the enterprise's key file: ``grant`` and ``revoke``
sign locally and hand the exchange only the signed statement, which it
verifies against the public key registered to the enterprise identity.
Every command but the offline ones (``keygen``, ``verify``) goes through the
exchange's API (``/v1/consents``, ``/v1/usage``): on the local data dir, or at
``--exchange URL``, with the same output and exit codes; the policy pack
decides who may do what.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import typer

from consent import (
    ConsentKeyError,
    ConsentReceipt,
    DatasetScope,
    Engine,
    EnterpriseKey,
    InvalidConsentError,
    KeyRegistration,
    Operation,
    Purpose,
    Requester,
    Revocation,
    SignedReceipt,
    new_consent_id,
    verify_offline,
)
from core.canonical import parse_json_object
from core.clock import format_rfc3339, parse_rfc3339, utcnow
from core.errors import CanonicalJsonError
from core.keys import Ed25519PublicKey
from exchange.cli._api_client import user_client
from exchange.cli._consent_output import (
    CONSENT_HEADERS,
    consent_cells,
    consent_line,
    coverage_lines,
    usage_lines,
)
from exchange.cli._context import (
    CA_BUNDLE_OPTION,
    CLIENT_CERT_OPTION,
    CLIENT_KEY_OPTION,
    EXCHANGE_OPTION,
    TOKEN_OPTION,
)
from exchange.cli._output import JSON_OPTION, Table, emit_json, emit_table
from exchange.client import ExchangeClient
from exchange.schemas.consents import (
    ConsentDetail,
    ConsentKeyPublic,
    ConsentPublic,
    ConsentUsagePublic,
    CoverageReportPublic,
)

__all__ = ["app"]

app = typer.Typer(help="Enterprise-signed consents: keys, grants, revocations, checks, usage.")


def _time(text: str | None, default: datetime, what: str) -> datetime:
    if text is None:
        return default
    try:
        return parse_rfc3339(text)
    except ValueError as exc:
        raise InvalidConsentError(f"{what}: {exc}") from exc


def _scope(specs: list[str]) -> tuple[DatasetScope, ...]:
    scopes = []
    for spec in specs:
        dataset, sep, fields = spec.partition(":")
        if not sep or not fields:
            raise InvalidConsentError(f"--dataset {spec!r}: use DATASET:field1,field2")
        scopes.append(DatasetScope(dataset, tuple(f.strip() for f in fields.split(","))))
    return tuple(scopes)


def _requester(one: str | None, group: str | None) -> Requester:
    if (one is None) == (group is None):
        raise InvalidConsentError("give exactly one of --requester NAME or --requester-group ROLE")
    if one is not None:
        return Requester.one(one)
    assert group is not None
    role, _, industry = group.partition(":")
    return Requester.group(role, industry or None)


def _signing_as(client: ExchangeClient) -> tuple[str, str]:
    """Who signs (the caller's identity) and for which deployment (the ledger's origin).

    Raises:
        RemoteRefusalError: the exchange refused (e.g. the token is not valid).
        InvalidConsentError: the exchange's answers are not what it should send.
    """
    me = client.get("/v1/me").get("name")
    checkpoint = client.call("GET", "/v1/ledger/checkpoint").text
    origin = checkpoint.split("\n", 1)[0].strip()
    if not isinstance(me, str) or not origin:
        raise InvalidConsentError("the exchange did not say who the token is or its origin")
    return me, origin


@app.command("keygen")
def keygen(
    out: Path = typer.Option(..., "--out", help="where to write the private key (mode 0600)"),  # noqa: B008
    as_json: bool = JSON_OPTION,
) -> None:
    """Generate the enterprise's consent key pair locally; print the public key."""
    key = EnterpriseKey.generate(out)
    if as_json:
        public = key.signer.public_key
        emit_json(
            {
                "key_file": str(out),
                "public_key": public.to_base64(),
                "key_fingerprint": public.fingerprint(),
            }
        )
        return
    typer.echo(f"wrote {out} (keep it private; the exchange never sees it)")
    typer.echo(key.signer.public_key.to_base64())


@app.command("register-key")
def register_key(  # noqa: PLR0917 -- one parameter per CLI option
    ctx: typer.Context,
    key_file: Path = typer.Option(..., "--key", help="the enterprise key file"),  # noqa: B008
    rotate: bool = typer.Option(False, "--rotate", help="replace an already registered key"),
    old_key_file: Path | None = typer.Option(  # noqa: B008
        None, "--old-key", help="with --rotate: the key file of the key registered now"
    ),
    as_json: bool = JSON_OPTION,
    token: str | None = TOKEN_OPTION,
    exchange: str | None = EXCHANGE_OPTION,
    ca_bundle: Path | None = CA_BUNDLE_OPTION,
    client_cert: Path | None = CLIENT_CERT_OPTION,
    client_key: Path | None = CLIENT_KEY_OPTION,
) -> None:
    """Register the key file's public key to the calling enterprise identity.

    Rotating the key invalidates consents signed with the old one, and needs the
    old key file too: a bearer token alone must not replace the key that consents
    are verified with (its holder could then sign consents as the enterprise).
    The registration is signed by the new key and by the replaced one, and the
    exchange checks both.
    """
    key = EnterpriseKey.load(key_file)
    old = EnterpriseKey.load(old_key_file) if old_key_file is not None else None
    with user_client(
        ctx,
        token,
        exchange=exchange,
        ca_bundle=ca_bundle,
        client_cert=client_cert,
        client_key=client_key,
    ) as client:
        me, origin = _signing_as(client)
        registered = _registered_key(client)
        public = key.signer.public_key
        replaced = None
        if registered == public:
            replaced = key
        elif registered is not None:
            fingerprint = registered.fingerprint()[:16]
            if not rotate:
                raise ConsentKeyError(
                    f"{me} already has key {fingerprint}; pass --rotate "
                    "to replace it (consents signed with the old key stop verifying)"
                )
            if old is None:
                raise ConsentKeyError(
                    f"rotating needs --old-key, the key file of the registered key {fingerprint}"
                )
            if old.signer.public_key != registered:
                raise ConsentKeyError(f"--old-key is not {me}'s registered key {fingerprint}")
            replaced = old
        signed = KeyRegistration(origin, me, public, registered, utcnow()).sign(
            key.signer, replaced.signer if replaced is not None else None
        )
        answer = ConsentKeyPublic.model_validate(
            client.call("PUT", "/v1/me/consent-key", json=signed.to_dict()).json()
        )
    if as_json:
        emit_json({"enterprise": answer.enterprise, "key_fingerprint": answer.key_fingerprint})
        return
    typer.echo(f"registered key {answer.key_fingerprint[:16]} to {answer.enterprise}")


def _registered_key(client: ExchangeClient) -> Ed25519PublicKey | None:
    """The consent key registered to the caller now (None: none yet).

    Raises:
        InvalidConsentError: the exchange sent a key that is not one.
    """
    text = client.get("/v1/me").get("public_key")
    if text is None:
        return None
    try:
        return Ed25519PublicKey.from_base64(str(text))
    except ValueError as exc:
        raise InvalidConsentError(f"the exchange sent a malformed key: {exc}") from exc


@app.command("grant")
def grant(  # noqa: PLR0917 -- one parameter per CLI option
    ctx: typer.Context,
    key_file: Path = typer.Option(..., "--key", help="the enterprise key file (signs locally)"),  # noqa: B008
    dataset: list[str] = typer.Option(  # noqa: B008
        ..., "--dataset", help="DATASET:field1,field2 (repeat for more datasets)"
    ),
    requester: str | None = typer.Option(None, "--requester", help="one identity"),
    requester_group: str | None = typer.Option(
        None, "--requester-group", help="ROLE or ROLE:INDUSTRY, e.g. subbrain:lithium-battery"
    ),
    purpose: list[Purpose] = typer.Option(..., "--purpose", help="repeatable"),  # noqa: B008
    operation: list[Operation] = typer.Option(..., "--operation", help="repeatable"),  # noqa: B008
    engine: list[Engine] = typer.Option(  # noqa: B008
        [Engine.HE, Engine.MPC], "--engine", help="repeatable [default: he and mpc]"
    ),
    min_cohort: int = typer.Option(3, "--min-cohort", help="smallest cohort accepted"),
    valid_from: str | None = typer.Option(None, "--valid-from", help="RFC 3339 [default: now]"),
    valid_until: str | None = typer.Option(None, "--valid-until", help="RFC 3339"),
    days: int = typer.Option(365, "--days", help="validity from --valid-from if no --valid-until"),
    use_limit: int | None = typer.Option(None, "--use-limit", help="most decisions it may serve"),
    notice: str | None = typer.Option(None, "--notice", help="notice text or policy URL"),
    out: Path | None = typer.Option(None, "--out", help="also save the signed receipt here"),  # noqa: B008
    as_json: bool = JSON_OPTION,
    token: str | None = TOKEN_OPTION,
    exchange: str | None = EXCHANGE_OPTION,
    ca_bundle: Path | None = CA_BUNDLE_OPTION,
    client_cert: Path | None = CLIENT_CERT_OPTION,
    client_key: Path | None = CLIENT_KEY_OPTION,
) -> None:
    """Sign a consent receipt with the local key and submit it to the exchange."""
    key = EnterpriseKey.load(key_file)  # what is local is checked before asking the exchange
    now = utcnow()
    start = _time(valid_from, now, "--valid-from")
    end = _time(valid_until, start + timedelta(days=days), "--valid-until")
    scope = _scope(dataset)
    who = _requester(requester, requester_group)
    with user_client(
        ctx,
        token,
        exchange=exchange,
        ca_bundle=ca_bundle,
        client_cert=client_cert,
        client_key=client_key,
    ) as client:
        me, origin = _signing_as(client)
        receipt = ConsentReceipt(
            consent_id=new_consent_id(),
            origin=origin,
            enterprise=me,
            public_key=key.signer.public_key,
            scope=scope,
            requester=who,
            purposes=tuple(purpose),
            operations=tuple(operation),
            engines=tuple(engine),
            min_cohort=min_cohort,
            valid_from=start,
            valid_until=end,
            use_limit=use_limit,
            notice=notice,
            signed_at=now,
        )
        signed = receipt.sign(key.signer)
        if out is not None:
            out.write_text(json.dumps(signed.to_dict(), indent=2, ensure_ascii=False) + "\n")
        record = ConsentDetail.model_validate(client.post("/v1/consents", signed.to_dict()))
    if as_json:
        emit_json(
            {
                "consent_id": record.consent_id,
                "receipt_sha256": signed.receipt_hash(),
                "ledger_index": record.ledger_index,
            }
        )
        return
    typer.echo(
        f"granted {record.consent_id} (receipt sha256 {signed.receipt_hash()}, "
        f"ledger index {record.ledger_index})"
    )


@app.command("revoke")
def revoke(  # noqa: PLR0917 -- one parameter per CLI option
    ctx: typer.Context,
    consent_id: str = typer.Argument(..., help="the consent to revoke"),
    key_file: Path = typer.Option(..., "--key", help="the enterprise key file (signs locally)"),  # noqa: B008
    reason: str | None = typer.Option(None, "--reason", help="recorded with the revocation"),
    as_json: bool = JSON_OPTION,
    token: str | None = TOKEN_OPTION,
    exchange: str | None = EXCHANGE_OPTION,
    ca_bundle: Path | None = CA_BUNDLE_OPTION,
    client_cert: Path | None = CLIENT_CERT_OPTION,
    client_key: Path | None = CLIENT_KEY_OPTION,
) -> None:
    """Sign a revocation locally and submit it; it binds every later decision."""
    key = EnterpriseKey.load(key_file)
    with user_client(
        ctx,
        token,
        exchange=exchange,
        ca_bundle=ca_bundle,
        client_cert=client_cert,
        client_key=client_key,
    ) as client:
        me, origin = _signing_as(client)
        signed_at = utcnow()  # the enterprise's own clock: when it signs, not when it counts
        revocation = Revocation(
            consent_id=consent_id,
            origin=origin,
            enterprise=me,
            public_key=key.signer.public_key,
            reason=reason,
            signed_at=signed_at,
        )
        signed = revocation.sign(key.signer)
        record = ConsentDetail.model_validate(
            client.post(f"/v1/consents/{quote(consent_id, safe='')}/revocation", signed.to_dict())
        )
    revoked_at = record.revoked_at or format_rfc3339(signed_at)
    if as_json:
        emit_json(
            {
                "consent_id": record.consent_id,
                "revoked_at": revoked_at,
                "ledger_index": record.revocation_ledger_index,
            }
        )
        return
    typer.echo(
        f"revoked {record.consent_id} at {revoked_at} "
        f"(ledger index {record.revocation_ledger_index})"
    )


@app.command("list")
def list_(  # noqa: PLR0917 -- one parameter per CLI option
    ctx: typer.Context,
    enterprise: str | None = typer.Option(None, "--enterprise", help="whose consents"),
    as_json: bool = JSON_OPTION,
    token: str | None = TOKEN_OPTION,
    exchange: str | None = EXCHANGE_OPTION,
    ca_bundle: Path | None = CA_BUNDLE_OPTION,
    client_cert: Path | None = CLIENT_CERT_OPTION,
    client_key: Path | None = CLIENT_KEY_OPTION,
) -> None:
    """List consents: id, enterprise, requester, scope, purposes, operations, state."""
    with user_client(
        ctx,
        token,
        exchange=exchange,
        ca_bundle=ca_bundle,
        client_cert=client_cert,
        client_key=client_key,
    ) as client:
        items = [
            ConsentPublic.model_validate(item)
            for item in client.pages("/v1/consents", enterprise=enterprise)
        ]
    if as_json:
        emit_json([item.model_dump(mode="json") for item in items])
        return
    emit_table(
        Table.build(
            CONSENT_HEADERS,
            (consent_cells(item) for item in items),
            (consent_line(item) for item in items),
        )
    )


@app.command("show")
def show(  # noqa: PLR0917 -- one parameter per CLI option
    ctx: typer.Context,
    consent_id: str = typer.Argument(..., help="the consent"),
    as_json: bool = JSON_OPTION,  # show prints JSON with or without it
    token: str | None = TOKEN_OPTION,
    exchange: str | None = EXCHANGE_OPTION,
    ca_bundle: Path | None = CA_BUNDLE_OPTION,
    client_cert: Path | None = CLIENT_CERT_OPTION,
    client_key: Path | None = CLIENT_KEY_OPTION,
) -> None:
    """Print the signed receipt (RFC 8785 receipt + base64 signature) for offline checks."""
    del as_json
    with user_client(
        ctx,
        token,
        exchange=exchange,
        ca_bundle=ca_bundle,
        client_cert=client_cert,
        client_key=client_key,
    ) as client:
        record = ConsentDetail.model_validate(
            client.get(f"/v1/consents/{quote(consent_id, safe='')}")
        )
    emit_json({"receipt": record.receipt, "signature": record.signature})


@app.command("verify")
def verify(
    receipt_file: Path = typer.Argument(  # noqa: B008
        ..., help="a signed receipt or revocation (consent show, grant --out)", dir_okay=False
    ),
    public_key: str | None = typer.Option(
        None, "--public-key", help="the enterprise's Ed25519 public key (base64) you trust"
    ),
    origin: str | None = typer.Option(
        None, "--origin", help="the deployment the document must be for"
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Check a signed receipt or revocation offline: content, signature, and the key you trust."""
    trusted = None
    if public_key is not None:
        try:
            trusted = Ed25519PublicKey.from_base64(public_key)
        except ValueError as exc:
            raise typer.BadParameter(f"--public-key: {exc}") from exc
    verdict = verify_offline(receipt_file.read_text(), trusted_key=trusted, origin=origin)
    document = verdict.document
    inner = document.receipt if isinstance(document, SignedReceipt) else document.revocation
    if as_json:
        emit_json(
            {
                "ok": True,
                "kind": verdict.kind,
                "consent_id": inner.consent_id,
                "enterprise": inner.enterprise,
                "origin": inner.origin,
                "key_pinned": verdict.key_pinned,
                "sha256": document.receipt_hash(),
            }
        )
        return
    trust = "the trusted key" if verdict.key_pinned else "the key it names (not pinned)"
    typer.echo(
        f"ok {verdict.kind} {inner.consent_id} by {inner.enterprise} for {inner.origin}, "
        f"signed by {trust}; sha256 {document.receipt_hash()}"
    )


@app.command("check")
def check(  # noqa: PLR0917 -- one parameter per CLI option
    ctx: typer.Context,
    request: str = typer.Option(
        ...,
        "--request",
        help="JSON object, or @FILE: purpose, operation, engine, datasets, fields, "
        "[requester: yourself], [time: checked against the exchange's clock, never used]",
    ),
    as_json: bool = JSON_OPTION,
    token: str | None = TOKEN_OPTION,
    exchange: str | None = EXCHANGE_OPTION,
    ca_bundle: Path | None = CA_BUNDLE_OPTION,
    client_cert: Path | None = CLIENT_CERT_OPTION,
    client_key: Path | None = CLIENT_KEY_OPTION,
) -> None:
    """Which consents cover a request now, per data owner, and why the others do not.

    Validity is judged at the exchange's clock; a stated ``time`` further from
    it than the allowed skew (``IBX_CONSENT_REQUEST_SKEW_SECONDS``) is refused.
    """
    text = Path(request[1:]).read_text() if request.startswith("@") else request
    try:
        obj = parse_json_object(text, what="--request")
    except CanonicalJsonError as exc:
        raise InvalidConsentError(str(exc)) from exc
    with user_client(
        ctx,
        token,
        exchange=exchange,
        ca_bundle=ca_bundle,
        client_cert=client_cert,
        client_key=client_key,
    ) as client:
        report = CoverageReportPublic.model_validate(client.post("/v1/consents/check", obj))
    if as_json:
        emit_json(report.model_dump(mode="json"))
        return
    for line in coverage_lines(report):
        typer.echo(line)


@app.command("usage")
def usage(  # noqa: PLR0917 -- one parameter per CLI option
    ctx: typer.Context,
    enterprise: str | None = typer.Option(
        None, "--enterprise", help="whose data [default: your own; auditors: every enterprise]"
    ),
    as_json: bool = JSON_OPTION,
    token: str | None = TOKEN_OPTION,
    exchange: str | None = EXCHANGE_OPTION,
    ca_bundle: Path | None = CA_BUNDLE_OPTION,
    client_cert: Path | None = CLIENT_CERT_OPTION,
    client_key: Path | None = CLIENT_KEY_OPTION,
) -> None:
    """Who used an enterprise's data: every decision and job behind each of its consents."""
    with user_client(
        ctx,
        token,
        exchange=exchange,
        ca_bundle=ca_bundle,
        client_cert=client_cert,
        client_key=client_key,
    ) as client:
        items = [
            ConsentUsagePublic.model_validate(item)
            for item in client.pages("/v1/usage", enterprise=enterprise)
        ]
    if as_json:
        emit_json([item.model_dump(mode="json") for item in items])
        return
    for item in items:
        for line in usage_lines(item):
            typer.echo(line)
