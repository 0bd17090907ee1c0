"""GET /customers/{id}: two views of one profile."""

import uuid


async def test_admin_view_has_tags_and_note_count_customer_view_has_neither(client, world):
    created = await world.create_customer(client)
    cid = uuid.UUID(created["id"])
    for body in ({"label": "VIP", "color": "#FFD700"}, {"label": "Prefers mornings"}):
        assert (await client.post(f"/customers/{cid}/tags", json=body, headers=world.admin.headers)).status_code == 201
    for content in ("Late three times", "Pays cash"):
        added = await client.post(f"/customers/{cid}/notes", json={"content": content}, headers=world.admin.headers)
        assert added.status_code == 201

    admin_view = (await client.get(f"/customers/{cid}", headers=world.admin.headers)).json()
    own_view = await client.get(f"/customers/{cid}", headers=world.customer(uuid.UUID(created["user_id"])).headers)

    assert [(t["label"], t["color"]) for t in admin_view["tags"]] == [("VIP", "#FFD700"), ("Prefers mornings", None)]
    assert admin_view["notes_count"] == 2
    assert own_view.status_code == 200
    body = own_view.json()
    assert "tags" not in body and "notes_count" not in body and "notes" not in body
    assert "Late three times" not in own_view.text and "VIP" not in own_view.text


async def test_patch_answers_with_the_admin_view_for_admins(client, world):
    created = await world.create_customer(client)
    response = await client.patch(f"/customers/{created['id']}", json={"gender": "other"}, headers=world.admin.headers)
    assert response.json()["tags"] == [] and response.json()["notes_count"] == 0
    mine = world.customer(uuid.UUID(created["user_id"]))
    own = await client.patch(f"/customers/{created['id']}", json={"gender": "male"}, headers=mine.headers)
    assert "tags" not in own.json()
