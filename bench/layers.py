"""Where a worker's CPU goes, per layer: py-spy's samples of one endpoint under wrk, classified.

    py-spy record --format raw --nonblocking -r 250 -o patch.txt --pid <worker> -d 10
    .venv/bin/python bench/layers.py patch.txt                 # or: bench/api.py --profile DIR

py-spy samples only running threads (an event loop waiting in epoll is not sampled), so the shares
are of the CPU the process spends. Each sample is charged twice:

- to the library layer of its innermost known frame (the code that was on the CPU): the framework
  (uvicorn, starlette, fastapi), validation and serialisation (pydantic, orjson, json), the ORM and
  Core (sqlalchemy), the driver (asyncpg: encoding, decoding, the protocol), token check (jwt,
  cryptography), rate limit (limits, redis), metrics (prometheus_client), logging (structlog,
  logging), the event loop (asyncio, uvloop), our own code;
- to the step of the request it belongs to, from the outermost frame of ours on the stack: the
  middleware, the access dependencies, the route's service call, the outbox event, the audit
  record, the commit, the response.
"""

import argparse
import re
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

# (layer, pattern in the frame's file path, which py-spy gives relative to site-packages or the
# standard library), the first match wins; checked from the innermost frame. Time inside asyncpg's
# compiled protocol (encoding parameters, decoding rows) shows as its innermost Python frame.
LIBRARY_LAYERS: tuple[tuple[str, str], ...] = (
    ("logging", r"(^|/)(structlog|logging)/"),
    ("metrics", r"(^|/)prometheus_client/"),
    ("token check", r"(^|/)(jwt|cryptography)/"),
    ("rate limit", r"(^|/)(limits|redis|slowapi)/"),
    ("validation, serialisation", r"(^|/)(pydantic|pydantic_core|orjson|json|email_validator|phonenumbers)/"),
    ("ORM and Core", r"(^|/)sqlalchemy/"),
    ("driver (asyncpg)", r"(^|/)asyncpg/"),
    ("framework", r"(^|/)(uvicorn|starlette|fastapi|httptools|anyio|h11)/"),
    ("event loop", r"(^|/)(asyncio|uvloop|selectors|concurrent|multiprocessing)/"),
    ("our code", r"(^|/)bee_customers_service/"),
)

# (step, pattern in a frame of ours: "function (path:line)"), most specific first: the audit record
# calls the outbox, the service calls both, the middleware wraps everything.
STEPS: tuple[tuple[str, str], ...] = (
    ("audit record", r"events/audit\.py"),
    ("outbox event", r"events/outbox\.py"),
    ("commit", r"^get_session \(.*core/db\.py"),
    ("access dependencies", r"(core/security\.py|/dependencies\.py)"),
    ("rate limit", r"core/ratelimit\.py"),
    ("metrics", r"core/observability\.py"),
    ("service", r"/(service|repository)\.py"),
    ("router", r"/router\.py"),
    ("middleware", r"core/middleware\.py"),
)

_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^:()]*):?(?P<line>\d*)\)$")


def parse(lines: Iterable[str]) -> list[tuple[list[str], int]]:
    """py-spy's raw format: frames outermost first, separated by ';', then the sample count."""
    stacks = []
    for line in lines:
        line = line.rstrip()
        if not line:
            continue
        frames, _, count = line.rpartition(" ")
        stacks.append((frames.split(";"), int(count)))
    return stacks


def library_layer(frames: list[str]) -> str:
    for frame in reversed(frames):
        match = _FRAME.match(frame)
        path = match["file"] if match else frame
        for layer, pattern in LIBRARY_LAYERS:
            if re.search(pattern, path):
                return layer
    return "other"


def step(frames: list[str]) -> str:
    """The first of STEPS (most specific first) with a frame of ours anywhere on the stack."""
    ours = [frame for frame in frames if "bee_customers_service/" in frame]
    for name, pattern in STEPS:
        if any(re.search(pattern, frame) for frame in ours):
            return name
    return "framework only (no frame of ours)" if not ours else "other of ours"


def breakdown(stacks: list[tuple[list[str], int]]) -> tuple[Counter[str], Counter[str], int]:
    layers: Counter[str] = Counter()
    steps: Counter[str] = Counter()
    total = 0
    for frames, count in stacks:
        layers[library_layer(frames)] += count
        steps[step(frames)] += count
        total += count
    return layers, steps, total


def table(title: str, counts: Counter[str], total: int, cpu_ms: float | None = None) -> str:
    unit = f" | ms/request (of {cpu_ms:.2f})" if cpu_ms else ""
    lines = [f"| {title} | share{unit} |", "| --- | ---: |" + (" ---: |" if cpu_ms else "")]
    for name, count in counts.most_common():
        share = count / total
        lines.append(f"| {name} | {share:.0%}" + (f" | {share * cpu_ms:.2f}" if cpu_ms else "") + " |")
    return "\n".join(lines)


def report(path: Path, cpu_ms: float | None = None) -> str:
    layers, steps, total = breakdown(parse(path.read_text().splitlines()))
    return (
        f"{total} samples\n\n{table('layer (innermost frame)', layers, total, cpu_ms)}\n\n"
        f"{table('step (frame of ours)', steps, total, cpu_ms)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("samples", type=Path, nargs="+", help="py-spy --format raw output files")
    parser.add_argument("--cpu-ms", type=float, help="server CPU ms per request, to turn shares into ms")
    args = parser.parse_args()
    for path in args.samples:
        print(f"## {path.name}\n\n{report(path, args.cpu_ms)}\n")


if __name__ == "__main__":
    sys.exit(main())
