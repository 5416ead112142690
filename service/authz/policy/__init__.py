"""Tooling for the people who edit policy directories: validate, test, explain, edit.

Library first (the admin service and the reload path reuse it), command line second
(`authz policy ...` in `authz.cli.policy`).
"""
