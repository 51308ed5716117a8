"""The HTTP API's routers: thin, each route in :data:`exchange.access.ROUTES`."""

from __future__ import annotations

from fastapi import APIRouter

from exchange.routes import (
    agent,
    consent_drafts,
    consents,
    datasets,
    edge,
    enterprise_devices,
    identities,
    ledger,
    me,
    pki,
    policies,
    requests,
)

__all__ = ["ROUTERS"]

ROUTERS: tuple[APIRouter, ...] = (
    me.router,
    identities.router,
    datasets.router,
    consent_drafts.router,
    consents.router,
    policies.router,
    ledger.router,
    pki.router,
    edge.enterprise_router,
    requests.router,
    agent.router,
    enterprise_devices.router,
)
"""Every router of the API app (the edge listener serves its own, device routes only)."""
