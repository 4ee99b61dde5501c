"""Alerts: rules (standing searches) created, listed, read, replaced and deleted; the alerts they fired, newest
first, acknowledged by an operator; their thumbnails; and the alerts as server-sent events. Every route needs the
API token when VTFPAR_API_TOKEN is set. Database work runs on threads."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi import Path as FastAPIPath
from sse_starlette import EventSourceResponse

from ..alerts import Alert, Rule, RuleSpec, message
from ..alerts.rules import check_rule
from ..errors import ErrorCode, ServiceError
from .auth import require_token
from .deps import AlertsDep, ServedDep
from .openapi import error_responses
from .schemas import AlertBody, AlertList, DeliveryBody, RuleBody, RuleCreated, RuleList

router = APIRouter(tags=["alerts"], dependencies=[Depends(require_token)])
RuleId = Annotated[int, FastAPIPath(ge=1, le=2**63 - 1, description="The rule's id.")]
AlertId = Annotated[int, FastAPIPath(ge=1, le=2**63 - 1, description="The alert's id.")]
EVENTS_POLL_S = 1.0  # an events reader also sees, within this, alerts another instance fired
SHUTDOWN_GRACE_S = 1.0


def _rule(rule: Rule) -> dict:
    spec = rule.spec.model_dump(mode="json")
    return {**spec, "id": rule.id, "created_at": rule.created_at, "updated_at": rule.updated_at}


def _alert(request: Request, alert: Alert) -> AlertBody:
    body = message(alert, request.app.state.settings.public_url or str(request.base_url))
    deliveries = [DeliveryBody(**{k: v for k, v in vars(d).items() if k != "id"}) for d in alert.deliveries]
    return AlertBody(**body, acknowledged_at=alert.acknowledged_at, deliveries=deliveries)


async def _checked(request: Request, spec: RuleSpec, served) -> None:
    settings = request.app.state.settings
    check_rule(spec, served, settings.webhook_targets, settings.mqtt_url is not None)


@router.post(
    "/rules",
    status_code=201,
    response_model=RuleCreated,
    summary="Create a rule: a standing search that fires on live and stored tracks",
    responses=error_responses(400, 401, 403, 422, 503),
)
async def create_rule(request: Request, spec: RuleSpec, alerts: AlertsDep, served: ServedDep) -> RuleCreated:
    """`search` holds GET /tracks's parameters (`attributes`, `exclude`, `q`, `camera` (or a list), `min_probability`);
    `schedule` the days and times of day it is active. The answer's `secret` signs its webhooks; it is shown once."""
    await _checked(request, spec, served)
    rule = await asyncio.to_thread(alerts.store.create_rule, spec)
    await alerts.reload_rules()
    return RuleCreated(**_rule(rule), secret=rule.secret)


@router.get("/rules", response_model=RuleList, summary="Every rule", responses=error_responses(401, 503))
async def list_rules(alerts: AlertsDep) -> RuleList:
    return RuleList(rules=[RuleBody(**_rule(r)) for r in await asyncio.to_thread(alerts.store.rules)])


@router.get("/rules/{rule}", response_model=RuleBody, summary="One rule", responses=error_responses(400, 401, 404, 503))
async def get_rule(rule: RuleId, alerts: AlertsDep) -> RuleBody:
    found = await asyncio.to_thread(alerts.store.rule, rule)
    if found is None:
        raise ServiceError(ErrorCode.NOT_FOUND, f"no rule {rule}")
    return RuleBody(**_rule(found))


@router.put(
    "/rules/{rule}",
    response_model=RuleBody,
    summary="Replace a rule (its id and secret stay)",
    responses=error_responses(400, 401, 403, 404, 422, 503),
)
async def replace_rule(
    request: Request, rule: RuleId, spec: RuleSpec, alerts: AlertsDep, served: ServedDep
) -> RuleBody:
    await _checked(request, spec, served)
    found = await asyncio.to_thread(alerts.store.replace_rule, rule, spec)
    if found is None:
        raise ServiceError(ErrorCode.NOT_FOUND, f"no rule {rule}")
    await alerts.reload_rules()
    return RuleBody(**_rule(found))


@router.delete("/rules/{rule}", status_code=204, summary="Delete a rule", responses=error_responses(400, 401, 404, 503))
async def delete_rule(rule: RuleId, alerts: AlertsDep) -> Response:
    """Its alerts stay listed; their webhook deliveries not yet made fail (nothing left to sign them with)."""
    if not await asyncio.to_thread(alerts.store.delete_rule, rule):
        raise ServiceError(ErrorCode.NOT_FOUND, f"no rule {rule}")
    await alerts.reload_rules()
    return Response(status_code=204)


@router.get(
    "/alerts",
    response_model=AlertList,
    summary="The alerts fired, newest first, with their deliveries",
    responses=error_responses(400, 401, 503),
)
async def list_alerts(
    request: Request,
    alerts: AlertsDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before: Annotated[
        int | None, Query(ge=1, le=2**63 - 1, description="Alerts older than this id (next_before).")
    ] = None,
) -> AlertList:
    found = await asyncio.to_thread(alerts.store.alerts, limit, before)
    next_before = found[-1].id if len(found) == limit else None
    return AlertList(alerts=[_alert(request, a) for a in found], next_before=next_before)


@router.post(
    "/alerts/{alert}/ack",
    response_model=AlertBody,
    summary="Acknowledge an alert",
    responses=error_responses(400, 401, 404, 503),
)
async def acknowledge(request: Request, alert: AlertId, alerts: AlertsDep) -> AlertBody:
    """Idempotent: the first acknowledgement's time stays."""
    found = await asyncio.to_thread(alerts.store.acknowledge, alert)
    if found is None:
        raise ServiceError(ErrorCode.NOT_FOUND, f"no alert {alert}")
    return _alert(request, found)


@router.get(
    "/alerts/{alert}/thumbnail",
    response_class=Response,
    summary="The JPEG of the track's best crop when the alert fired",
    responses={200: {"content": {"image/jpeg": {}}}, **error_responses(400, 401, 404, 503)},
)
async def alert_thumbnail(alert: AlertId, alerts: AlertsDep) -> Response:
    picture = await asyncio.to_thread(alerts.store.thumbnail, alert)
    if picture is None:
        raise ServiceError(ErrorCode.NOT_FOUND, f"alert {alert} has no thumbnail")
    return Response(picture, media_type="image/jpeg")


@router.get(
    "/alerts/events",
    summary="Alerts as server-sent events",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}}, **error_responses(400, 401, 503)},
)
async def alert_events(
    request: Request,
    alerts: AlertsDep,
    last_event_id: Annotated[
        str | None,
        Header(max_length=20, description="Resume after this alert id (browsers send it when they reconnect)."),
    ] = None,
) -> EventSourceResponse:
    """An `alert` event per alert fired from now on (its `id` is the alert's id, its data what a webhook gets);
    with `Last-Event-ID`, every alert after that one first, so a reader that reconnects misses none. A
    `Last-Event-ID` that is not an alert id (one this service sent) is ignored."""
    resume = last_event_id.strip() if last_event_id is not None else ""
    if resume.isascii() and resume.isdigit() and int(resume) < 2**63:
        after = int(resume)
    else:
        after = await asyncio.to_thread(alerts.store.last_alert_id)
    base = request.app.state.settings.public_url or str(request.base_url)

    async def events():
        nonlocal after
        while True:
            found = await asyncio.to_thread(alerts.store.alerts, 100, None, after)
            for alert in found:
                after = alert.id
                yield {"event": "alert", "id": str(alert.id), "data": json.dumps(message(alert, base))}
            if not found:
                await alerts.next_alert(EVENTS_POLL_S)

    return EventSourceResponse(events(), shutdown_event=anyio.Event(), shutdown_grace_period=SHUTDOWN_GRACE_S)
