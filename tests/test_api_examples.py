"""The lead API's OpenAPI examples are real and complete, checked against a live uvicorn
server over SQLite and PostgreSQL: every operation documents examples of its parameters,
body and answers (errors included); every request example, sent with a key of the
documented scope, is answered with the documented status and an answer its schema allows;
every documented answer matches its schema; and the examples of the sample store are what
that store really answers."""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import subprocess
import sys

import httpx
import pytest
from jsonschema import Draft202012Validator

from .test_api import ISP, ROOT, Server
from .test_store import _schemas, backend_urls, drop_schemas, fresh_store

SCOPE = "x-poolwatch-scope"
METHODS = ("get", "post", "put", "patch", "delete")
SCOPES = ("sensor", "analyst", "investigator", "admin")
WEEK_START = 1772409600.0  # Monday 2026-03-02, the sample ISP's week


@pytest.fixture(scope="module", params=backend_urls(), ids=["sqlite", "postgresql"])
def served(request, tmp_path_factory):
    """The store the examples were taken from (docs/api.md: the synthetic ISP's captures,
    leads of its week), served by uvicorn; a key of every scope; the live OpenAPI schema."""
    from poolwatch_api import create_app

    from poolwatch.link.inputs import load_isp_records
    from poolwatch.scan import scan_sessions

    made = len(_schemas)
    store = fresh_store(request.param, tmp_path_factory.mktemp("examples"))
    isp = load_isp_records([ISP])
    store.ingest([s.as_dict() for s in scan_sessions(sorted(ISP.glob("*.pcap")))])
    store.load_registry(isp)
    store.rebuild_leads(isp, week_start=WEEK_START)
    keys = {scope: store.create_key(f"examples-{scope}", scope)[1] for scope in SCOPES}
    app = create_app(store, isp_loader=lambda: isp, rate=10_000, burst=10_000)
    with Server(app) as base, httpx.Client(base_url=base, timeout=60) as client:
        openapi = client.get("/openapi.json").json()
        yield client, keys, openapi
    store.close()
    drop_schemas(_schemas[made:])


# ------------------------------------------------------------------------------ helpers
def operations(openapi):
    for path, item in openapi["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def named(holder: dict) -> list:
    """The example values of a parameter, media type or header (``examples`` map or
    ``example``)."""
    if "examples" in holder and isinstance(holder["examples"], dict):
        return [e["value"] for e in holder["examples"].values()]
    return [holder["example"]] if "example" in holder else []


def check(openapi: dict, schema: dict, value, what: str) -> None:
    """``value`` is valid under ``schema`` (refs into the document's components)."""
    errors = sorted(Draft202012Validator({**schema, "components": openapi["components"]})
                    .iter_errors(value), key=lambda e: list(e.absolute_path))
    assert not errors, f"{what}: " + "; ".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in errors[:5])


def success(op: dict) -> str:
    return next(code for code in op["responses"] if code.startswith("2"))


def check_body(openapi: dict, op: dict, media: str, body, what: str) -> None:
    """A success answer (live bytes, or a documented example) as its media type and schema
    say."""
    from poolwatch.leads import FIELDS

    content = op["responses"][success(op)]["content"][media]
    kind = media.split(";")[0]
    text = body.decode() if isinstance(body, bytes) else body
    if kind == "application/json" or kind.endswith("+json"):
        check(openapi, content["schema"], json.loads(text) if isinstance(text, str) else text,
              what)
    elif kind == "application/x-ndjson":
        for n, line in enumerate(text.splitlines()):
            check(openapi, {"$ref": "#/components/schemas/Lead"}, json.loads(line),
                  f"{what} line {n + 1}")
    elif kind == "text/csv":
        rows = list(csv.reader(io.StringIO(text)))
        assert tuple(rows[0]) == FIELDS, what
        assert len(rows) > 1 and all(len(r) == len(FIELDS) for r in rows), what
    elif kind == "text/plain":
        from prometheus_client.parser import text_string_to_metric_families

        assert list(text_string_to_metric_families(text)), what
    else:
        raise AssertionError(f"{what}: no check for {media}")


def close(a, b) -> bool:
    """Equal, floats within 1e-9 (sums may add in another order on another backend)."""
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(
            a, b, rel_tol=1e-9)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    return a == b


def requests_of(op: dict) -> list[tuple[str, dict, dict, dict, object]]:
    """Requests built from the documented examples: all parameters at their first example
    (and the first body), then each other example of each parameter and body alone (the
    required parameters at their first). Returns (label, path params, query, headers,
    body)."""
    params = [p for p in op.get("parameters", []) if not p.get("deprecated")
              and p["in"] in ("path", "query", "header")]
    bodies = named(op["requestBody"]["content"]["application/json"]) if "requestBody" in op \
        else [None]

    def build(chosen: dict[str, object]):
        parts: dict[str, dict] = {"path": {}, "query": {}, "header": {}}
        for p in params:
            if p["name"] in chosen:
                parts[p["in"]][p["name"]] = chosen[p["name"]]
        return parts["path"], parts["query"], parts["header"]

    first = {p["name"]: named(p)[0] for p in params}
    required = {p["name"]: named(p)[0] for p in params if p.get("required")}
    out = [("every parameter's first example", *build(first), bodies[0])]
    for p in params:
        for value in named(p):
            out.append((f"{p['name']}={value!r}", *build({**required, p["name"]: value}),
                        bodies[0]))
    for n, body in enumerate(bodies[1:], 2):
        out.append((f"body example {n}", *build(required), body))
    return out


def send(client: httpx.Client, path: str, method: str, key: str | None, path_params: dict,
         query: dict, headers: dict, body) -> httpx.Response:
    hdr = {**{k: str(v) for k, v in headers.items()}, **({"X-API-Key": key} if key else {})}
    return client.request(method.upper(), path.format(**path_params), params=query,
                          headers=hdr, json=body)


def relative(value):
    """A live answer with the test tree's absolute capture and record paths made relative,
    as the examples name them (the sample store was built from the repository root)."""
    return json.loads(json.dumps(value).replace(str(ROOT) + "/", ""))


# -------------------------------------------------------------------------------- tests
def test_every_operation_is_documented_with_examples(served):
    _, _, openapi = served
    tags = {t["name"]: t.get("description") for t in openapi.get("tags", [])}
    seen = 0
    for path, method, op in operations(openapi):
        where = f"{method.upper()} {path}"
        seen += 1
        assert op.get("summary") and op.get("description"), f"{where}: summary, description"
        assert op.get("tags") and all(tags.get(t) for t in op["tags"]), f"{where}: tags"
        scope = op.get(SCOPE)
        if op.get("security"):
            assert scope in SCOPES and f"`{scope}`" in op["description"], f"{where}: scope"
        for p in op.get("parameters", []):
            if p.get("deprecated"):
                assert "not used" in p.get("description", ""), f"{where} {p['name']}"
                continue
            assert p.get("description") and named(p), f"{where}: {p['name']} has no examples"
            assert p["schema"].get("examples"), f"{where}: {p['name']}: no schema examples"
        if "requestBody" in op:
            assert named(op["requestBody"]["content"]["application/json"]), f"{where}: body"
        ok = op["responses"][success(op)]
        assert ok.get("content"), f"{where}: no content for {success(op)}"
        for media, content in ok["content"].items():
            if content.get("schema", {}).get("format") == "binary":
                assert ok.get("headers") and all(named(h) for h in ok["headers"].values()), \
                    f"{where}: a binary answer documents its headers with examples"
            else:
                assert named(content), f"{where}: no {success(op)} example for {media}"
        expected = {"401", "403", "429", "422"} if scope else set()
        assert expected <= set(op["responses"]), f"{where}: {expected - set(op['responses'])}"
        for code, response in op["responses"].items():
            if code.startswith("4"):
                assert named(response["content"]["application/json"]), f"{where}: {code}"
    assert seen == 14


def test_documented_answers_match_their_schemas(served):
    _, _, openapi = served
    for path, method, op in operations(openapi):
        for code, response in op["responses"].items():
            what = f"{method.upper()} {path} {code}"
            for name, header in (response.get("headers") or {}).items():
                for value in named(header):
                    check(openapi, header["schema"], value, f"{what} header {name}")
            for media, content in (response.get("content") or {}).items():
                for n, value in enumerate(named(content)):
                    label = f"{what} {media} example {n + 1}"
                    if code.startswith("2"):
                        check_body(openapi, op, media, value, label)
                    else:
                        check(openapi, content["schema"], value, label)


def test_request_examples_are_answered_as_documented(served):
    """Each request from the examples, with a key of the operation's scope, gets the
    documented success status and an answer its schema allows; without a key it is the
    documented 401, with keys lacking the scope the documented 403."""
    from poolwatch_api.app import GRANTS

    client, keys, openapi = served
    sent = 0
    for path, method, op in operations(openapi):
        scope = op.get(SCOPE)
        code = success(op)
        for label, path_params, query, headers, body in requests_of(op):
            what = f"{method.upper()} {path} ({label})"
            r = send(client, path, method, keys.get(scope), path_params, query, headers, body)
            sent += 1
            assert str(r.status_code) == code, f"{what}: {r.status_code} {r.text[:300]}"
            media = r.headers["content-type"].split(";")[0].strip()
            documented = op["responses"][code]["content"]
            media = next(m for m in documented if m.split(";")[0] == media)
            if documented[media].get("schema", {}).get("format") == "binary":
                missing = [h for h in op["responses"][code]["headers"] if h not in r.headers]
                assert r.content and not missing, f"{what}: headers {missing} missing"
            else:
                check_body(openapi, op, media, r.content, what)
        if scope is None:
            continue
        path_params, query, headers, body = requests_of(op)[0][1:]
        r = send(client, path, method, None, path_params, query, headers, body)
        assert r.status_code == 401, path
        assert r.json() in named(op["responses"]["401"]["content"]["application/json"])
        lacking = [s for s in SCOPES if scope not in GRANTS[s]]
        answers = []
        for other in lacking:
            r = send(client, path, method, keys[other], path_params, query, headers, body)
            assert r.status_code == 403, (path, other)
            answers.append(r.json())
        assert any(a in named(op["responses"]["403"]["content"]["application/json"])
                   for a in answers), (path, answers)
    assert sent > 50


def test_error_examples_are_real_answers(served):
    """A request for each of these documented errors gets exactly a documented body."""
    client, keys, openapi = served
    cases = [  # (path, method, scope, status, path params, query, body)
        ("/v1/leads/{lead_id}", "get", "analyst", 404, {"lead_id": "0123456789abcdef"}, {},
         None),
        ("/v1/leads", "get", "analyst", 422, {}, {"colour": "red"}, None),
        ("/v1/leads", "get", "analyst", 422, {}, {"since": "1772409600"}, None),
        ("/v1/leads", "get", "analyst", 400, {}, {"address": "192.0.2.1/33"}, None),
        ("/v1/entities", "get", "analyst", 400, {}, {"cursor": "WyJkIiwxLDFd"}, None),
        ("/v1/sessions", "get", "analyst", 422, {}, {"coin": "BTC"}, None),
        ("/v1/stats/weekly", "get", "analyst", 422, {}, {}, None),
        ("/v1/addresses/{ip}", "get", "investigator", 400, {"ip": "192.0.2.500"},
         {"at": "2026-03-02T14:01:00Z"}, None),
        ("/v1/sessions/{detection_id}/pcap", "get", "investigator", 404,
         {"detection_id": 999999}, {}, None),
        ("/v1/sessions/{detection_id}/pcap", "get", "investigator", 422,
         {"detection_id": "latest"}, {}, None),
        ("/v1/ingest", "post", "sensor", 400, {}, {}, {"records": [{"event_type": "flow"}]}),
        ("/v1/ingest", "post", "sensor", 422, {}, {}, {"source": "edge-01"}),
        ("/v1/keys", "post", "admin", 422, {}, {}, {"name": "x", "scope": "root"}),
        ("/v1/keys", "post", "admin", 400, {}, {}, {"name": "   ", "scope": "analyst"}),
        ("/v1/exports/leads", "get", "analyst", 422, {}, {"format": "xlsx"}, None),
    ]
    for path, method, scope, status, path_params, query, body in cases:
        r = send(client, path, method, keys[scope], path_params, query, {}, body)
        op = openapi["paths"][path][method]
        assert r.status_code == status, (path, query, body, r.text)
        assert r.json() in named(op["responses"][str(status)]["content"]["application/json"]), \
            (path, r.json())
    r = client.post("/v1/ingest", content=b" " * (9 * 1024 * 1024),
                    headers={"X-API-Key": keys["sensor"], "Content-Type": "application/json"})
    assert r.status_code == 413
    assert r.json() in named(openapi["paths"]["/v1/ingest"]["post"]["responses"]["413"]
                             ["content"]["application/json"])


def test_answer_examples_are_the_sample_stores_answers(served):
    """The lead, the weekly figures and the session shown in /docs are what the sample
    store answers (only the times it was computed differ)."""
    client, keys, openapi = served
    paths = openapi["paths"]

    def example(path, name="investigator", method="get", code="200"):
        return paths[path][method]["responses"][code]["content"]["application/json"][
            "examples"][name]["value"]

    inv = {"X-API-Key": keys["investigator"]}
    lead = example("/v1/leads/{lead_id}")
    live = relative(client.get(f"/v1/leads/{lead['lead_id']}", headers=inv).json())
    assert close({**live, "computed_at": 0}, {**lead, "computed_at": 0})
    analyst = client.get(f"/v1/leads/{lead['lead_id']}",
                         headers={"X-API-Key": keys["analyst"]}).json()
    assert close({**relative(analyst), "computed_at": 0},
                 {**example("/v1/leads/{lead_id}", "analyst"), "computed_at": 0})
    weekly = example("/v1/stats/weekly", "week")
    assert close(client.get("/v1/stats/weekly", params={"week": "2026-03-02"},
                            headers=inv).json(), weekly)
    session = example("/v1/sessions")["items"][0]
    live = relative(client.get("/v1/sessions", headers=inv,
                               params={"entity_id": "E-300"}).json())["items"][0]
    shortened = ("evidence",)  # its lines, frames and devices are cut short in the example
    assert {k: v for k, v in live.items() if k not in shortened} == {
        k: v for k, v in session.items() if k not in shortened}
    assert set(live["evidence"]) == set(session["evidence"])
    held = example("/v1/addresses/{ip}", "mining")
    live = relative(client.get(f"/v1/addresses/{held['ip']}", headers=inv,
                               params={"at": "2026-03-02T14:01:00Z"}).json())
    for name in ("ip", "at", "link_status", "subscriber_id", "entity_id", "link_reasons",
                 "link_candidates", "mining"):
        assert live[name] == held[name], name
    assert [d["id"] for d in live["detections_at"]] == [d["id"] for d in held["detections_at"]]
    # the combined filter examples find the answer example's first item
    for path, key in (("/v1/leads", "lead_id"), ("/v1/sessions", "id"),
                      ("/v1/entities", "entity_id")):
        op = paths[path]["get"]
        _, path_params, query, headers, body = requests_of(op)[0]
        live = send(client, path, "get", keys["investigator"], path_params, query, headers,
                    body).json()
        assert [x[key] for x in live["items"]][:1] == [example(path)["items"][0][key]], path


@functools.cache
def scan_jsonl(*captures: str) -> str:
    """`poolwatch scan CAPTURES -f jsonl --no-store`, run as the command (once a session)."""
    return subprocess.run([sys.executable, "-m", "poolwatch.cli", "scan", *captures, "-f",
                           "jsonl", "--no-store"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=True).stdout


def test_the_ingest_example_is_what_scan_writes(served):
    """The documented batch holds records as `poolwatch scan -f jsonl` writes them for the
    two sample captures: same records, same field names."""
    _, _, openapi = served
    documented = named(openapi["paths"]["/v1/ingest"]["post"]["requestBody"]["content"]
                       ["application/json"])[0]["records"]
    captures = ["pcaps/stratum/stratum_v1_cgminer_sha256d.pcap",
                "pcaps/contacts/tls_pool_by_dns_and_sni.pcap"]
    written = [json.loads(line) for line in scan_jsonl(*captures).splitlines()]
    assert [r["event_type"] for r in written] == [r["event_type"] for r in documented]
    for mine, doc in zip(written, documented):
        assert list(mine) == list(doc)
        assert set(mine["evidence"]) == set(doc["evidence"])
        for name in ("community_id", "src_ip", "src_port", "dest_ip", "dest_port",
                     "first_seen", "last_seen"):
            assert mine[name] == doc[name], name
        assert mine["evidence"]["capture_sha256"] == doc["evidence"]["capture_sha256"]
