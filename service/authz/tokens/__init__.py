"""Auth0 access-token verification: key set, verifier, cache and hints."""

from authz.tokens.cache import TokenCache
from authz.tokens.jwks import KeySet
from authz.tokens.verify import TokenRejected, TokenSettings, TokenVerifier, strip_bearer

__all__ = ["KeySet", "TokenCache", "TokenRejected", "TokenSettings", "TokenVerifier", "strip_bearer"]
