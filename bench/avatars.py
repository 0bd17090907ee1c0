"""Avatar pipeline timings: validate + re-encode per image size, the generated SVG, and (with
--database-url) full uploads through the app (ASGI in process, local storage, real PostgreSQL).

    .venv/bin/python bench/avatars.py [--repeat 15] [--database-url postgresql://postgres@127.0.0.1:5432/test]

Prints one table. Bounded on purpose (a shared 2-core machine): a few images per case.
"""

import argparse
import asyncio
import io
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bee_customers_service.avatars.images import clean_avatar, initials_svg


def _photo_like(size: int) -> Image.Image:
    """Gradients plus a little noise: compresses like a photo, not like a flat colour."""
    gradient = Image.linear_gradient("L").resize((size, size))
    noise = Image.effect_noise((size, size), 24)
    return Image.merge("RGB", (gradient, noise, gradient.rotate(90)))


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


CASES: list[tuple[str, Callable[[], bytes]]] = [
    ("JPEG 256x256", lambda: _encode(_photo_like(256), "JPEG", quality=85)),
    ("JPEG 1024x1024", lambda: _encode(_photo_like(1024), "JPEG", quality=80)),
    ("JPEG 2048x2048", lambda: _encode(_photo_like(2048), "JPEG", quality=60)),
    ("JPEG 4096x4096 (gradient)", lambda: _encode(Image.linear_gradient("L").resize((4096, 4096)), "JPEG")),
    ("PNG 512x512", lambda: _encode(_photo_like(512), "PNG")),
    ("WebP 1024x1024", lambda: _encode(_photo_like(1024), "WEBP", quality=80)),
]


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95


def bench_pipeline(repeat: int) -> list[tuple[str, str, str, str, str]]:
    rows = []
    for name, make in CASES:
        data = make()
        if len(data) > 1024 * 1024:
            rows.append((f"clean_avatar {name}", f"{len(data) / 1024:.0f} KiB", "over 1 MiB: skipped", "", ""))
            continue
        samples = []
        out = 0
        for _ in range(repeat):
            start = time.perf_counter()
            result = clean_avatar(data, max_dimension=4096)
            samples.append((time.perf_counter() - start) * 1000)
            out = len(result.data)
        p50, p95 = _percentiles(samples)
        rows.append(
            (f"clean_avatar {name}", f"{len(data) / 1024:.0f} KiB", f"{out / 1024:.0f} KiB", f"{p50:.1f}", f"{p95:.1f}")
        )
    samples = []
    for n in range(repeat * 20):
        start = time.perf_counter()
        initials_svg(uuid.UUID(int=n), "Ștefan Popescu")
        samples.append((time.perf_counter() - start) * 1000)
    p50, p95 = _percentiles(samples)
    rows.append(("initials_svg", "-", "~0.5 KiB", f"{p50:.3f}", f"{p95:.3f}"))
    return rows


async def bench_http(database_url: str, repeat: int) -> list[tuple[str, str, str, str, str]]:
    import asyncpg
    import httpx

    from bee_customers_service.app import create_app
    from bee_customers_service.cli import run_migrations
    from bee_customers_service.core.config import Settings
    from bee_customers_service.core.db import to_async_url
    from bee_customers_service.core.security import mint_token

    name = f"bee_bench_{uuid.uuid4().hex[:10]}"
    admin_conn = await asyncpg.connect(database_url)
    await admin_conn.execute(f'CREATE DATABASE "{name}"')
    await admin_conn.close()
    url = database_url.rsplit("/", 1)[0] + "/" + name
    rows = []
    try:
        await asyncio.to_thread(run_migrations, to_async_url(url))
        with tempfile.TemporaryDirectory() as data_dir:
            settings = Settings(
                _env_file=None,
                database_url=url,
                environment="test",
                jwt_secret="bench-secret-0123456789abcdef0123456789ab",  # noqa: S106 (a scratch app)
                data_dir=data_dir,
                ratelimit_enabled=False,
            )
            app = create_app(settings)
            business = uuid.uuid4()
            service = {"Authorization": "Bearer " + mint_token(settings, sub=uuid.uuid4(), roles=["service"])}
            admin = {
                "Authorization": "Bearer "
                + mint_token(settings, sub=uuid.uuid4(), roles=["admin_business"], business_ids=[business])
            }
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                    created = await client.post(
                        "/customers",
                        json={
                            "user_id": str(uuid.uuid4()),
                            "business_id": str(business),
                            "full_name": "Bench Customer",
                            "email": "bench@example.com",
                        },
                        headers=service,
                    )
                    customer_id = created.json()["id"]
                    for label, make in (CASES[0], CASES[1]):
                        samples = []
                        for n in range(repeat):
                            image = Image.open(io.BytesIO(make()))
                            image.putpixel((0, 0), (n % 256, 0, 0))  # a new image each time: a real replace
                            data = _encode(image, "JPEG", quality=85)
                            start = time.perf_counter()
                            response = await client.post(
                                f"/customers/{customer_id}/avatar",
                                files={"file": ("a.jpg", data, "image/jpeg")},
                                headers=admin,
                            )
                            samples.append((time.perf_counter() - start) * 1000)
                            assert response.status_code == 200, response.text
                        p50, p95 = _percentiles(samples)
                        rows.append(
                            (f"POST avatar {label}", f"{len(data) / 1024:.0f} KiB", "200", f"{p50:.1f}", f"{p95:.1f}")
                        )
                    samples = []
                    await client.delete(f"/customers/{customer_id}/avatar", headers=admin)
                    for _ in range(repeat * 5):
                        start = time.perf_counter()
                        response = await client.get(f"/customers/{customer_id}/avatar", headers=admin)
                        samples.append((time.perf_counter() - start) * 1000)
                        assert response.status_code == 200
                    p50, p95 = _percentiles(samples)
                    rows.append(("GET avatar (generated SVG)", "-", "200", f"{p50:.1f}", f"{p95:.1f}"))
    finally:
        admin_conn = await asyncpg.connect(database_url)
        await admin_conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin_conn.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--database-url", help="a PostgreSQL server to create a scratch database on")
    args = parser.parse_args()

    rows = bench_pipeline(args.repeat)
    if args.database_url:
        rows += asyncio.run(bench_http(args.database_url, args.repeat))
    header = ("case", "input", "output", "p50 ms", "p95 ms")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"
    print(line)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |")


if __name__ == "__main__":
    main()
