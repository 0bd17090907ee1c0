"""The S3-compatible server the S3 backend tests run against, one per test session."""

from collections.abc import Iterator

import pytest

from tests.s3server import S3Server, S3ServerUnavailable, SeaweedFS
from tests.services import IN_CI


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """SeaweedFS on loopback. When it cannot run: skipped locally, a failure under CI."""
    seaweed = SeaweedFS(tmp_path_factory.mktemp("seaweedfs"))
    try:
        server = seaweed.start()
    except S3ServerUnavailable as exc:
        if IN_CI:
            pytest.fail(f"SeaweedFS could not start: {exc}", pytrace=False)
        pytest.skip(f"SeaweedFS could not start: {exc}")
    try:
        yield server
    finally:
        seaweed.stop()
