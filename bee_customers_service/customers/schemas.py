"""Request and response shapes of the customer profile."""

import re
import uuid
from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self
from urllib.parse import urlsplit

import langcodes
from pydantic import (
    AfterValidator,
    BeforeValidator,
    EmailStr,
    Field,
    StringConstraints,
    ValidationInfo,
    model_validator,
)

from bee_customers_service.core.config import Settings
from bee_customers_service.core.schemas import InputModel, Money, OutputModel
from bee_customers_service.core.types import SafeStr, storable_text, visible_text
from bee_customers_service.customers import avatar_links

Gender = Literal["male", "female", "other"]
Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]

_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
AVATAR_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")


def _no_control_chars(value: str) -> str:
    if _CONTROL_CHARS.search(value):
        raise ValueError("must not contain control characters")
    return value


def _storable_if_text(value: Any) -> Any:
    return storable_text(value) if isinstance(value, str) else value


def _lower_email(value: str) -> str:
    if len(value) > 100:
        raise ValueError("must be at most 100 characters")
    return value.lower()


def _bcp47(value: str) -> str:
    if not langcodes.tag_is_valid(value):
        raise ValueError("must be a BCP 47 language tag, e.g. 'ro' or 'en-GB'")
    return langcodes.standardize_tag(value)


def _avatar_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.netloc:
        raise ValueError("must be an https URL")
    if not parts.path.lower().endswith(AVATAR_EXTENSIONS):
        raise ValueError("must point to a .jpg, .jpeg, .png or .webp image")
    return value


# A name a person can read: storable, no control characters, not only invisible ones ("\u200b\u200b").
FullName = Annotated[
    SafeStr,
    StringConstraints(min_length=1, max_length=100),
    AfterValidator(_no_control_chars),
    AfterValidator(visible_text),
]
# NUL and surrogates are refused before email-validator sees the address (it must never reach PostgreSQL).
Email = Annotated[EmailStr, BeforeValidator(_storable_if_text), AfterValidator(_lower_email)]
# The raw phone as typed; the service normalises it to E.164 with the configured default region.
PhoneInput = Annotated[SafeStr, StringConstraints(min_length=3, max_length=32, pattern=r"^[0-9+()./\- ]+$")]
AvatarUrl = Annotated[SafeStr, StringConstraints(max_length=255), AfterValidator(_avatar_url)]
LanguageTag = Annotated[SafeStr, StringConstraints(min_length=2, max_length=35), AfterValidator(_bcp47)]


class Preferences(InputModel):
    """What the customer prefers; every key optional, unknown keys refused."""

    language: LanguageTag | None = None
    contact_channel: Literal["email", "sms", "phone", "none"] | None = None
    preferred_days: list[Weekday] | None = Field(default=None, max_length=7)
    preferred_time_of_day: Literal["morning", "afternoon", "evening"] | None = None
    marketing_opt_in: bool | None = None

    @model_validator(mode="after")
    def _unique_days(self) -> "Preferences":
        if self.preferred_days is not None and len(set(self.preferred_days)) != len(self.preferred_days):
            raise ValueError("preferred_days must not repeat a day")
        return self


class CustomerProfileIn(InputModel):
    """A new profile's fields, without its keys: the body of PUT /businesses/{b}/customers/{u}."""

    full_name: FullName
    email: Email
    phone: PhoneInput | None = None
    gender: Gender | None = None
    avatar_url: AvatarUrl | None = None
    preferences: Preferences | None = None


class CustomerCreate(CustomerProfileIn):
    """The body of POST /customers: the profile and its keys (user, business)."""

    user_id: uuid.UUID
    business_id: uuid.UUID


IMMUTABLE_FIELDS = ("id", "user_id", "business_id")
NON_NULLABLE_FIELDS = ("full_name", "email", "preferences")


class CustomerUpdate(InputModel):
    """A partial update: only the fields sent change; `null` clears an optional field.

    `preferences` is merged key by key; a key sent as `null` is removed.
    """

    full_name: FullName | None = None
    email: Email | None = None
    phone: PhoneInput | None = None
    gender: Gender | None = None
    avatar_url: AvatarUrl | None = None
    preferences: Preferences | None = None

    @model_validator(mode="before")
    @classmethod
    def _refuse_immutable_and_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name in IMMUTABLE_FIELDS:
                if name in data:
                    raise ValueError(f"{name} is immutable and cannot be changed")
            for name in NON_NULLABLE_FIELDS:
                if name in data and data[name] is None:
                    raise ValueError(f"{name} cannot be null")
        return data


AVATAR_LINK_KEY = "avatar_link_key"


def view_context(settings: Settings) -> dict[str, Any]:
    """What a view needs beyond the row (`model_validate(..., context=...)`): the avatar links' key."""
    return {AVATAR_LINK_KEY: avatar_links.link_key(settings.cursor_secret.get_secret_value())}


class ShowsAvatar(OutputModel):
    """A view with `id`, `full_name` and `avatar_url`. Built with `view_context`, a customer without
    an uploaded avatar shows its generated one: a public URL an <img> can load (avatar_links.py)."""

    if TYPE_CHECKING:  # declared by each view, in its own field order
        id: uuid.UUID
        full_name: str
        avatar_url: str | None

    @model_validator(mode="after")
    def _generated_avatar(self, info: ValidationInfo) -> Self:
        key = info.context.get(AVATAR_LINK_KEY) if isinstance(info.context, dict) else None
        if key is not None and self.avatar_url is None:
            self.avatar_url = avatar_links.generated_path(key, self.id, self.full_name)
        return self


class CustomerView(ShowsAvatar):
    """The profile as the customer themselves sees it: never tags or notes."""

    id: uuid.UUID
    user_id: uuid.UUID
    business_id: uuid.UUID
    full_name: str
    email: str
    phone: str | None
    gender: Gender | None
    avatar_url: str | None
    preferences: dict[str, Any]
    total_orders: int
    total_appointments: int
    last_order_date: date | None
    last_appointment_date: date | None
    # Money per currency (activity/): null when the customer paid in several currencies (their stats
    # list each one); `lifetime_value_currency` names the one currency, null when none or several.
    lifetime_value: Money | None
    lifetime_value_currency: str | None
    created_at: datetime
    updated_at: datetime
    version: int


class TagSummary(OutputModel):
    id: uuid.UUID
    label: str
    color: str | None = None


class AdminCustomerView(CustomerView):
    """The profile as a business admin sees it: everything, with tags and the count of notes."""

    tags: list[TagSummary] = []
    notes_count: int = 0


class CustomerConflict(OutputModel):
    existing_customer_id: uuid.UUID
