"""Which route of :data:`exchange.access.ROUTES` a request is for, from its ASGI scope.

Middleware runs before routing, and FastAPI records the chosen route in the
scope only for its own routes; both need the path *template* (the access
rule's key, the access log's path). The table's templates are matched here
directly, so what a middleware decides follows the one table.
"""

from __future__ import annotations

import re
from functools import cache

from starlette.routing import compile_path
from starlette.types import Scope

from exchange.access import ROUTES

__all__ = ["route_template"]


@cache
def _compiled() -> tuple[tuple[str, str, re.Pattern[str]], ...]:
    """Every rule's (method, template, regex), literal paths before parameterised ones."""
    rules = sorted(ROUTES, key=lambda rule: (rule[1].count("{"), -len(rule[1])))
    return tuple((method, template, compile_path(template)[0]) for method, template in rules)


def route_template(scope: Scope, *, any_method: bool = False) -> str | None:
    """The template (``/v1/consents/{consent_id}``) of the rule ``scope``'s request is for.

    The route the router chose, if it recorded one; else the first rule whose
    template matches the path (and the method, unless ``any_method``: a 405
    still names its path). None for a path no rule covers.
    """
    chosen = getattr(scope.get("route"), "path_format", None)
    if isinstance(chosen, str):
        return chosen
    path = scope.get("path", "")
    method = scope.get("method", "")
    if method == "HEAD":
        method = "GET"
    fallback: str | None = None
    for rule_method, template, pattern in _compiled():
        if pattern.fullmatch(path):
            if rule_method == method:
                return template
            if any_method and fallback is None:
                fallback = template
    return fallback
