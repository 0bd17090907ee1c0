"""Probes for Kubernetes: liveness without I/O, readiness that checks what serving needs."""

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import text
from starlette.responses import JSONResponse

from bee_customers_service.core.metrics import SERVICE_READY

router = APIRouter(tags=["health"])

READINESS_TIMEOUT_SECONDS = 2.0


@router.get("/healthcheck", summary="Liveness: the process answers (no I/O)")
async def healthcheck() -> dict[str, str]:
    return {"status": "ok"}


async def _database_ready(app: Any) -> dict[str, Any]:
    engine = app.state.database.engine
    try:
        async with asyncio.timeout(READINESS_TIMEOUT_SECONDS):
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means "not ready", never a crash of the probe
        return {"status": "down", "error": type(exc).__name__}
    return {"status": "up"}


@router.get(
    "/readyz",
    summary="Readiness: the database answers (503 when it does not)",
    responses={
        503: {
            "description": "Not ready: the same report.",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def readyz(request: Request) -> JSONResponse:
    checks: dict[str, Any] = {"database": await _database_ready(request.app)}
    for name, probe in request.app.state.readiness_reporters.items():
        checks[name] = await probe()
    ready = checks["database"]["status"] == "up"
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
    )


async def record_readiness(app: Any) -> None:
    """`service_ready` at each scrape: what /readyz would answer now, whoever probes it (or not)."""
    SERVICE_READY.set(1 if (await _database_ready(app))["status"] == "up" else 0)
