"""Each business's distinct name words (migration 0010): what a typo query is compared with.

Kept by triggers on `customers` (insert, delete, rename), never written by the service: every
writer of a name (POST /customers, the activity consumer, PATCH, GDPR erasure, the seed) keeps it
right without knowing about it.
"""

import uuid

from sqlalchemy import Index, Text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from bee_customers_service.core.db import Base


class CustomerNameWord(Base):
    __tablename__ = "customer_name_words"

    business_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    # A distinct word of a customer's search_name (`bee_name_words`: every word, split on spaces).
    # "C" collation, like the keys of the word indexes that resolve it to customers.
    word: Mapped[str] = mapped_column(Text(collation="C"), primary_key=True)

    __table_args__ = (
        Index(
            "ix_customer_name_words_word_trgm",
            "business_id",
            "word",
            postgresql_using="gin",
            postgresql_ops={"word": "gin_trgm_ops"},
        ),
    )
