"""Auth0 follows the policy files: declarations, the Management API, sync, Deploy CLI export, the Action."""
