"""Peer services: the same Check contract built by other teams' obvious stacks, measured beside authz."""
