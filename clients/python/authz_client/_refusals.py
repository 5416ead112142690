"""What a middleware answers when authz does not allow a request, whatever the server interface."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import grpc

from .errors import AuthzError
from .results import CheckResult


@dataclass(frozen=True)
class Refusal:
    """A refused request's HTTP status, JSON body and `WWW-Authenticate` challenge (if any)."""

    status: int
    body: dict[str, str]
    challenge: str | None = None

    def payload(self) -> bytes:
        """The JSON body as bytes."""
        return json.dumps(self.body).encode()

    def headers(self) -> list[tuple[str, str]]:
        """Content type and length, and the challenge of a 401."""
        headers = [("content-type", "application/json"), ("content-length", str(len(self.payload())))]
        if self.challenge is not None:
            headers.append(("www-authenticate", self.challenge))
        return headers


def refusal_for(result: CheckResult) -> Refusal | None:
    """None when allowed; else 401 for a token problem, 403 for any other deny."""
    if result.allowed:
        return None
    body = {"reason": result.reason, "message": result.message, "decision_id": result.decision_id}
    if result.token_problem:
        challenge = "Bearer" if result.reason == "REASON_TOKEN_MISSING" else 'Bearer error="invalid_token"'
        return Refusal(401, {"error": "unauthenticated", **body}, challenge)
    return Refusal(403, {"error": "forbidden", **body})


def refusal_for_error(exc: AuthzError, log: logging.Logger, method: str, path: str) -> Refusal:
    """Fail closed: no answer is never an allow. The failure is logged on `log`.

    400 when authz refused the request as malformed (a path over its field limit): a client
    error that a retry would repeat. 503 otherwise, its details left to the log.
    """
    if exc.code == grpc.StatusCode.INVALID_ARGUMENT:
        log.info("authz refused %s %s as malformed: %s", method, path, exc)
        return Refusal(400, {"error": "bad_request", "message": exc.details})
    log.warning("authz unavailable for %s %s: %s", method, path, exc)
    return Refusal(503, {"error": "authz_unavailable", "message": "authorization unavailable"})
