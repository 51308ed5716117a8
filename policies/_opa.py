"""The same Rego on a real OPA server, through opa-python-client (optional).

When ``IBX_OPA_URL`` names a server, activation pushes the version's data
documents and non-test modules to it, and decisions take Rego's verdict from
``POST /v1/data/ibx/authz`` instead of embedded regopy. Casbin still runs
in-process. Any server failure is a deny (fail closed).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from urllib.parse import urlsplit

from opa_client import OpaClient

from policies._engine import CompiledPolicy, Verdict, combine, prepare_input
from policies._model import Decision, DecisionRequest, Effect
from policies._source import ENTRY_PACKAGE, PolicySource
from policies.errors import OpaServerError

__all__ = ["OpaEvaluator"]

logger = logging.getLogger(__name__)


class OpaEvaluator:
    """Publishes versions to, and asks, one OPA server."""

    def __init__(self, url: str, *, timeout: float = 2.0) -> None:
        """Connect lazily to ``url`` (``http://host:port``).

        Raises:
            OpaServerError: the URL is not http(s)://host[:port].
        """
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise OpaServerError(f"OPA URL {url!r} must be http(s)://host[:port]")
        self.url = url
        self._client = OpaClient(
            host=parts.hostname,
            port=parts.port or (443 if parts.scheme == "https" else 8181),
            ssl=parts.scheme == "https",
            timeout=timeout,
        )

    def publish(self, source: PolicySource) -> None:
        """Push the data documents and the non-test modules of ``source``.

        Raises:
            OpaServerError: the server refused a module or a document, or is unreachable.
        """
        try:
            for key, value in source.data.items():
                if isinstance(value, Mapping):
                    self._client.update_or_create_data(dict(value), key)
            for module in source.modules:
                if module.is_test:
                    continue
                endpoint = "ibx-" + module.name.removesuffix(".rego")
                self._client.update_policy_from_string(module.source, endpoint)
        except Exception as exc:  # opa-python-client raises its own and requests' errors
            raise OpaServerError(f"OPA server at {self.url} refused the policy: {exc}") from exc
        logger.info("published policy %s to OPA at %s", source.hash[:12], self.url)

    def rego_verdict(self, compiled: CompiledPolicy, request: DecisionRequest) -> Verdict:
        """Rego's verdict as evaluated by the server."""
        document, refusals = prepare_input(request, compiled.schema)
        if refusals:
            return Verdict("input", Effect.DENY, tuple(refusals))
        try:
            answer = self._client.query_rule(document, ENTRY_PACKAGE)
        except Exception as exc:  # requests and opa-python-client errors
            return Verdict("opa", None, error=f"{type(exc).__name__}: {exc}")
        result = answer.get("result") if isinstance(answer, dict) else None
        if not isinstance(result, dict):
            return Verdict("opa", None, error="allow is undefined")
        allow, deny = result.get("allow"), result.get("deny", [])
        if not isinstance(deny, list) or not all(isinstance(d, str) for d in deny):
            return Verdict("opa", None, error="deny is not a set of messages")
        if deny:
            return Verdict("opa", Effect.DENY, tuple(sorted(deny)))
        if allow is True:
            return Verdict("opa", Effect.ALLOW, ("attribute rules allow",))
        return Verdict("opa", None if allow is not False else Effect.DENY, ("allow is not true",))

    def decide(self, compiled: CompiledPolicy, request: DecisionRequest) -> Decision:
        """Casbin in-process AND Rego on the server; deny overrides; fail closed."""
        verdicts = (compiled.casbin_verdict(request), self.rego_verdict(compiled, request))
        allow, reasons = combine(verdicts)
        return Decision(allow, reasons, compiled.version)
