"""The `authz` command line."""
