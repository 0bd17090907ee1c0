"""Replacing and removing avatars: what happens to the objects, the pointer and the events."""

import asyncio
import uuid

import httpx
from sqlalchemy import text

from tests.avatars import crafted


async def _upload(client, customer, caller, data):
    response = await client.post(
        f"/customers/{customer['id']}/avatar", files={"file": ("a.png", data, "image/png")}, headers=caller.headers
    )
    assert response.status_code == 200, response.text
    return response.json()["avatar_url"]


async def _avatar_events(fetch, customer_id):
    rows = await fetch(
        "SELECT payload FROM outbox WHERE customer_id = :c AND event_name = 'v1.customer.avatar_updated' ORDER BY id",
        c=uuid.UUID(customer_id),
    )
    return [(row["payload"]["old_avatar_url"], row["payload"]["new_avatar_url"]) for row in rows]


async def _avatar_url(fetch, customer_id):
    [row] = await fetch("SELECT avatar_url FROM customers WHERE id = :c", c=uuid.UUID(customer_id))
    return row["avatar_url"]


async def test_replacing_deletes_the_old_object_after_the_new_url_is_committed(client, world, fetch):
    customer = await world.create_customer(client)
    me = world.customer(uuid.UUID(customer["user_id"]))

    first = await _upload(client, customer, me, crafted.png(32, 32))
    second = await _upload(client, customer, me, crafted.png(48, 48))

    assert first != second
    assert (await client.get(first)).status_code == 404
    assert (await client.get(second)).status_code == 200
    assert await _avatar_url(fetch, customer["id"]) == second
    assert await _avatar_events(fetch, customer["id"]) == [(None, first), (first, second)]


async def test_uploading_the_same_image_again_changes_nothing(client, world, fetch):
    customer = await world.create_customer(client)
    data = crafted.png(32, 32)

    first = await _upload(client, customer, world.admin, data)
    again = await _upload(client, customer, world.admin, data)

    assert again == first
    assert (await client.get(first)).status_code == 200  # the object the customer points at survives
    assert await _avatar_events(fetch, customer["id"]) == [(None, first)]


async def test_going_back_to_an_earlier_image_stores_it_again(client, world, fetch):
    """A -> B -> A: A's object was deleted when B replaced it; the third upload writes it again."""
    customer = await world.create_customer(client)
    a, b = crafted.png(32, 32), crafted.png(48, 48)

    first = await _upload(client, customer, world.admin, a)
    second = await _upload(client, customer, world.admin, b)
    third = await _upload(client, customer, world.admin, a)

    assert third == first
    assert (await client.get(third)).status_code == 200
    assert (await client.get(second)).status_code == 404
    assert await _avatar_events(fetch, customer["id"]) == [(None, first), (first, second), (second, first)]


async def test_concurrent_changes_never_leave_a_dangling_url_or_an_orphan(client, world, fetch, app):
    """Uploads (some of the same bytes) and a delete racing for one customer: whatever wins, the
    customer points at an object that exists, and it is the only object left."""
    customer = await world.create_customer(client)
    a, b, c = crafted.png(32, 32), crafted.png(48, 48), crafted.png(40, 40)
    await _upload(client, customer, world.admin, a)

    async def post(data):
        return await client.post(
            f"/customers/{customer['id']}/avatar",
            files={"file": ("x.png", data, "image/png")},
            headers=world.admin.headers,
        )

    responses = await asyncio.gather(
        post(b),
        post(a),
        client.delete(f"/customers/{customer['id']}/avatar", headers=world.admin.headers),
        post(c),
        post(a),
    )

    assert [r.status_code for r in responses] == [200, 200, 204, 200, 200]
    url = await _avatar_url(fetch, customer["id"])
    folder = app.state.avatar_storage.root / "avatars" / customer["business_id"] / customer["id"]
    left = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    if url is None:
        assert left == []
    else:
        assert left == [url.rsplit("/", 1)[1]]
        assert (await client.get(url)).status_code == 200


async def test_a_failing_delete_of_the_old_object_is_logged_not_fatal(client, world, fetch, app, capsys):
    customer = await world.create_customer(client)
    first = await _upload(client, customer, world.admin, crafted.png(32, 32))
    # Make the old object undeletable: a non-empty directory now sits where its file was.
    storage = app.state.avatar_storage
    path = storage.path_for(storage.key_for(first))
    path.unlink()
    path.mkdir()
    (path / "keep").write_bytes(b"x")
    capsys.readouterr()

    second = await _upload(client, customer, world.admin, crafted.png(48, 48))

    assert await _avatar_url(fetch, customer["id"]) == second
    assert "avatar_object_not_deleted" in capsys.readouterr().out
    (path / "keep").unlink()
    path.rmdir()


async def test_a_failed_commit_leaves_no_pointer_and_no_orphan(app, world, fetch, engine):
    """The database refuses the commit: the customer keeps its avatar and the new object is deleted."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://testserver"
    ) as client:
        customer = await world.create_customer(client)
        first = await _upload(client, customer, world.admin, crafted.png(32, 32))
        storage = app.state.avatar_storage
        folder = storage.root / "avatars" / customer["business_id"] / customer["id"]
        trigger = f"bee_test_refuse_commit_{uuid.uuid4().hex[:12]}"
        async with engine.begin() as connection:
            # A deferred constraint trigger fails at COMMIT, after the UPDATE itself succeeded.
            await connection.execute(
                text(
                    "CREATE OR REPLACE FUNCTION bee_test_refuse_commit() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN RAISE EXCEPTION 'commit refused by the test'; END $$"
                )
            )
            await connection.execute(
                text(
                    f"CREATE CONSTRAINT TRIGGER {trigger} AFTER UPDATE ON customers "
                    f"DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
                    f"WHEN (NEW.id = '{uuid.UUID(customer['id'])}'::uuid) EXECUTE FUNCTION bee_test_refuse_commit()"
                )
            )
        try:
            response = await client.post(
                f"/customers/{customer['id']}/avatar",
                files={"file": ("b.png", crafted.png(48, 48), "image/png")},
                headers=world.admin.headers,
            )
        finally:
            async with engine.begin() as connection:
                await connection.execute(text(f"DROP TRIGGER {trigger} ON customers"))

        assert response.status_code == 500
        assert response.headers["content-type"] == "application/problem+json"
        assert await _avatar_url(fetch, customer["id"]) == first
        assert sorted(p.name for p in folder.iterdir()) == [first.rsplit("/", 1)[1]]  # no orphan object
        assert (await client.get(first)).status_code == 200
        assert await _avatar_events(fetch, customer["id"]) == [(None, first)]


async def test_delete_returns_to_the_generated_avatar(client, world, fetch):
    customer = await world.create_customer(client)
    me = world.customer(uuid.UUID(customer["user_id"]))
    url = await _upload(client, customer, me, crafted.png(32, 32))

    response = await client.delete(f"/customers/{customer['id']}/avatar", headers=me.headers)

    assert response.status_code == 204
    assert await _avatar_url(fetch, customer["id"]) is None
    assert (await client.get(url)).status_code == 404
    generated = await client.get(f"/customers/{customer['id']}/avatar", headers=me.headers)
    assert generated.status_code == 200
    assert generated.headers["content-type"] == "image/svg+xml"
    assert await _avatar_events(fetch, customer["id"]) == [(None, url), (url, None)]

    again = await client.delete(f"/customers/{customer['id']}/avatar", headers=me.headers)
    assert again.status_code == 204
    assert len(await _avatar_events(fetch, customer["id"])) == 2  # nothing changed: no event


async def test_delete_of_an_external_url_keeps_other_objects(client, world, fetch):
    """avatar_url set by PATCH to another customer's object: replacing it never deletes that object."""
    victim = await world.create_customer(client)
    victim_url = await _upload(client, victim, world.admin, crafted.png(32, 32))
    attacker = await world.create_customer(client)
    me = world.customer(uuid.UUID(attacker["user_id"]))
    patched = await client.patch(
        f"/customers/{attacker['id']}", json={"avatar_url": "https://cdn.example.com" + victim_url}, headers=me.headers
    )
    assert patched.status_code == 200, patched.text

    await _upload(client, attacker, me, crafted.png(48, 48))
    await client.delete(f"/customers/{attacker['id']}/avatar", headers=me.headers)

    assert (await client.get(victim_url)).status_code == 200
    assert await _avatar_url(fetch, victim["id"]) == victim_url


async def test_patch_with_avatar_url_still_validates(client, world):
    customer = await world.create_customer(client)
    url = f"/customers/{customer['id']}"
    ok = await client.patch(url, json={"avatar_url": "https://cdn.example.com/a.webp"}, headers=world.admin.headers)
    assert ok.status_code == 200
    for bad in ("http://cdn.example.com/a.png", "https://cdn.example.com/a.gif", "https://x/" + "a" * 250 + ".png"):
        response = await client.patch(url, json={"avatar_url": bad}, headers=world.admin.headers)
        assert response.status_code == 422, bad
    redirect = await client.get(f"{url}/avatar", headers=world.admin.headers)
    assert redirect.status_code == 302
    assert redirect.headers["location"] == "https://cdn.example.com/a.webp"


async def test_stored_files_cannot_be_reached_by_traversal(client, world, app):
    customer = await world.create_customer(client)
    url = await _upload(client, customer, world.admin, crafted.png(32, 32))
    (app.state.avatar_storage.root / "secret.txt").write_text("not for you")
    folder = url.rsplit("/", 1)[0]

    for path in (
        "/avatars/%2e%2e/secret.txt",
        "/avatars/..%2fsecret.txt",
        "/avatars/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        f"{folder}/",
        folder,
        f"/avatars/{customer['business_id']}",
        url + ".txt",
        url.replace(".png", ".jpg"),
    ):
        response = await client.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/problem+json"
        assert b"not for you" not in response.content
    head = await client.head(url)
    assert head.status_code == 200
