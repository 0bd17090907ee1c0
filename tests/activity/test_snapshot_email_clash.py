"""A snapshot whose email another customer of the business holds is dead-lettered (issue 18.2)."""

import json
import uuid

from tests.activity.upstream import order_completed


async def test_a_snapshot_with_a_taken_email_is_dead_lettered(client, world, feed, fetch):
    holder = await world.create_customer(client, email="ioana@example.com")
    user_id = uuid.uuid4()
    stranger = {"user_id": str(user_id), "business_id": str(world.business_id)}
    key, body = order_completed(stranger, snapshot={"full_name": "Ioana Marin", "email": " IOANA@example.com"})
    await feed.send((key, body))

    [dead] = [d for d in await feed.dead_letters(expect=1) if json.loads(d.body).get("event_id") == body["event_id"]]
    assert dead.reason.startswith("email taken")
    assert holder["id"] not in dead.reason
    assert await fetch("SELECT 1 FROM customers WHERE user_id = :u", u=user_id) == []
    [row] = await fetch("SELECT total_orders FROM customers WHERE id = :c", c=uuid.UUID(holder["id"]))
    assert row["total_orders"] == 0
