"""authz: a policy decision service for Auth0-protected APIs and UIs."""

__version__ = "0.1.0"
