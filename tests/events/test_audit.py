"""Audit lines of committed events, through the API: who did it, and never the personal data."""

import json


def _audit_lines(captured: str, event_name: str) -> list[dict]:
    lines = [json.loads(line) for line in (raw.strip() for raw in captured.splitlines()) if line.startswith("{")]
    return [line for line in lines if line.get("audit_event") == event_name]


async def test_audit_of_an_untag_names_who_removed_the_tag(client, world, capsys):
    customer = await world.create_customer(client)
    admin = world.admin
    tags_url = f"/customers/{customer['id']}/tags"
    tag = (await client.post(tags_url, json={"label": "VIP"}, headers=admin.headers)).json()
    capsys.readouterr()

    deleted = await client.delete(f"{tags_url}/{tag['id']}", headers=admin.headers)

    assert deleted.status_code == 204
    [audit] = _audit_lines(capsys.readouterr().out, "v1.customer.untagged")
    assert audit["removed_by"] == str(admin.user_id)
    assert audit["tag_id"] == tag["id"]
    assert "tag" not in audit  # the label is personal: it goes to the audit record, not to the logs
    assert (audit["customer_id"], audit["business_id"]) == (customer["id"], str(world.business_id))
    assert audit["event_id"]


async def test_audit_of_a_note_names_the_author_not_the_text(client, world, capsys):
    customer = await world.create_customer(client)
    admin = world.admin
    text = "Confided a private matter 7f3a9c"
    capsys.readouterr()

    response = await client.post(f"/customers/{customer['id']}/notes", json={"content": text}, headers=admin.headers)

    assert response.status_code == 201, response.text
    output = capsys.readouterr().out
    [audit] = _audit_lines(output, "v1.customer.note_added")
    assert audit["note_id"] == response.json()["id"]
    assert audit["created_by"] == str(admin.user_id)
    assert "note" not in audit
    assert "7f3a9c" not in output  # not in the audit line, nor in any other log line
