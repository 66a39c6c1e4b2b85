"""The local and the remote classes have every member of the interface the front ends call
(``vcli/engine/interface.py``). mypy checks their signatures in ``.ci/run``; this test also fails
in a plain pytest run when a Vectorize call is added to one side but not to the other."""

from __future__ import annotations

import inspect

import pytest

from vcli.engine import Catalog as LocalCatalog
from vcli.engine import interface
from vcli.remote import RemoteCatalog, Target


def members(protocol: type) -> set[str]:
    """The names a protocol declares: its methods, properties and annotated attributes."""
    names = {n for n in vars(protocol) if not n.startswith("_")} | set(protocol.__annotations__)
    return names | {"__enter__", "__exit__"} & set(vars(protocol))


def has(obj: object, name: str) -> bool:
    """Whether ``obj`` has ``name`` without reading it (a remote index's ``config`` is a request)."""
    return name in vars(obj) or hasattr(type(obj), name)


@pytest.fixture
def both(data_dir):
    local = LocalCatalog(data_dir)
    local.create("docs", 3, "cosine")
    remote = RemoteCatalog(Target("http://127.0.0.1:9/client/v4", "0" * 32, "token"))  # never contacted
    with local.open("docs") as local_index:
        yield {"local": (local, local_index), "remote": (remote, remote.open("docs"))}


def test_the_protocols_name_the_vectorize_calls():
    assert members(interface.Catalog) == {"create", "config", "list", "open", "delete"}
    assert {"insert", "upsert", "delete", "get", "list_ids", "query", "query_many", "info",
            "create_metadata_index", "list_metadata_indexes", "delete_metadata_index"} < members(interface.Index)


@pytest.mark.parametrize("side", ["local", "remote"])
def test_each_side_has_every_member(both, side):
    catalog, index = both[side]
    assert [n for n in sorted(members(interface.Catalog)) if not has(catalog, n)] == []
    assert [n for n in sorted(members(interface.Index)) if not has(index, n)] == []


@pytest.mark.parametrize("side", ["local", "remote"])
def test_each_side_takes_the_protocols_arguments(both, side):
    """Every parameter the protocol names, the class's method takes by that name (more, with
    defaults, are allowed: the local index's ``pending``)."""
    catalog, index = both[side]
    for protocol, obj in ((interface.Catalog, catalog), (interface.Index, index)):
        for name in members(protocol):
            declared = vars(protocol).get(name)
            if not inspect.isfunction(declared):
                continue
            wanted = list(inspect.signature(declared).parameters)[1:]
            have = inspect.signature(getattr(obj, name)).parameters
            missing = [p for p in wanted if p not in have and p != "exc"]
            assert missing == [], f"{type(obj).__name__}.{name} lacks {missing}"
