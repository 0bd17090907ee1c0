"""If-Match parsed strictly (RFC 9110): malformed is 400, well-formed but foreign matches nothing."""

import pytest

from bee_customers_service.core.responses import MalformedHeader, parse_if_match


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("*", None),
        (" * ", None),
        ('"3"', {3}),
        ('W/"3"', {3}),
        ('"3", W/"4"', {3, 4}),
        ('"3",\t"4" ,, ', {3, 4}),
        (', "3"', {3}),
        ('"abc"', set()),
        ('""', set()),
        ('"03"', set()),
        ('"99999999999999"', set()),
        ('"\x80\xff"', set()),
    ],
)
def test_well_formed(header, expected):
    result = parse_if_match(header)
    assert result == (None if expected is None else frozenset(expected))


@pytest.mark.parametrize(
    "header",
    ["", " ", ",", " , ,", "3", '"3', '3"', "W/3", 'w/"3"', '"3" "4"', '"a b"', '"a\x01"', '"a\x7f"', '"a""b"',
     '*, "3"', "**", '"3";', '"' + "1" * 1100 + '"'],
)  # fmt: skip
def test_malformed_is_400(header):
    with pytest.raises(MalformedHeader) as raised:
        parse_if_match(header)
    assert raised.value.status == 400


async def test_patch_with_a_malformed_if_match_is_a_400_problem(client, world):
    customer = await world.create_customer(client)
    url = f"/customers/{customer['id']}"
    for header in ("3", "W/3", '"3', ","):
        response = await client.patch(
            url, json={"gender": "other"}, headers={**world.admin.headers, "If-Match": header}
        )
        assert response.status_code == 400, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert problem["status"] == 400 and problem["type"].endswith("/malformed-header")
        assert "If-Match" in problem["detail"]
    foreign = await client.patch(url, json={"gender": "other"}, headers={**world.admin.headers, "If-Match": '"x"'})
    assert foreign.status_code == 412
    current = await client.get(url, headers=world.admin.headers)
    ok = await client.patch(
        url, json={"gender": "other"}, headers={**world.admin.headers, "If-Match": current.headers["etag"]}
    )
    assert ok.status_code == 200, ok.text
