"""The decision engine: the only part of authz that imports casbin."""

from authz.engine.bindings import Subject
from authz.engine.snapshot import Snapshot, build_snapshot, load_snapshot

__all__ = ["Snapshot", "Subject", "build_snapshot", "load_snapshot"]
