"""What the HTTP answers themselves promise: no redirect that follows the Host header, HSTS
when the request came over HTTPS (directly or from a trusted proxy), and only the app's own
assets allowed by its Content-Security-Policy."""

from __future__ import annotations

import httpx
from fixtures.api import Api

from plantstream.testing import app_in_thread


def test_a_trailing_slash_is_not_redirected_to_the_host_header(api: Api) -> None:
    key = api.make_key("read")
    for path in ("/v1/latest/", "/v1/facilities/", "/healthz/", "/docs/"):
        answer = api.client.get(
            path,
            params={"facility": "plant-01"},
            headers={**api.headers(key), "Host": "evil.example"},
            follow_redirects=False,
        )
        assert "location" not in answer.headers, (path, answer.headers)
        assert answer.status_code == 404, path
        assert answer.json()["error"]["code"] == "not_found"


def test_hsts_is_sent_only_over_https_from_a_trusted_proxy(api: Api) -> None:
    """uvicorn as the runtime configures it: proxy headers trusted from forwarded_allow_ips."""
    https = {"X-Forwarded-Proto": "https"}
    with app_in_thread(api.client.app, proxy_headers=True, forwarded_allow_ips="127.0.0.1") as url:
        behind_tls = httpx.get(url + "/healthz", headers=https)
        plain = httpx.get(url + "/healthz")
    assert behind_tls.headers["strict-transport-security"] == (
        f"max-age={api.state.settings.hsts_max_age_seconds}; includeSubDomains"
    )
    assert "strict-transport-security" not in plain.headers
    # the same header from a client that is not a trusted proxy changes nothing
    with app_in_thread(api.client.app, proxy_headers=True, forwarded_allow_ips="192.0.2.1") as url:
        spoofed = httpx.get(url + "/healthz", headers=https)
    assert "strict-transport-security" not in spoofed.headers


def test_docs_load_only_assets_the_app_serves(api: Api) -> None:
    page = api.client.get("/docs")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "script-src 'self';" in csp
    assert "<script>" not in page.text  # no inline script: the CSP would block it
    for src in ("docs/assets/swagger-ui-bundle.js", "docs/assets/start.js"):
        assert f'src="{src}"' in page.text
        asset = api.client.get("/" + src)
        assert asset.status_code == 200
        assert asset.headers["content-type"].startswith("application/javascript")
    assert "cdn" not in page.text.lower()
    # only the files the page loads: nothing else of the bundle, no path tricks
    for name in ("index.html", "swagger-initializer.js", "..%2F__init__.py"):
        assert api.client.get("/docs/assets/" + name).status_code == 404
