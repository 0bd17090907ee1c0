"""HTTP surface of internal notes (admins of the customer's business only)."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from starlette.responses import Response

from bee_customers_service.core.dependencies import ReadSessionDep, SessionDep, SettingsDep, require_json
from bee_customers_service.core.idempotency import IdempotentRoute
from bee_customers_service.core.openapi import problems
from bee_customers_service.core.responses import json_response
from bee_customers_service.core.security import AdminCaller
from bee_customers_service.customers.dependencies import AdminOfCustomer, AdminOfCustomerRead
from bee_customers_service.notes import service
from bee_customers_service.notes.dependencies import NoteByCaller
from bee_customers_service.notes.schemas import NoteListParams, NotePage, NoteView

router = APIRouter(prefix="/customers/{customer_id}/notes", tags=["notes"], route_class=IdempotentRoute)


@router.post(
    "",
    status_code=201,
    response_model=NoteView,
    dependencies=[Depends(require_json)],
    responses=problems(404),
    summary="Add an internal note",
)
async def add_note(
    customer: AdminOfCustomer, data: NoteByCaller, session: SessionDep, settings: SettingsDep, principal: AdminCaller
) -> Response:
    note = await service.add_note(session, customer=customer, data=data, actor=principal, settings=settings)
    return json_response(
        NoteView.model_validate(note),
        status_code=201,
        headers={"Location": f"/customers/{customer.id}/notes/{note.id}"},
    )


@router.get("", response_model=NotePage, responses=problems(404), summary="Internal notes, newest first (keyset pages)")
async def list_notes(
    customer: AdminOfCustomerRead,
    session: ReadSessionDep,
    settings: SettingsDep,
    params: Annotated[NoteListParams, Query()],
) -> Response:
    notes, next_cursor = await service.list_notes(
        session, customer=customer, limit=params.limit, cursor=params.cursor, settings=settings
    )
    return json_response(NotePage(items=[NoteView.model_validate(n) for n in notes], next_cursor=next_cursor))


@router.delete("/{note_id}", status_code=204, responses=problems(404), summary="Delete an internal note")
async def delete_note(
    note_id: uuid.UUID, customer: AdminOfCustomer, session: SessionDep, principal: AdminCaller
) -> Response:
    await service.delete_note(session, customer=customer, note_id=note_id, actor=principal)
    return Response(status_code=204)
