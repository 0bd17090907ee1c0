"""`bee-customers relay` on its own: publishes the outbox and stops cleanly on SIGTERM."""

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from bee_customers_service.events import outbox

ROOT = Path(__file__).resolve().parents[2]


async def test_relay_command_publishes_and_stops_on_sigterm(
    consumer, rabbitmq, exchange_name, database_url, engine, world
):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEE_")}
    env.update(
        BEE_DATABASE_URL=database_url,
        BEE_RABBITMQ_URL=rabbitmq,
        BEE_EVENTS_EXCHANGE=exchange_name,
        BEE_RELAY_POLL_SECONDS="0.2",
        BEE_RELAY_MAX_BACKOFF_SECONDS="0.5",
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bee_customers_service.cli",
        "relay",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
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
