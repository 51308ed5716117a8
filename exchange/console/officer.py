"""The security officer's pages: ``/console/officer/...`` (docs/console.md).

- ``/console/officer``: every policy version, its state and who took each step when
  (:mod:`exchange.console.officer_versions`);
- ``/console/officer/versions/{ref}``: one version's Casbin lines and Rego, its test
  report, and the next steps to sign (:mod:`exchange.console.officer_steps`);
- ``/console/officer/diff``: two versions side by side, with the decisions that change;
- ``/console/officer/propose``: a new version from the Casbin and Rego text;
- ``/console/officer/decide``: the decision playground (:mod:`exchange.console.officer_decide`).

Every step is signed in the browser with the officer's own key file and sent
through the API as the signed-in officer; nothing here could not be done with
the officer's token and ``ibx policy ... --key``.
"""

from __future__ import annotations

from fastapi import APIRouter

from exchange.console import officer_decide, officer_steps, officer_versions

__all__ = ["NAV", "router"]

router = APIRouter(include_in_schema=False)
"""The duty's pages: each module's router carries the prefix (``officer_context.PREFIX``)."""
router.include_router(officer_versions.router)
router.include_router(officer_steps.router)
router.include_router(officer_decide.router)

NAV: list[tuple[str, str]] = [
    ("officer.versions", "/console/officer"),
    ("officer.propose", "/console/officer/propose"),
    ("officer.diff", "/console/officer/diff"),
    ("officer.decide", "/console/officer/decide"),
]
"""The duty's menu: (label key, path)."""
