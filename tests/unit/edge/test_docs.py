"""The gateway's /docs works with no internet access: Swagger UI comes from the package."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.support.gateway import Harness
from vitalchain.edge import server
from vitalchain.edge.server import serve_docs


def test_docs_load_swagger_ui_from_the_gateway_itself(harness: Harness) -> None:
    """Regression: FastAPI's default page loaded Swagger UI from cdn.jsdelivr.net, so /docs
    was blank on a network without internet access."""
    page = harness.client.get("/docs")
    assert page.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources, page.text
    assert all(s.startswith("/") for s in sources), sources  # nothing from another host
    assert "cdn" not in page.text
    assert "url: '/openapi.json'" in page.text
    js = harness.client.get("/static/swagger-ui/swagger-ui-bundle.js")
    assert js.status_code == 200
    assert "javascript" in js.headers["content-type"]
    assert "SwaggerUIBundle" in js.text
    css = harness.client.get("/static/swagger-ui/swagger-ui.css")
    assert css.status_code == 200
    assert "text/css" in css.headers["content-type"]
    assert harness.client.get("/redoc").status_code == 404  # CDN-only, so not offered


def test_without_the_vendored_assets_docs_says_how_to_get_them(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "DOCS_ASSETS", tmp_path)
    app = FastAPI(docs_url=None, redoc_url=None)
    serve_docs(app)
    with TestClient(app) as client:
        page = client.get("/docs")
    assert page.status_code == 503
    assert "make setup" in page.text
    assert "docs_assets_missing" in page.text
