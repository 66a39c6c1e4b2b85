"""The live Vectorize service as a second implementation of the interface the CLI calls.

``client.py`` owns the wire (base URL, account, token, pacing, retries); ``index.py`` turns the
catalog and index calls into the service's requests and answers with the engine's records;
``sync.py`` moves whole indexes between a local data dir and the service (push, pull) and
compares any two (diff). Like the engine, nothing here prints, exits or imports typer or rich.
"""

from .client import RemoteError, Target
from .index import RemoteCatalog, RemoteIndex

__all__ = ["RemoteCatalog", "RemoteError", "RemoteIndex", "Target"]
