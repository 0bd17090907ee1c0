"""The generated avatar at a public, cacheable, unguessable URL: an <img src> needs no bearer token."""

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bee_customers_service.avatars import service
from bee_customers_service.avatars.storage import CACHE_FOREVER
from tests.avatars import crafted
from tests.conftest import JWT_SECRET, make_settings, token_headers
from tests.core.test_docs import _browser, _chromium
from tests.services import serving


async def _generated(client, world, settings, **profile):
    customer = await world.create_customer(client, **profile)
    return customer, service.generated_path(settings, uuid.UUID(customer["id"]), customer["full_name"])


async def test_the_generated_url_needs_no_token_and_is_cached_for_a_year(client, world, settings):
    customer, path = await _generated(client, world, settings, full_name="Ana Popescu")

    response = await client.get(path)  # no Authorization header

    assert response.status_code == 200
    assert response.headers["content-type"] == "image/svg+xml"
    assert response.headers["cache-control"] == CACHE_FOREVER
    assert "script-src" not in response.headers["content-security-policy"]  # default-src 'none'
    assert b">AP</text>" in response.content
    assert "ana" not in path.lower() and "popescu" not in path.lower()  # no name (nor email) in the URL
    assert re.fullmatch(rf"/customers/{customer['id']}/avatar/generated/[0-9a-f]{{32}}\.svg", path)


async def test_a_wrong_token_or_an_unknown_customer_is_a_404(client, world, settings):
    customer, path = await _generated(client, world, settings)
    wrong = path[: -len(".svg") - 1] + ("0" if path[-5] != "0" else "1") + ".svg"

    assert (await client.get(wrong)).status_code == 404
    assert (await client.get(path.replace(customer["id"], str(uuid.uuid4())))).status_code == 404
    # A token made with another server key is no good here.
    other = make_settings(settings.database_url, cursor_secret="another-server-key-0123456789abcdefgh")
    forged = service.generated_path(other, uuid.UUID(customer["id"]), "Ana Popescu")
    assert (await client.get(forged)).status_code == 404


async def test_a_rename_changes_the_url_only_when_the_initials_change(client, world, settings):
    customer, before = await _generated(client, world, settings, full_name="Ana Popescu")
    customer_id = uuid.UUID(customer["id"])

    async def rename(name: str) -> None:
        response = await client.patch(
            f"/customers/{customer['id']}", json={"full_name": name}, headers=world.admin.headers
        )
        assert response.status_code == 200, response.text

    await rename("Anca Pop")  # same initials: same URL, still served
    assert service.generated_path(settings, customer_id, "Anca Pop") == before
    assert (await client.get(before)).status_code == 200

    await rename("Maria Ionescu")  # new initials: a new URL, the old one is gone
    after = service.generated_path(settings, customer_id, "Maria Ionescu")
    assert after != before
    assert (await client.get(before)).status_code == 404
    response = await client.get(after)
    assert response.status_code == 200
    assert b">MI</text>" in response.content


async def test_the_url_is_a_404_once_the_customer_is_erased(client, world, settings):
    customer, path = await _generated(client, world, settings)
    assert (await client.get(path)).status_code == 200

    erased = await client.delete(f"/customers/{customer['id']}", headers=world.admin.headers)
    assert erased.status_code == 204, erased.text

    assert (await client.get(path)).status_code == 404


async def test_a_name_without_initials_gets_the_icon_at_its_public_url(client, world, settings):
    _customer, path = await _generated(client, world, settings, full_name="*** ---")

    response = await client.get(path)

    assert response.status_code == 200
    assert b">?</text>" in response.content


# --- a real browser: <img src> of a generated and an uploaded avatar, from a real server -----------

CURSOR_SECRET = "browser-test-cursor-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def served(database_url, tmp_path_factory) -> Iterator[str]:
    """`bee-customers serve` in its own process, with the local avatar store in a temporary directory."""
    with serving(
        BEE_DATABASE_URL=database_url,
        BEE_JWT_SECRET=JWT_SECRET,
        BEE_CURSOR_SECRET=CURSOR_SECRET,
        BEE_DATA_DIR=str(tmp_path_factory.mktemp("avatars-data")),
        BEE_AVATAR_STORAGE="local",
    ) as base_url:
        yield base_url


_PAGE = """<!doctype html>
<html><body>
<img id="generated" src="{generated}"><img id="uploaded" src="{uploaded}">
<pre id="result">pending</pre>
<script>
  window.addEventListener("load", () => {{
    const size = (id) => document.getElementById(id).naturalWidth;
    document.getElementById("result").textContent =
      "generated=" + (size("generated") > 0) + " uploaded=" + (size("uploaded") > 0);
  }});
</script>
</body></html>
"""


def test_chromium_renders_a_generated_and_an_uploaded_avatar_without_a_token(served, database_url, tmp_path):
    _browser()
    settings = make_settings(database_url, cursor_secret=CURSOR_SECRET)
    business_id = uuid.uuid4()
    service_headers = token_headers(settings, roles=["service"])
    admin_headers = token_headers(settings, roles=["admin_business"], business_ids=[business_id])
    made = []
    for name in ("Ștefan Popescu", "Maria Ionescu"):
        body = {
            "user_id": str(uuid.uuid4()),
            "business_id": str(business_id),
            "full_name": name,
            "email": f"{uuid.uuid4().hex[:12]}@example.com",
        }
        response = httpx.post(f"{served}/customers", json=body, headers=service_headers, timeout=10)
        assert response.status_code == 201, response.text
        made.append(response.json())
    generated, uploaded = made
    upload = httpx.post(
        f"{served}/customers/{uploaded['id']}/avatar",
        files={"file": ("me.png", crafted.png(), "image/png")},
        headers=admin_headers,
        timeout=10,
    )
    assert upload.status_code == 200, upload.text
    uploaded_url = upload.json()["avatar_url"]
    # The URL the dashboard gets: the profile's (and the search item's) avatar_url.
    profile = httpx.get(f"{served}/customers/{generated['id']}", headers=admin_headers, timeout=10).json()
    generated_url = profile["avatar_url"]
    assert generated_url == service.generated_path(settings, uuid.UUID(generated["id"]), generated["full_name"])
    assert generated["avatar_url"] == generated_url  # the create's answer carries it too

    page: Path = tmp_path / "avatars.html"
    page.write_text(
        _PAGE.format(
            generated=f"{served}{generated_url}",
            uploaded=uploaded_url if uploaded_url.startswith("http") else f"{served}{uploaded_url}",
        )
    )
    result = _chromium(page.as_uri(), "--dump-dom", "--allow-file-access-from-files")

    assert result.returncode == 0, result.stderr[-2000:]
    assert "generated=true uploaded=true" in result.stdout, result.stdout[-2000:]


async def test_profiles_and_search_items_carry_the_generated_url_when_nothing_was_uploaded(client, world, settings):
    customer, path = await _generated(client, world, settings, full_name="Ana Popescu")
    profile = (await client.get(f"/customers/{customer['id']}", headers=world.admin.headers)).json()
    own = (
        await client.get(
            f"/customers/{customer['id']}",
            headers=world.caller(["customer"], sub=uuid.UUID(customer["user_id"])).headers,
        )
    ).json()
    search = await client.get("/customers", params={"business_id": str(world.business_id)}, headers=world.admin.headers)
    [item] = [i for i in search.json()["items"] if i["id"] == customer["id"]]

    assert profile["avatar_url"] == own["avatar_url"] == item["avatar_url"] == customer["avatar_url"] == path
    assert (await client.get(path)).status_code == 200  # no token
