"""A rule: the search it stands for (``GET /tracks``'s parameters by their names), when it is active, and where
its alerts go; and the pure decision whether a track's fused attributes match it.

The decision is the search's: a required attribute must be positive (``p > threshold``; with ``min_probability``,
``p >= min_probability``), an excluded one negative (``p <= threshold``; with ``min_probability``,
``p < min_probability``).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field

from ..errors import ErrorCode, ServiceError
from ..store import ModelSpec
from ..store.sentence import read_sentence, with_reading
from .webhook import check_webhook

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class RuleSearch(BaseModel):
    """``GET /tracks``'s parameters by their names; ``camera`` may also be a list of cameras."""

    model_config = ConfigDict(extra="forbid")

    attributes: str | list[str] | None = Field(None, description="Required attributes (comma-separated or a list).")
    exclude: str | list[str] | None = Field(None, description="Excluded attributes (comma-separated or a list).")
    q: str | None = Field(None, max_length=500, description='A sentence, e.g. "a person in a red top with a backpack".')
    camera: str | list[str] | None = Field(None, description="One camera (a stream's name) or a list; unset = all.")
    min_probability: float | None = Field(
        None, ge=0, le=1, description="Required: p >= this; excluded: p < this (default: each one's threshold)."
    )


class Schedule(BaseModel):
    """When a rule is active: the days, and the times of day from ``start`` to ``end`` (``end`` before ``start``
    crosses midnight: 22:00 to 06:00), in ``timezone``."""

    model_config = ConfigDict(extra="forbid")

    days: list[Day] = Field(list(DAYS), min_length=1, description="Days it is active on (default: every day).")
    start: time = Field(time(0, 0), description="Active from this time of day (HH:MM).")
    end: time = Field(time(0, 0), description="Until this time of day (HH:MM); equal to start = all day.")
    timezone: str = Field("UTC", max_length=64, description="An IANA time zone, e.g. Europe/Berlin.")


class RuleSpec(BaseModel):
    """The body of ``POST /rules`` and ``PUT /rules/{id}``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, examples=["red top with backpack at gate 3"])
    search: RuleSearch
    schedule: Schedule | None = Field(None, description="When it is active; unset = always.")
    webhook: str | None = Field(None, max_length=2000, description="URL to POST its alerts to (signed), or null.")
    mqtt: bool = Field(False, description="Publish its alerts on MQTT (VTFPAR_MQTT_URL).")


@dataclass(frozen=True)
class Criteria:
    """A rule's search in the columns of one model's schema."""

    required: tuple[int, ...]
    excluded: tuple[int, ...]
    min_probability: float | None
    cameras: frozenset[str] | None  # None: every camera


def names(value: str | list[str] | None) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value or []
    return tuple(dict.fromkeys(n.strip() for n in items if n.strip()))


def criteria(search: RuleSearch, model: ModelSpec) -> Criteria:
    """The search read against ``model``: unknown attributes (422 ``unknown_attribute``, with the closest names)
    and an attribute both required and excluded (422 ``bad_search``) are refused."""
    required, excluded = names(search.attributes), names(search.exclude)
    if search.q is not None:
        required, excluded = with_reading(required, excluded, read_sentence(search.q, model))
    if overlap := set(required) & set(excluded):
        raise ServiceError(ErrorCode.BAD_SEARCH, f"both required and excluded: {', '.join(sorted(overlap))}")
    cameras = names(search.camera)
    return Criteria(
        _columns(model, required), _columns(model, excluded), search.min_probability, frozenset(cameras) or None
    )


def _columns(model: ModelSpec, asked: tuple[str, ...]) -> tuple[int, ...]:
    known = model.names
    for name in asked:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
            hint = f"; closest: {', '.join(close)}" if close else f"; known: {', '.join(known)}"
            raise ServiceError(ErrorCode.UNKNOWN_ATTRIBUTE, f"unknown attribute {name!r}{hint}")
    return tuple(known.index(name) for name in asked)


def zone(schedule: Schedule) -> ZoneInfo:
    try:
        return ZoneInfo(schedule.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ServiceError(ErrorCode.BAD_RULE, f"schedule: unknown time zone {schedule.timezone!r}") from None


def matches(rule: Criteria, model: ModelSpec, camera: str, probabilities: Sequence[float]) -> bool:
    """Whether a track of ``camera`` with these fused probabilities (schema order) is one the rule looks for."""
    if rule.cameras is not None and camera not in rule.cameras:
        return False
    cut = rule.min_probability
    for column in rule.required:
        p = probabilities[column]
        if not (p > model.attributes[column].threshold if cut is None else p >= cut):
            return False
    for column in rule.excluded:
        p = probabilities[column]
        if not (p <= model.attributes[column].threshold if cut is None else p < cut):
            return False
    return True


def active(schedule: Schedule | None, at: datetime) -> bool:
    """Whether the schedule covers the moment ``at`` (aware)."""
    if schedule is None:
        return True
    local = at.astimezone(zone(schedule))
    now = local.time().replace(tzinfo=None)
    start, end = schedule.start, schedule.end
    if start == end:
        within, day = True, local
    elif start < end:
        within, day = start <= now < end, local
    else:  # crosses midnight: the hours after midnight belong to the day the window started on
        within = now >= start or now < end
        day = local if now >= start else local.fromordinal(local.toordinal() - 1)
    return within and DAYS[day.weekday()] in schedule.days


def check_rule(spec: RuleSpec, model: ModelSpec, webhook_targets: tuple[str, ...], mqtt_on: bool) -> None:
    """Refuses, with the reason, a rule that could never fire or deliver as asked."""
    criteria(spec.search, model)
    if spec.schedule is not None:
        zone(spec.schedule)
    if spec.webhook is not None:
        check_webhook(spec.webhook, webhook_targets)
    if spec.mqtt and not mqtt_on:
        raise ServiceError(ErrorCode.MQTT_OFF, "mqtt: true, but this server has no broker (VTFPAR_MQTT_URL)")
