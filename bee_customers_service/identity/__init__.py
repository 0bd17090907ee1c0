"""Identity: bee_auth_service's user events mirrored into the customer profiles (docs/events.md)."""
