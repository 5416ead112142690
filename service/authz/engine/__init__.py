"""The decision engine: the only part of authz that imports casbin."""

from authz.engine.bindings import Subject
from authz.engine.build import build_snapshot, load_snapshot
from authz.engine.snapshot import Snapshot

__all__ = ["Snapshot", "Subject", "build_snapshot", "load_snapshot"]
