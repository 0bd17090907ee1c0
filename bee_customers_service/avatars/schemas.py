"""Response shapes of the avatar endpoints."""

import uuid

from bee_customers_service.core.schemas import OutputModel


class AvatarView(OutputModel):
    """The stored avatar after an upload."""

    customer_id: uuid.UUID
    avatar_url: str
    content_type: str
    width: int
    height: int
    size_bytes: int
    version: int  # the customer's version after the change (its ETag on GET /customers/{id})
