"""SQLite, the source of truth: every SQL statement of vcli is in this package.

``core.Store`` (opening, transactions, vector rows), ``connection`` (the SQLite connection and its
errors), ``listing`` (what list-vectors pages from), ``filtering`` (namespaces and metadata
filters), ``audit`` (``vcli check``), ``schema`` (the tables).
"""

from __future__ import annotations

from .connection import storage_error
from .core import AlreadyApplied, Row, Store

__all__ = ["AlreadyApplied", "Row", "Store", "storage_error"]
