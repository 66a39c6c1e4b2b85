"""SQLite, the source of truth: every SQL statement of vcli is in this package.

``core.Store`` (opening, transactions, vector rows), ``filtering`` (namespaces and metadata
filters), ``audit`` (``vcli check``), ``schema`` (the tables).
"""

from __future__ import annotations

from .core import AlreadyApplied, Row, Store, storage_error

__all__ = ["AlreadyApplied", "Row", "Store", "storage_error"]
