"""The official ``cloudflare`` Python SDK against ``vcli serve``: a second, independent client.

``client.vectorize.indexes.*`` with ``base_url`` pointed at the server runs the scenario of the
wrangler test: indexes from dimensions and from a preset, NDJSON in several batches (the SDK sends
the body raw, as ``application/json``), queries by vector and by id with filters and namespaces,
list-vectors paging, metadata indexes and the errors, each answer equal to what ``vcli … --json``
prints for the same index.
"""

from __future__ import annotations

import cloudflare
import pytest
from helpers import ACCOUNT, ndjson, serve_process
from test_wrangler_conformance import MOVIES

from vcli.errors import MetadataIndexError

# The SDK's insert/upsert take the NDJSON as raw bytes (a file tuple fails to encode) and warn that
# this is deprecated in favour of a `content` parameter those methods do not have yet.
pytestmark = pytest.mark.filterwarnings("ignore:Passing raw bytes as `body`:DeprecationWarning")
QUERY = [54.8, 5.5, 3.1]
QUERY_ARGS = [str(x) for x in QUERY]


@pytest.fixture
def indexes(tmp_path):
    with serve_process(tmp_path) as server:
        # max_retries=0: the SDK retries 409 and 5xx answers, and every answer here is final
        with cloudflare.Cloudflare(api_token="dummy", base_url=f"{server.url}/client/v4",
                                   max_retries=0) as client:
            yield client.vectorize.indexes


def api(model) -> dict:
    """A response model as the JSON the API sent."""
    return model.to_dict(mode="json", use_api_names=True, exclude_unset=True)


def error_of(exc: cloudflare.APIStatusError) -> dict:
    [err] = exc.body["errors"] if isinstance(exc.body, dict) else exc.response.json()["errors"]
    return err


def test_sdk_index_lifecycle(indexes, vcli):
    made = indexes.create(account_id=ACCOUNT, name="films", description="d",
                          config={"dimensions": 3, "metric": "cosine"})
    assert made.name == "films" and made.config.dimensions == 3 and made.config.metric == "cosine"
    assert vcli("get", "films", "--json").json["created_on"] == api(made)["created_on"]
    preset = indexes.create(account_id=ACCOUNT, name="small", config={"preset": "@cf/baai/bge-small-en-v1.5"})
    assert (preset.config.dimensions, preset.config.metric) == (384, "cosine")
    listed = [api(i) for i in indexes.list(account_id=ACCOUNT)]
    assert [i["name"] for i in listed] == ["films", "small"]
    assert [i["name"] for i in vcli("list", "--json").json] == ["films", "small"]
    assert api(indexes.get("small", account_id=ACCOUNT)) == api(preset)
    with pytest.raises(cloudflare.ConflictError) as dup:
        indexes.create(account_id=ACCOUNT, name="films", config={"dimensions": 3, "metric": "cosine"})
    assert error_of(dup.value) == {"code": 3002, "message": 'vectorize.index.duplicate_name - Index name "films"'}
    indexes.delete("small", account_id=ACCOUNT)
    with pytest.raises(cloudflare.NotFoundError) as missing:
        indexes.get("small", account_id=ACCOUNT)
    assert error_of(missing.value) == {"code": 3000, "message": 'vectorize.index.not_found - Index name "small"'}
    assert vcli("get", "small").code == 1


def test_sdk_vectors_queries_and_metadata_indexes(indexes, vcli):
    indexes.create(account_id=ACCOUNT, name="films", config={"dimensions": 3, "metric": "cosine"})
    created = indexes.metadata_index.create("films", account_id=ACCOUNT, property_name="genre", index_type="string")
    assert created.mutation_id == vcli("info", "films", "--json").json["processedUpToMutation"]
    indexes.metadata_index.create("films", account_id=ACCOUNT, property_name="year", index_type="number")
    listed = indexes.metadata_index.list("films", account_id=ACCOUNT)
    assert api(listed)["metadataIndexes"] == vcli("list-metadata-index", "films", "--json").json

    lines = ndjson(MOVIES).encode().splitlines(keepends=True)
    for batch in (lines[:2], lines[2:4], lines[4:]):  # several batches, the last one upserted
        write = indexes.insert if batch is not lines[4:] else indexes.upsert
        done = write("films", account_id=ACCOUNT, body=b"".join(batch))
        assert done.mutation_id == vcli("info", "films", "--json").json["processedUpToMutation"]
    info = api(indexes.info("films", account_id=ACCOUNT))
    assert info == vcli("info", "films", "--json").json and info["vectorCount"] == 5

    res = indexes.query("films", account_id=ACCOUNT, vector=QUERY, top_k=5, return_values=True,
                        return_metadata="all")
    assert api(res) == vcli("query", "films", "--vector", *QUERY_ARGS, "--top-k", "5", "--return-values",
                            "--return-metadata", "all", "--json").json
    assert [m.id for m in res.matches] == ["5", "4", "2", "1", "3"]
    assert res.matches[0].score == pytest.approx(0.999909, abs=1e-6)
    # namespaces are not among the SDK's query parameters: they go in extra_body
    res = indexes.query("films", account_id=ACCOUNT, vector=QUERY, top_k=5, return_metadata="indexed",
                        filter={"genre": {"$in": ["drama", "action"]}, "year": {"$gte": 2000}},
                        extra_body={"namespace": "movies"})
    cli = vcli("query", "films", "--vector", *QUERY_ARGS, "--top-k", "5", "--return-metadata", "indexed",
               "--filter", '{"genre": {"$in": ["drama", "action"]}, "year": {"$gte": 2000}}',
               "--namespace", "movies", "--json").json
    assert api(res) == cli and [m.id for m in res.matches] == ["4"]
    # query by id is not in the SDK's typed methods: the client's own post() sends it
    by_id = indexes._client.post(
        f"/accounts/{ACCOUNT}/vectorize/v2/indexes/films/query", cast_to=object,
        body={"vectorId": "4", "topK": 2, "returnValues": False, "returnMetadata": "none"},
    )
    assert by_id["result"] == vcli("query", "films", "--vector-id", "4", "--top-k", "2", "--json").json

    got = indexes.get_by_ids("films", account_id=ACCOUNT, ids=["5", "1", "zz"])
    assert got == vcli("get-vectors", "films", "--ids", "5", "1", "zz", "--json").json

    seen, cursor = [], None
    while True:
        page = api(indexes.list_vectors("films", account_id=ACCOUNT, count=2,
                                        **({"cursor": cursor} if cursor else {})))
        cli = vcli("list-vectors", "films", "--count", "2", *(["--cursor", cursor] if cursor else []),
                   "--json").json
        page.pop("cursorExpirationTimestamp", None)
        cli.pop("cursorExpirationTimestamp")
        assert page == cli
        seen += [v["id"] for v in page["vectors"]]
        if not page["isTruncated"]:
            break
        cursor = page["nextCursor"]
    assert seen == ["1", "2", "3", "4", "5"]

    deleted = indexes.delete_by_ids("films", account_id=ACCOUNT, ids=["1", "2"])
    assert deleted.mutation_id == vcli("info", "films", "--json").json["processedUpToMutation"]
    assert vcli("info", "films", "--json").json["vectorCount"] == 3
    removed = indexes.metadata_index.delete("films", account_id=ACCOUNT, property_name="year")
    assert removed.mutation_id == vcli("info", "films", "--json").json["processedUpToMutation"]
    assert [m.property_name for m in indexes.metadata_index.list("films", account_id=ACCOUNT).metadata_indexes] == [
        "genre"]


def test_sdk_errors(indexes, vcli):
    indexes.create(account_id=ACCOUNT, name="films", config={"dimensions": 3, "metric": "cosine"})
    indexes.insert("films", account_id=ACCOUNT, body=ndjson(MOVIES).encode())
    cases = [
        (lambda: indexes.query("films", account_id=ACCOUNT, vector=[1, 2]), 40006,
         "invalid query vector, expected 3 dimensions, and got 2 dimensions"),
        (lambda: indexes.query("films", account_id=ACCOUNT, vector=QUERY, top_k=60, return_metadata="all"),
         40025, "max top K is 50, but got 60"),  # the service's own words, not the CLI's
        (lambda: indexes.query("films", account_id=ACCOUNT, vector=QUERY, filter={"genre": "drama"}),
         MetadataIndexError.code, vcli("query", "films", "--vector", *QUERY_ARGS, "--filter", '{"genre":"drama"}')),
        (lambda: indexes.upsert("films", account_id=ACCOUNT, body=b'{"id":"a","values":[1,2,3]}\n{"id":"b"}\n'),
         40023, 'line 2, id "b": missing "values"'),
        (lambda: indexes.insert("films", account_id=ACCOUNT, body=b'{"id":"x","values":[1,2]}'),
         40012, 'invalid vector for id="x", expected 3 dimensions, and got 2 dimensions'),
        (lambda: indexes.list_vectors("films", account_id=ACCOUNT, count=5000), 40025,
         vcli("list-vectors", "films", "--count", "5000")),
        (lambda: indexes.info("nope", account_id=ACCOUNT), 3000, 'vectorize.index.not_found - Index name "nope"'),
    ]
    for call, code, message in cases:
        if not isinstance(message, str):  # the CLI's message for the same mistake
            assert message.code == 1, message
            message = message.err.strip().removeprefix("Error: ")
        with pytest.raises(cloudflare.APIStatusError) as caught:
            call()
        assert caught.value.status_code in (400, 404)
        assert error_of(caught.value) == {"code": code, "message": message}
    assert vcli("info", "films", "--json").json["vectorCount"] == 5
