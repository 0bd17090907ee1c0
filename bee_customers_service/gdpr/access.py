"""Who reaches an erasure record: internal services every record, an admin those of its businesses."""

import uuid
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RecordScope:
    admin_of: frozenset[uuid.UUID]
    every_business: bool = False
