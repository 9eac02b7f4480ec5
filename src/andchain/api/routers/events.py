"""/v1/events and /v1/webhooks: the event feed, its server-sent stream, and webhook subscriptions.

Every route takes the client the caller is restricted to (`client_scope`: None is the bank,
which sees every client) and passes it to the domain, which shows a client only its own
events, webhooks and deliveries.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import anyio
import anyio.to_thread
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection
from sse_starlette import EventSourceResponse, ServerSentEvent

from andchain.api.auth import BANK_WRITERS, READERS, Principal, Role, allow, authenticate
from andchain.api.body import StrictJSONRoute
from andchain.api.deps import CURSOR_VALUE_MAX, context, idempotency
from andchain.api.idempotency import IdempotencyStore, idempotency_key, openapi_parameter
from andchain.api.problems import ApiProblem, responses
from andchain.context import Context
from andchain.events import EVENT_TYPES, EventLog, Page, type_filter
from andchain.events.store import TypeFilter, canonical
from andchain.events.webhooks import DELIVERY_STATUSES, Webhooks

router = APIRouter(prefix="/v1", route_class=StrictJSONRoute)

STREAM_PAGE = 500
WEBHOOK_ID_LENGTH_MAX = 40
TYPES_DESCRIPTION = (
    "only these types (repeat the parameter for several); a family such as 'operation.*' matches every type "
    f"of it. Types: {', '.join(EVENT_TYPES)}"
)


def reader_scope(principal: Principal = allow(READERS, Role.CLIENT)) -> str | None:
    """The client a reader may see: its own for a client key; None for the bank, which sees every client."""
    return principal.only_client()


def writer_scope(principal: Principal = allow(BANK_WRITERS, Role.CLIENT)) -> str | None:
    """The client a writer may act for: its own for a client key; None for the bank's operators."""
    return principal.only_client()


def _idempotent() -> dict[str, Any]:
    return {"parameters": [openapi_parameter()]}


def _events(ctx: Context) -> EventLog:
    return EventLog(ctx.engine)


def _webhooks(ctx: Context) -> Webhooks:
    return Webhooks(ctx.engine, ctx.settings.events, clock=ctx.clock)


def _types(values: list[str] | None) -> TypeFilter | None:
    return type_filter(values) if values else None


# ------------------------------------------------------------------ models


class EventOut(BaseModel):
    id: int = Field(description="monotonic: a later event has a larger id (ids may skip)")
    type: str = Field(examples=["operation.succeeded"])
    occurred_at: str
    client_id: str | None = Field(description="the client it belongs to; null for a bank-wide event")
    subject: str = Field(description="what it is about: an operation id, a booked chain transfer, a reconcile finding")
    data: dict[str, Any]


class EventPage(BaseModel):
    data: list[EventOut]
    next_after: int = Field(description="pass as `after` to read on; the same value when nothing new has settled")
    has_more: bool = Field(description="true when the page was full: read on at once")


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    url: str = Field(min_length=1, max_length=2000, examples=["https://example.com/andchain/webhooks"])
    client_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="the client whose events it receives; omitted: the bank's, every event",
    )
    types: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        default=None, max_length=50, description="only these types or families ('operation.*'); omitted: every type"
    )
    description: str = Field(default="", max_length=500)


class WebhookOut(BaseModel):
    id: str
    url: str
    client_id: str | None
    types: list[str] | None
    description: str
    active: bool
    after_event_id: int = Field(description="the last event turned into deliveries for it")
    created_at: str
    updated_at: str


class WebhookCreated(WebhookOut):
    secret: str = Field(
        description="the signing secret (whsec_...): shown in this response only (and in its idempotent replay)"
    )


class WebhookPage(BaseModel):
    data: list[WebhookOut]
    next_cursor: str | None


class AttemptOut(BaseModel):
    at: str
    kind: Literal["attempt", "replay"]
    status_code: int | None
    error: str | None
    duration_ms: int | None


class DeliveryOut(BaseModel):
    id: int
    webhook_id: str
    event_id: int
    event_type: str
    message_id: str = Field(description="the webhook-id header: the same on every attempt and replay")
    status: Literal["pending", "succeeded", "failed", "cancelled"]
    attempts: int = Field(description="attempts since it was queued or last replayed")
    next_attempt_at: str | None
    last_status_code: int | None
    last_error: str | None
    created_at: str
    updated_at: str
    log: list[AttemptOut] = Field(description="its latest attempts and replays, oldest first")


class DeliveryPage(BaseModel):
    data: list[DeliveryOut]
    next_cursor: str | None


class ReplayOut(BaseModel):
    queued: int = Field(description="deliveries queued again or for the first time")
    next_after: int = Field(description="replay again from this event id for more")
    has_more: bool


# ----------------------------------------------------------------- cursors


def _encode(value: str) -> str:
    return base64.urlsafe_b64encode(f"v1:{value}".encode()).decode().rstrip("=")


def _decode(cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        if len(cursor) > 80 or not cursor.isascii():
            raise ValueError(cursor)
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        prefix, _, value = text.partition(":")
        if prefix != "v1" or not value or not value.isascii() or not value.isprintable():
            raise ValueError(text)
        return value
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ApiProblem(400, "invalid_cursor", "cursor is not one this API returned; start without a cursor") from None


def _delivery_cursor(cursor: str | None) -> int:
    value = _decode(cursor)
    if value is None:
        return 0
    if not value.isdigit() or len(value) > 19 or int(value) > CURSOR_VALUE_MAX:
        raise ApiProblem(400, "invalid_cursor", "cursor is not one this API returned; start without a cursor")
    return int(value)


def _webhook_id(webhook_id: str) -> str:
    if len(webhook_id) > WEBHOOK_ID_LENGTH_MAX:
        raise ApiProblem(404, "webhook_not_found", f"no webhook with that id (ids are at most {WEBHOOK_ID_LENGTH_MAX})")
    return webhook_id


# ------------------------------------------------------------------ events

_LIST_REFUSED = {
    422: "invalid_request: a query parameter is out of range; unknown_event_type: a type filter names no type",
}
AFTER = Query(
    0, ge=0, le=CURSOR_VALUE_MAX, description="the last event id already read (0: from the start); see next_after"
)
TYPES = Query(None, alias="type", description=TYPES_DESCRIPTION)


@router.get(
    "/events",
    tags=["events"],
    summary="Events after a position, oldest first",
    response_model=EventPage,
    responses=responses({200: "a page of events"}, _LIST_REFUSED),
)
def list_events(
    ctx: Context = Depends(context),
    client_id: str | None = Depends(reader_scope),
    after: int = AFTER,
    limit: int = Query(100, ge=1, le=1000),
    types: list[str] | None = TYPES,
) -> dict[str, Any]:
    """Ids only grow, but may skip (a change that rolled back) and are returned only once settled (no
    event can still appear below them): read on from `next_after`, never from an id plus one."""
    page = _events(ctx).read(after=after, limit=limit, types=_types(types), client_id=client_id)
    return {"data": [e.view() for e in page.events], "next_after": page.position, "has_more": page.more}


def _last_event_id(header: str | None) -> int | None:
    if header is None or not header.strip():
        return None
    value = header.strip()
    if not value.isascii() or not value.isdigit() or len(value) > 19 or int(value) > CURSOR_VALUE_MAX:
        raise ApiProblem(400, "invalid_last_event_id", "Last-Event-ID must be an event id this API sent")
    return int(value)


@router.get(
    "/events/stream",
    tags=["events"],
    summary="Events as they happen (server-sent events), resuming from Last-Event-ID",
    response_class=EventSourceResponse,
    responses={
        **responses(
            {200: "text/event-stream: one `id`/`event`/`data` message per event; `: ping` comments as heartbeats"},
            {400: "invalid_last_event_id: Last-Event-ID is not an event id", **_LIST_REFUSED},
        ),
        200: {
            "description": (
                "text/event-stream: one message per event (`id:` the event id, `event:` its type, `data:` the "
                "event as GET /v1/events shows it) and `: ping` comments as heartbeats; the server ends the "
                "stream after events.stream_max_s, and a client reconnects with Last-Event-ID"
            ),
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
    },
)
async def stream_events(
    request: Request,
    principal: Principal = Depends(authenticate),
    ctx: Context = Depends(context),
    client_id: str | None = Depends(reader_scope),
    after: int | None = Query(
        None,
        ge=0,
        le=CURSOR_VALUE_MAX,
        description="start after this event id; omitted (and no Last-Event-ID): only events from now on",
    ),
    types: list[str] | None = TYPES,
    last_event_id: str | None = Header(
        None, alias="Last-Event-ID", description="sent by a reconnecting client: resume after it (wins over `after`)"
    ),
) -> EventSourceResponse:
    settings = ctx.settings.events
    wanted = _types(types)
    resume = _last_event_id(last_event_id)
    log = _events(ctx)
    start = resume if resume is not None else after
    if start is None:
        start = await anyio.to_thread.run_sync(log.head)

    def read(position: int) -> Page:
        return log.read(after=position, limit=STREAM_PAGE, types=wanted, client_id=client_id)

    def usable() -> bool:
        return ctx.api_keys.get(principal.key_id).usable(ctx.clock())

    async def messages() -> AsyncIterator[ServerSentEvent]:
        position = start
        deadline = anyio.current_time() + settings.stream_max_s
        yield ServerSentEvent(retry=int(settings.stream_poll_s * 1000), comment=f"after {position}")
        while anyio.current_time() < deadline:
            page = await anyio.to_thread.run_sync(read, position)
            # A key revoked, or past its expiry, while the stream runs ends it at the next look. Checked
            # after the read: nothing that happened after the revocation is ever sent.
            if not await anyio.to_thread.run_sync(usable):
                return
            for event in page.events:
                yield ServerSentEvent(data=canonical(event.view()), id=str(event.id), event=event.type)
            position = page.position
            if not page.more:
                await anyio.sleep(min(settings.stream_poll_s, max(0.0, deadline - anyio.current_time())))

    return EventSourceResponse(messages(), ping=settings.stream_heartbeat_s, send_timeout=30)


# ---------------------------------------------------------------- webhooks

_NO_WEBHOOK = {404: "webhook_not_found: no webhook with this id (that this caller may see)"}


@router.post(
    "/webhooks",
    status_code=201,
    tags=["webhooks"],
    summary="Subscribe a URL to events (the signing secret is in this response only)",
    response_model=WebhookCreated,
    openapi_extra=_idempotent(),
    responses=responses(
        {201: "subscribed: the subscription, with its signing secret"},
        {
            403: "forbidden: a client subscribes to its own events only",
            422: (
                "invalid_url (http(s), a host, no credentials), unknown_event_type, too_many_webhooks (100 active "
                "per client, and for the bank)"
            ),
        },
        post=True,
    ),
)
def create_webhook(
    body: WebhookIn,
    key: str = Depends(idempotency_key),
    principal: Principal = Depends(authenticate),
    ctx: Context = Depends(context),
    client_id: str | None = Depends(writer_scope),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    # The subscription and the stored answer commit together: a retry gets the same one, never a second.
    def handler(conn: Connection) -> tuple[int, dict[str, Any]]:
        sub, secret = _webhooks(ctx).create(
            body.url,
            types=body.types,
            description=body.description,
            subscriber=body.client_id,
            client_id=client_id,
            conn=conn,
        )
        return 201, {**sub.view(), "secret": secret}

    return store.run_atomic(
        f"{principal.key_id} POST /v1/webhooks", key, {"scope": client_id, **body.model_dump(mode="json")}, handler
    )


@router.get(
    "/webhooks",
    tags=["webhooks"],
    summary="List webhook subscriptions",
    response_model=WebhookPage,
    responses=responses(
        {200: "a page of subscriptions (never their secrets)"},
        {400: "invalid_cursor: the cursor is not one this API returned", **_LIST_REFUSED},
    ),
)
def list_webhooks(
    ctx: Context = Depends(context),
    client_id: str | None = Depends(reader_scope),
    cursor: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    rows = _webhooks(ctx).list(client_id=client_id, after=_decode(cursor), limit=limit)
    return {
        "data": [s.view() for s in rows],
        "next_cursor": _encode(rows[-1].id) if len(rows) == limit else None,
    }


WEBHOOK_ID = PathParam(description="the subscription's id (wh_...)")


@router.get(
    "/webhooks/{webhook_id}",
    tags=["webhooks"],
    summary="One webhook subscription",
    response_model=WebhookOut,
    responses=responses({200: "the subscription (never its secret)"}, _NO_WEBHOOK),
)
def get_webhook(
    webhook_id: Annotated[str, WEBHOOK_ID],
    ctx: Context = Depends(context),
    client_id: str | None = Depends(reader_scope),
) -> dict[str, Any]:
    return _webhooks(ctx).get(_webhook_id(webhook_id), client_id=client_id).view()


@router.delete(
    "/webhooks/{webhook_id}",
    tags=["webhooks"],
    summary="Deactivate a webhook subscription (its pending deliveries are cancelled)",
    response_model=WebhookOut,
    responses=responses({200: "deactivated (or already was)"}, _NO_WEBHOOK),
)
def deactivate_webhook(
    webhook_id: Annotated[str, WEBHOOK_ID],
    ctx: Context = Depends(context),
    client_id: str | None = Depends(writer_scope),
) -> dict[str, Any]:
    return _webhooks(ctx).deactivate(_webhook_id(webhook_id), client_id=client_id).view()


@router.get(
    "/webhooks/{webhook_id}/deliveries",
    tags=["webhooks"],
    summary="A subscription's deliveries and their log, oldest first",
    response_model=DeliveryPage,
    responses=responses(
        {200: "a page of deliveries, each with its latest attempts and replays"},
        {400: "invalid_cursor: the cursor is not one this API returned", **_LIST_REFUSED, **_NO_WEBHOOK},
    ),
)
def list_deliveries(
    webhook_id: Annotated[str, WEBHOOK_ID],
    ctx: Context = Depends(context),
    client_id: str | None = Depends(reader_scope),
    status: Literal["pending", "succeeded", "failed", "cancelled"] | None = Query(
        None, description=f"only deliveries in this status: {', '.join(DELIVERY_STATUSES)}"
    ),
    cursor: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    rows = _webhooks(ctx).deliveries(
        _webhook_id(webhook_id), client_id=client_id, status=status, after=_delivery_cursor(cursor), limit=limit
    )
    return {
        "data": [d.view() for d in rows],
        "next_cursor": _encode(str(rows[-1].id)) if len(rows) == limit else None,
    }


_REPLAY_REFUSED = {
    **_NO_WEBHOOK,
    409: "webhook_inactive: the subscription is deactivated",
}


@router.post(
    "/webhooks/{webhook_id}/deliveries/{delivery_id}/replay",
    tags=["webhooks"],
    summary="Deliver one event again now (a fresh retry schedule, the same webhook-id)",
    response_model=DeliveryOut,
    openapi_extra=_idempotent(),
    responses=responses(
        {200: "queued: the delivery, due now"},
        {
            **_REPLAY_REFUSED,
            404: _NO_WEBHOOK[404] + "; delivery_not_found: the subscription has no such delivery",
        },
        post=True,
    ),
)
def replay_delivery(
    webhook_id: Annotated[str, WEBHOOK_ID],
    delivery_id: Annotated[int, PathParam(ge=1, le=CURSOR_VALUE_MAX, description="the delivery's id")],
    key: str = Depends(idempotency_key),
    principal: Principal = Depends(authenticate),
    ctx: Context = Depends(context),
    client_id: str | None = Depends(writer_scope),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    wid = _webhook_id(webhook_id)

    def handler() -> tuple[int, dict[str, Any]]:
        return 200, _webhooks(ctx).replay(wid, delivery_id, client_id=client_id).view()

    payload = {"scope": client_id, "webhook_id": wid, "delivery_id": delivery_id}
    return store.run(
        f"{principal.key_id} POST /v1/webhooks/{{webhook_id}}/deliveries/{{delivery_id}}/replay", key, payload, handler
    )


@router.post(
    "/webhooks/{webhook_id}/replay",
    tags=["webhooks"],
    summary="Deliver again every event after an id (up to 1,000 per call)",
    response_model=ReplayOut,
    openapi_extra=_idempotent(),
    responses=responses(
        {200: "queued: how many, and where to replay from for more"},
        {**_REPLAY_REFUSED, 422: "invalid_request: `after` is out of range"},
        post=True,
    ),
)
def replay_webhook(
    webhook_id: Annotated[str, WEBHOOK_ID],
    after: int = Query(ge=0, le=CURSOR_VALUE_MAX, description="replay the events after this id"),
    key: str = Depends(idempotency_key),
    principal: Principal = Depends(authenticate),
    ctx: Context = Depends(context),
    client_id: str | None = Depends(writer_scope),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    wid = _webhook_id(webhook_id)

    def handler() -> tuple[int, dict[str, Any]]:
        done = _webhooks(ctx).replay_since(wid, after, client_id=client_id)
        return 200, {"queued": done.queued, "next_after": done.position, "has_more": done.more}

    return store.run(
        f"{principal.key_id} POST /v1/webhooks/{{webhook_id}}/replay",
        key,
        {"scope": client_id, "webhook_id": wid, "after": after},
        handler,
    )
