"""`bee-customers relay` on its own: publishes the outbox and stops cleanly on SIGTERM."""

import asyncio
import signal
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from bee_customers_service.events import outbox
from tests.events.tools import spawn_relay


async def test_relay_command_publishes_and_stops_on_sigterm(
    consumer, audit_consumer, rabbitmq, exchange_name, audit_exchange_name, database_url, engine, world
):
    process = await spawn_relay(
        database_url, rabbitmq, exchange_name, audit_exchange=audit_exchange_name, capture_output=True
    )
    try:
        customer_id = uuid.uuid4()
        async with AsyncSession(engine) as session:
            await outbox.enqueue(
                session, "v1.customer.created", business_id=world.business_id, customer_id=customer_id, fields={}
            )
            await session.commit()
        [body] = await consumer.wait_for_count(world.business_id, 1)
        assert body["event"] == "v1.customer.created"

        process.send_signal(signal.SIGTERM)
        output = (await asyncio.wait_for(process.communicate(), timeout=30))[0].decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, output
    assert "outbox_relay_leader" in output
