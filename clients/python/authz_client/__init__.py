"""Python client, and ASGI and WSGI middlewares, for the authz policy decision service."""

from .client import AsyncAuthzClient, AuthzClient
from .errors import AuthzError
from .plan import PlanResult
from .results import (
    BatchItemResult,
    BatchResult,
    CheckItem,
    CheckResult,
    Principal,
    Visibility,
    is_token_reason,
)

__all__ = [
    "AsyncAuthzClient",
    "AuthzClient",
    "AuthzError",
    "BatchItemResult",
    "BatchResult",
    "CheckItem",
    "CheckResult",
    "PlanResult",
    "Principal",
    "Visibility",
    "is_token_reason",
]
