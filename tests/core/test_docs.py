"""/docs and /redoc work offline: every asset they load comes from the service itself.

In process: each page's <script src> and <link href> is fetched from the app (same origin, 200,
non-empty, the right content type) and no page names another host. Against a real server
(`bee-customers serve` on a free port), headless Chromium renders /docs: the DOM holds the
operations and the screenshot is not blank. Without a Chromium the browser tests skip locally and
fail under CI (scripts/ensure-services.sh installs Debian's `chromium`).
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from PIL import Image

from bee_customers_service.core.docs import STATIC_URL
from tests.conftest import JWT_SECRET
from tests.services import IN_CI, serving

ROOT = Path(__file__).resolve().parent.parent.parent
PAGES = ("/docs", "/redoc")
CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class _References(HTMLParser):
    """The URLs a page loads: script sources, stylesheets and icons."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "script" and values.get("src"):
            self.urls.append(values["src"] or "")
        if tag == "link" and values.get("href"):
            rel = (values.get("rel") or "").lower()
            assert "stylesheet" in rel or "icon" in rel, f"unexpected <link rel={rel!r}>"
            self.urls.append(values["href"] or "")


def _references(html: str) -> list[str]:
    parser = _References()
    parser.feed(html)
    return parser.urls


@pytest.mark.parametrize("page", PAGES)
async def test_every_asset_of_the_docs_page_is_served_by_the_service(client, page):
    response = await client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    urls = _references(response.text)
    assert any(url.endswith(".js") for url in urls), urls
    assert any(url.endswith(".png") for url in urls), urls  # the favicon
    for url in urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc, f"{page} loads {url} from another origin"
        assert parts.path.startswith(f"{STATIC_URL}/"), url
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert asset.content, url
        expected = CONTENT_TYPES[Path(parts.path).suffix]
        assert asset.headers["content-type"].startswith(expected), (url, asset.headers["content-type"])
        assert "x-request-id" in asset.headers  # the request middleware ran around the static files


@pytest.mark.parametrize("page", PAGES)
async def test_the_docs_pages_name_no_other_host(client, page):
    html = (await client.get(page)).text
    assert re.findall(r"(?:https?:)?//[\w.-]+", html) == []  # no CDN, no Google fonts, no validator
    assert "/openapi.json" in html


async def test_the_swagger_page_brings_its_stylesheet_and_oauth2_redirect(client):
    urls = _references((await client.get("/docs")).text)
    assert f"{STATIC_URL}/swagger-ui.css" in urls
    redirect = await client.get("/docs/oauth2-redirect")
    assert redirect.status_code == 200
    assert "oauth2" in redirect.text.lower()


async def test_a_missing_asset_is_a_problem_404(client):
    response = await client.get(f"{STATIC_URL}/nope.js")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_the_docs_routes_are_not_in_the_openapi_document(app, client):
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert not [path for path in paths if path.startswith(("/docs", "/redoc"))]


async def test_static_files_leave_the_request_metrics_bounded(client):
    await client.get(f"{STATIC_URL}/swagger-ui.css")
    await client.get("/docs")
    metrics = (await client.get("/metrics")).text
    assert 'handler="/docs"' in metrics
    assert "swagger-ui.css" not in metrics  # asset paths never become labels


# --- a real browser against a real server ---------------------------------------------------------


def _browser() -> str:
    override = os.environ.get("BEE_TEST_CHROMIUM")
    found = override or next((path for name in BROWSERS if (path := shutil.which(name))), None)
    if found:
        return found
    message = "no Chromium (apt-get install chromium, or scripts/ensure-services.sh)"
    if IN_CI:
        pytest.fail(f"{message}; CI needs it", pytrace=False)
    pytest.skip(message)


@pytest.mark.parametrize(("in_ci", "outcome"), [(True, pytest.fail.Exception), (False, pytest.skip.Exception)])
def test_a_missing_chromium_fails_under_ci_and_skips_locally(monkeypatch, in_ci, outcome):
    monkeypatch.delenv("BEE_TEST_CHROMIUM", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(sys.modules[__name__], "IN_CI", in_ci)
    with pytest.raises(outcome, match="no Chromium"):
        _browser()


@pytest.fixture(scope="module")
def served(database_url) -> Iterator[str]:
    """`bee-customers serve` in its own process, on its default host (127.0.0.1)."""
    with serving(BEE_DATABASE_URL=database_url, BEE_JWT_SECRET=JWT_SECRET) as base_url:
        yield base_url


def _chromium(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="bee-chromium-") as profile:
        return subprocess.run(
            [
                _browser(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                f"--user-data-dir={profile}",
                # Offline: every host but this machine fails to resolve, as on a cut-off network.
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--window-size=1280,2000",
                "--virtual-time-budget=10000",
                *args,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


def test_chromium_renders_the_operations_on_docs(served):
    _browser()
    result = _chromium(f"{served}/docs", "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    assert dom.count('class="opblock ') >= 10, dom[:2000]  # one per operation, all rendered
    assert 'data-path="/customers/{customer_id}"' in dom
    assert "opblock-summary-description" in dom  # the operation summaries
    assert "Failed to load API definition" not in dom


def test_chromium_renders_redoc(served):
    _browser()
    result = _chromium(f"{served}/redoc", "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "/customers/{customer_id}" in result.stdout
    assert "bee_customers_service" in result.stdout


def test_the_docs_screenshot_is_not_blank(served, tmp_path):
    _browser()
    screenshot = tmp_path / "docs.png"
    result = _chromium(f"{served}/docs", f"--screenshot={screenshot}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert screenshot.is_file() and screenshot.stat().st_size > 0
    if keep := os.environ.get("BEE_TEST_KEEP_SCREENSHOT"):
        shutil.copy(screenshot, keep)
    with Image.open(screenshot) as image:
        assert image.size == (1280, 2000)
        colours = image.convert("RGB").getcolors(maxcolors=1_000_000) or []
    # A blank page is one colour; the rendered Swagger UI has text, method badges and borders.
    assert len(colours) > 50, f"{len(colours)} colours"
