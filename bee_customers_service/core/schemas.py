"""Shared schema building blocks: strict input models and wire types."""

from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, PlainSerializer

# Money is Decimal in Python and Numeric(12, 2) in PostgreSQL; on the wire it is a JSON number
# (as in the spec's examples), which is exact for every value Numeric(12, 2) can hold.
Money = Annotated[Decimal, PlainSerializer(float, return_type=float, when_used="json")]


class InputModel(BaseModel):
    """Request bodies: unknown fields are refused, strings are stripped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class OutputModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)
