"""schemathesis over the lead API's OpenAPI schema, against a real uvicorn server on SQLite
and on PostgreSQL: no server errors, every response as the schema says (the response models
describe the store's answers exactly), bad input refused. It sends the documented examples
too."""

from __future__ import annotations

from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402

from .test_api import ISP, Server  # noqa: E402
from .test_store import _schemas, backend_urls, drop_schemas, fresh_store  # noqa: E402


@pytest.fixture(scope="module", params=backend_urls(), ids=["sqlite", "postgresql"])
def api_schema(request, tmp_path_factory):
    from poolwatch.link.inputs import load_isp_records
    from poolwatch.scan import scan_sessions
    from poolwatch_api import create_app

    made = len(_schemas)
    store = fresh_store(request.param, Path(tmp_path_factory.mktemp("schema")))
    isp = load_isp_records([ISP])
    store.ingest([s.as_dict() for s in scan_sessions(sorted(ISP.glob("*.pcap")))])
    store.load_registry(isp)
    store.rebuild_leads(isp, week_start=1772409600.0)
    secret = store.create_key("schemathesis", "admin")[1]
    app = create_app(store, isp_loader=lambda: isp, rate=10_000, burst=10_000)
    with Server(app) as base:
        schema = schemathesis.openapi.from_url(base + "/openapi.json")

        @schema.auth()
        class ApiKey:
            def get(self, case, context):
                return secret

            def set(self, case, data, context):
                case.headers = {**(case.headers or {}), "X-API-Key": data}

        yield schema
    store.close()
    drop_schemas(_schemas[made:])


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
def test_the_api_keeps_its_schema(case):
    """Every check but "schema-valid data is accepted": cursors are opaque tokens and some
    values (a CIDR's host bits, an address that parses as neither family) are checked by
    the store, so a random string the schema allows can rightly get a documented 400."""
    from schemathesis.checks import positive_data_acceptance

    case.call_and_validate(excluded_checks=[positive_data_acceptance])
