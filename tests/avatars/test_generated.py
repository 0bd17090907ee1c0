"""GET /customers/{id}/avatar without an upload: a generated SVG with the initials."""

import unicodedata
import uuid
import xml.etree.ElementTree as ET

import pytest

from bee_customers_service.avatars.images import background_colour, contrast_ratio, initials

SVG = "{http://www.w3.org/2000/svg}"


def _parse(svg: bytes) -> tuple[str, str]:
    """(initials text, background fill) as a browser would render them."""
    root = ET.fromstring(svg)  # noqa: S314 (our own output, parsed to check it is well-formed)
    assert root.tag == f"{SVG}svg"
    rect = root.find(f"{SVG}rect")
    text = root.find(f"{SVG}text")
    assert rect is not None and text is not None
    assert root.find(f".//{SVG}script") is None
    return text.text or "", rect.get("fill") or ""


def _rgb(fill: str) -> tuple[int, int, int]:
    return int(fill[1:3], 16), int(fill[3:5], 16), int(fill[5:7], 16)


async def _avatar(client, world, **profile):
    customer = await world.create_customer(client, **profile)
    me = world.customer(uuid.UUID(customer["user_id"]))
    response = await client.get(f"/customers/{customer['id']}/avatar", headers=me.headers)
    return customer, me, response


@pytest.mark.parametrize(
    ("full_name", "expected"),
    [
        ("Ștefan Popescu", "ȘP"),
        (unicodedata.normalize("NFD", "Ștefan Popescu"), "ȘP"),  # decomposed input, same initials
        ("ana maria ionescu", "AI"),
        ("Cher", "C"),
        ("élodie", "É"),
        ("Øyvind Åsheim", "ØÅ"),
        ("王小明", "王"),
        ("<script>alert(1)</script> & Co", "SC"),
        ("  ", "?"),
    ],
)
async def test_initials_in_the_svg(client, world, full_name, expected):
    if not full_name.strip():
        # A profile cannot have a blank name; the helper still answers something drawable.
        assert initials(full_name) == expected
        return
    _customer, _me, response = await _avatar(client, world, full_name=full_name)

    assert response.status_code == 200
    assert response.headers["content-type"] == "image/svg+xml"
    text, _fill = _parse(response.content)
    assert text == expected


async def test_svg_is_cacheable_with_an_etag_and_answers_304(client, world):
    customer, me, response = await _avatar(client, world, full_name="Ana Popescu")
    etag = response.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"')
    assert response.headers["cache-control"] == "private, no-cache"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'none'" in response.headers["content-security-policy"]

    url = f"/customers/{customer['id']}/avatar"
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        cached = await client.get(url, headers={**me.headers, "If-None-Match": header})
        assert cached.status_code == 304, header
        assert cached.content == b""
        assert cached.headers["etag"] == etag
    stale = await client.get(url, headers={**me.headers, "If-None-Match": '"something-else"'})
    assert stale.status_code == 200

    renamed = await client.patch(
        f"/customers/{customer['id']}", json={"full_name": "Bianca Ionescu"}, headers=me.headers
    )
    assert renamed.status_code == 200
    after = await client.get(url, headers={**me.headers, "If-None-Match": etag})
    assert after.status_code == 200
    assert after.headers["etag"] != etag
    assert _parse(after.content)[0] == "BI"


async def test_colour_is_stable_per_customer_and_readable(client, world):
    customer, me, first = await _avatar(client, world, full_name="Ana Popescu")
    again = await client.get(f"/customers/{customer['id']}/avatar", headers=me.headers)
    _other_customer, _other_me, other = await _avatar(client, world, full_name="Ana Popescu")

    fill = _parse(first.content)[1]
    assert _parse(again.content)[1] == fill
    assert first.headers["etag"] == again.headers["etag"]
    assert other.headers["etag"] != first.headers["etag"]  # same name, another customer, another colour
    assert contrast_ratio(_rgb(fill), (255, 255, 255)) >= 4.5


def test_every_derived_colour_reads_well_with_white_text():
    colours = {background_colour(uuid.UUID(int=n * 7919 + 1)) for n in range(2000)}
    assert len(colours) > 300  # varied, not one colour for everybody
    assert min(contrast_ratio(c, (255, 255, 255)) for c in colours) >= 4.5
