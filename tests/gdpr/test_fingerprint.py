"""The erasure record's email fingerprint: keyed (HMAC-SHA256, BEE_GDPR_FINGERPRINT_KEY), it finds a re-import."""

import hashlib
import hmac
import uuid

import pytest
from pydantic import SecretStr, ValidationError

from bee_customers_service.core.config import DEV_GDPR_FINGERPRINT_KEY, Settings
from bee_customers_service.gdpr import service as gdpr_service

EMAIL = "Ana.Popescu@Email.com"


def test_the_fingerprint_is_keyed(settings):
    fingerprint = gdpr_service.email_fingerprint(EMAIL, settings)
    normalised = EMAIL.strip().lower().encode()
    assert fingerprint != hashlib.sha256(normalised).hexdigest()  # a bare hash of an email list does not match
    key = settings.gdpr_fingerprint_key.get_secret_value().encode()
    assert fingerprint == hmac.new(key, normalised, hashlib.sha256).hexdigest()
    assert len(fingerprint) == 64  # fits the column (varchar(64)[])
    other_key = settings.model_copy(update={"gdpr_fingerprint_key": SecretStr("another-key-" + "k" * 40)})
    assert gdpr_service.email_fingerprint(EMAIL, other_key) != fingerprint


def test_the_fingerprint_ignores_case_and_surrounding_spaces(settings):
    assert gdpr_service.email_fingerprint(f"  {EMAIL.upper()} \n", settings) == gdpr_service.email_fingerprint(
        EMAIL, settings
    )
    assert gdpr_service.email_fingerprint("ana.popescu2@email.com", settings) != gdpr_service.email_fingerprint(
        EMAIL, settings
    )


def _production(**overrides):
    values = {
        "environment": "production",
        "database_url": "postgresql://x@127.0.0.1/x",
        "jwt_secret": "j" * 48,
        "cursor_secret": "c" * 48,
    }
    return Settings(_env_file=None, **(values | overrides))  # type: ignore[call-arg]


@pytest.mark.parametrize("key", [None, DEV_GDPR_FINGERPRINT_KEY, "too-short"])
def test_production_requires_a_real_fingerprint_key(key):
    with pytest.raises(ValidationError, match="BEE_GDPR_FINGERPRINT_KEY"):
        _production(**({} if key is None else {"gdpr_fingerprint_key": key}))
    assert _production(gdpr_fingerprint_key="g" * 48).gdpr_fingerprint_key.get_secret_value() == "g" * 48


def test_development_has_a_default_key_and_an_empty_one_is_refused():
    assert Settings(_env_file=None).gdpr_fingerprint_key.get_secret_value() == DEV_GDPR_FINGERPRINT_KEY  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="gdpr_fingerprint_key"):
        Settings(_env_file=None, gdpr_fingerprint_key="")  # type: ignore[call-arg]


async def test_a_reimport_is_recognised_by_its_email(client, world, app):
    email = f"re.import.{uuid.uuid4().hex[:10]}@email.com"
    customer = await world.create_customer(client, email=email)
    erased = await client.delete(f"/customers/{customer['id']}", headers=world.admin.headers)
    assert erased.status_code == 204
    record_id = uuid.UUID(erased.headers["Location"].rsplit("/", 1)[1])

    settings = app.state.settings
    async with app.state.database.sessionmaker() as session:
        found = await gdpr_service.erasures_of_email(session, f"  {email.upper()} ", settings)
        other_key = settings.model_copy(update={"gdpr_fingerprint_key": SecretStr("rotated-key-" + "r" * 40)})
        with_another_key = await gdpr_service.erasures_of_email(session, email, other_key)
        someone_else = await gdpr_service.erasures_of_email(session, f"x{email}", settings)

    assert [record.id for record in found] == [record_id]
    assert found[0].email_fingerprints == [gdpr_service.email_fingerprint(email, settings)]
    assert with_another_key == []  # a rotated key does not match the old records (README, "GDPR")
    assert someone_else == []
