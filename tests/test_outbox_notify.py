"""Every committed outbox insert wakes a listener on the relay's channel (the trigger), rollbacks don't."""

import asyncio

import asyncpg

from bee_customers_service.events.outbox import OUTBOX_CHANNEL


async def test_committed_write_notifies_and_rolled_back_write_does_not(client, world, database_url):
    listener = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    received: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(OUTBOX_CHANNEL, lambda *args: received.put_nowait(args[1]))
    try:
        duplicate_base = await world.create_customer(client)
        await asyncio.wait_for(received.get(), timeout=10)  # the create's event woke us

        response = await client.post(
            "/customers", json=world.profile(user_id=duplicate_base["user_id"]), headers=world.service.headers
        )
        assert response.status_code == 409  # rolled back: no event, so no wake-up
        await world.create_customer(client)  # a later committed write still wakes us
        await asyncio.wait_for(received.get(), timeout=10)
        assert received.empty()
    finally:
        await listener.close()
