"""One line per message of docs/asyncapi.yaml, keyed by routing key (a new event without one fails the build)."""

SUMMARIES: dict[str, str] = {
    # published: bee.customers.events
    "v1.customer.created": "A customer profile was created (POST /customers, or by a consumer for an unknown user).",
    "v1.customer.updated": "Profile fields changed; the new email and phone only when they changed.",
    "v1.customer.avatar_updated": "The avatar was uploaded, replaced or removed.",
    "v1.customer.tagged": "An admin tagged the customer.",
    "v1.customer.untagged": "An admin removed a tag from the customer.",
    "v1.customer.note_added": "An admin wrote an internal note about the customer.",
    "v1.customer.deleted": "The profile was erased (GDPR); it follows every earlier event of the customer.",
    # published: bee.audit.events (spec 5.3)
    "v1.audit.customer.created": "Audit: a profile created, by whom and from where.",
    "v1.audit.customer.updated": "Audit: profile fields changed, with their old and new values.",
    "v1.audit.customer.tagged": "Audit: a tag added.",
    "v1.audit.customer.untagged": "Audit: a tag removed.",
    "v1.audit.customer.note_added": "Audit: a note written, with its text.",
    "v1.audit.customer.note_deleted": "Audit: a note deleted.",
    "v1.audit.customer.avatar_updated": "Audit: the avatar uploaded (old and new URL).",
    "v1.audit.customer.avatar_removed": "Audit: the avatar removed.",
    "v1.audit.customer.stats_recomputed": "Audit: the customer's statistics rebuilt.",
    "v1.audit.customer.exported": "Audit: a GDPR export of the profile.",
    "v1.audit.customer.erased": "Audit: a GDPR erasure of the profile.",
    # consumed: bee_orders_service, bee_scheduling_service (activity/contract.py)
    "v1.order.completed": "An order was completed: counts in the customer's history and statistics.",
    "v1.order.returned": "An order was returned, wholly or partly (returns add up).",
    "v1.order.cancelled": "An order was cancelled.",
    "v1.appointment.booked": "An appointment was booked.",
    "v1.appointment.completed": "An appointment took place.",
    "v1.appointment.cancelled": "An appointment was cancelled.",
    "v1.appointment.no_show": "The customer did not come to an appointment.",
    # consumed: bee_auth_service (identity/contract.py)
    "v1.user.updated": "The account's email, phone or name changed: mirrored into every profile of the user.",
    "v1.user.deleted": "The account was deleted: every profile of the user is erased.",
}
