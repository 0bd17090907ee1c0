"""Request and response shapes of customer tags."""

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints, model_validator

from bee_customers_service.core.schemas import InputModel, OutputModel
from bee_customers_service.core.types import SafeStr, visible_text
from bee_customers_service.customers.schemas import _no_control_chars
from bee_customers_service.tags.models import MAX_LABEL_LENGTH

MAX_TAGS_PER_CUSTOMER = 50

# Stripped by InputModel, then 1..50 characters, storable and visible (a tag of only "\u200b" reads as empty).
Label = Annotated[
    SafeStr,
    StringConstraints(min_length=1, max_length=MAX_LABEL_LENGTH),
    AfterValidator(_no_control_chars),
    AfterValidator(visible_text),
]
Color = Annotated[SafeStr, StringConstraints(pattern=r"^#[0-9A-Fa-f]{6}$")]


class TagCreate(InputModel):
    """`{"label": "VIP"}` or `{"labels": ["VIP", "Blacklisted"]}`; `color` applies to each."""

    label: Label | None = None
    labels: list[Label] | None = Field(default=None, min_length=1, max_length=MAX_TAGS_PER_CUSTOMER)
    color: Color | None = None

    @model_validator(mode="after")
    def _one_of_label_or_labels(self) -> "TagCreate":
        if (self.label is None) == (self.labels is None):
            raise ValueError("send either `label` or `labels`")
        keys = [label.lower() for label in self.all_labels]
        if len(set(keys)) != len(keys):
            raise ValueError("`labels` names the same tag twice (tags ignore case)")
        return self

    @property
    def all_labels(self) -> list[str]:
        return [self.label] if self.label is not None else list(self.labels or [])


class TagView(OutputModel):
    id: uuid.UUID
    customer_id: uuid.UUID
    label: str
    color: str | None
    created_by: uuid.UUID | None
    created_at: datetime


class TagList(OutputModel):
    items: list[TagView]
