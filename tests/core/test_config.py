"""Settings edges: the log level in any case, loopback by default, no dev secret on a public address."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from bee_customers_service import cli
from bee_customers_service.core.config import DEV_JWT_SECRET, Settings, get_settings

ROOT = Path(__file__).resolve().parent.parent.parent
REAL_SECRET = "a-real-secret-0123456789abcdef0123456789abcdef"


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No BEE_* from the developer's shell, no `.env`: only what the test sets."""
    for name in list(os.environ):
        if name.startswith("BEE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("signal.signal", lambda *args: None)  # `serve` must not rewire pytest's signals
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


@pytest.mark.parametrize("given", ["warning", "Warning", "WARNING", " warning "])
def test_the_log_level_is_read_in_any_case(clean_env, given):
    clean_env.setenv("BEE_LOG_LEVEL", given)
    assert Settings().log_level == "WARNING"


def test_the_log_level_keyword_is_normalised_too():
    assert Settings(_env_file=None, log_level="debug").log_level == "DEBUG"  # type: ignore[call-arg]


def test_an_unknown_log_level_is_still_refused(clean_env):
    clean_env.setenv("BEE_LOG_LEVEL", "loud")
    with pytest.raises(ValidationError, match="log_level"):
        Settings()


def test_the_default_host_is_loopback(clean_env):
    assert Settings().host == "127.0.0.1"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost", "LOCALHOST", "api.localhost"])
def test_loopback_addresses(host):
    assert cli.is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "192.168.1.10", "example.com", ""])
def test_other_addresses_are_not_loopback(host):
    assert not cli.is_loopback(host)


def test_the_dev_secret_is_fine_on_loopback():
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.jwt_secret is not None and settings.jwt_secret.get_secret_value() == DEV_JWT_SECRET
    assert cli.refuse_public_dev_secret(settings, "127.0.0.1") is None
    assert cli.refuse_public_dev_secret(settings, "localhost") is None


def test_the_dev_secret_is_refused_on_a_public_address():
    settings = Settings(_env_file=None, host="0.0.0.0")  # type: ignore[call-arg]
    refusal = cli.refuse_public_dev_secret(settings, settings.host)
    assert refusal is not None
    assert "0.0.0.0" in refusal and "BEE_JWT_SECRET" in refusal


@pytest.mark.parametrize(
    "overrides",
    [{"jwt_secret": REAL_SECRET}, {"jwt_secret": None, "jwt_public_key": "-----BEGIN PUBLIC KEY-----"}],
)
def test_a_real_key_may_listen_anywhere(overrides):
    settings = Settings(_env_file=None, host="0.0.0.0", **overrides)  # type: ignore[call-arg]
    assert cli.refuse_public_dev_secret(settings, "0.0.0.0") is None


@pytest.mark.parametrize("how", ["flag", "env"])
def test_serve_refuses_a_public_address_with_the_dev_secret_before_binding(clean_env, capsys, how):
    def must_not_run(*args, **kwargs):
        raise AssertionError("serve started a server (or a database) despite the dev secret")

    clean_env.setattr("uvicorn.run", must_not_run)
    clean_env.setattr("bee_customers_service.core.db.resolve_database_url", must_not_run)
    argv = ["serve"]
    if how == "flag":
        argv += ["--host", "0.0.0.0"]
    else:
        clean_env.setenv("BEE_HOST", "0.0.0.0")
    assert cli.main(argv) != 0
    error = capsys.readouterr().err
    assert "refusing to listen on 0.0.0.0" in error
    assert "BEE_JWT_SECRET" in error


def test_serve_passes_the_loopback_default_to_uvicorn(clean_env):
    seen: dict[str, object] = {}
    clean_env.setenv("BEE_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")  # never connected to
    clean_env.setattr("uvicorn.run", lambda *args, **kwargs: seen.update(kwargs))
    assert cli.main(["serve"]) == 0
    assert seen["host"] == "127.0.0.1"


def test_serve_with_a_real_secret_may_listen_on_every_address(clean_env):
    seen: dict[str, object] = {}
    clean_env.setenv("BEE_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    clean_env.setenv("BEE_JWT_SECRET", REAL_SECRET)
    clean_env.setattr("uvicorn.run", lambda *args, **kwargs: seen.update(kwargs))
    assert cli.main(["serve", "--host", "0.0.0.0"]) == 0
    assert seen["host"] == "0.0.0.0"


def test_the_serve_command_exits_with_the_message(tmp_path):
    """The real command, in its own process: non-zero, a clear message, no server, no database."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("BEE_")}
    env["BEE_DATA_DIR"] = str(tmp_path / "data")
    result = subprocess.run(
        [sys.executable, "-m", "bee_customers_service.cli", "serve", "--host", "0.0.0.0", "--port", "1"],
        cwd=tmp_path,  # no `.env` from the checkout
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "refusing to listen on 0.0.0.0" in result.stderr
    assert "development JWT secret" in result.stderr
    assert not (tmp_path / "data").exists()  # it stopped before starting the embedded PostgreSQL
