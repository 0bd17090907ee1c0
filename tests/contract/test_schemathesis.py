"""schemathesis over every operation of the live document, with ids and tokens bound to real rows.

Each operation is fuzzed with valid and with invalid input under a recorded seed and under a new
random one (printed, so a failure can be replayed with BEE_SCHEMATHESIS_SEED). Every answer must
be declared: no 5xx, a documented status, content type, body schema and headers.
"""

import contextlib
import os
import random

import pytest
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.contract.conftest import LiveApi

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
RECORDED_SEED = 20261202
# Examples per operation, mode and seed: about 25 operations x 2 modes x 2 seeds x this many
# requests keeps the run near a minute on the CI machine.
EXAMPLES = int(os.environ.get("BEE_SCHEMATHESIS_EXAMPLES", "25"))
# Erasing the bound customer would leave the rest of the run with 404s only: those go last.
DESTRUCTIVE = {("DELETE", "/customers/{customer_id}"), ("DELETE", "/users/{user_id}")}


def _seeds() -> list[int]:
    fixed = os.environ.get("BEE_SCHEMATHESIS_SEED")
    return [int(fixed)] if fixed else [RECORDED_SEED, random.randrange(2**32)]


def _operations(live: LiveApi) -> list[schemathesis.APIOperation]:
    schema = schemathesis.openapi.from_url(f"{live.base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    return sorted(operations, key=lambda op: (op.method.upper(), op.path) in DESTRUCTIVE)


def _bound_ids(live: LiveApi) -> dict[str, str]:
    return {
        "customer_id": live.customer_id,
        "user_id": live.user_id,
        "tag_id": live.tag_id,
        "note_id": live.note_id,
    }


def _fuzz(live: LiveApi, operation: schemathesis.APIOperation, mode: schemathesis.GenerationMode, run_seed: int) -> int:
    """Run one operation's cases; the number of requests sent."""
    # Valid cases use the real rows; invalid ones may also break the path (a malformed id is a 422).
    path_ids = {name: value for name, value in _bound_ids(live).items() if "{" + name + "}" in operation.path}
    if mode is schemathesis.GenerationMode.NEGATIVE:
        path_ids = {}
    sent = 0

    @seed(run_seed)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    @given(
        case=operation.as_strategy(
            generation_mode=mode, path_parameters=path_ids, headers={"Authorization": live.everything["Authorization"]}
        )
    )
    def run(case: schemathesis.Case) -> None:
        nonlocal sent
        if "business_id" in case.query and random.Random(str(case.query)).random() < 0.7:
            case.query["business_id"] = str(live.business_id)  # most searches reach the seeded business
        case.headers = {**(case.headers or {}), "Authorization": live.everything["Authorization"]}
        sent += 1
        case.call_and_validate(base_url=live.base_url, checks=CHECKS, timeout=30)

    with contextlib.suppress(Unsatisfiable):  # nothing of this operation can be made invalid
        run()
    return sent


def test_every_operation_answers_as_documented(live_api: LiveApi) -> None:
    operations = _operations(live_api)
    assert len(operations) >= 20, [op.label for op in operations]
    failures: list[str] = []
    cases = 0
    seeds = _seeds()
    for run_seed in seeds:
        for operation in operations:
            for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
                try:
                    cases += _fuzz(live_api, operation, mode, run_seed)
                except (Exception, BaseExceptionGroup) as exc:  # a failed check: report every operation
                    failures.append(f"{operation.label} [{mode.value}, seed {run_seed}]: {exc}")
    print(f"schemathesis: {len(operations)} operations, {cases} cases, {len(failures)} failures, seeds {seeds}")
    assert not failures, "\n\n".join(failures)


@pytest.fixture(autouse=True)
def _quiet_schemathesis_config(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    # schemathesis discovers a schemathesis.toml from the working directory; this run uses none.
    monkeypatch.chdir(tmp_path)
