"""A rule's decision on a track (the search's semantics), its schedule, the webhook allow-list and the signature."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.alerts.rules import RuleSearch, Schedule, active, criteria, matches
from app.alerts.webhook import check_webhook, signature
from app.errors import ServiceError
from app.store import AttributeSpec, ModelSpec
from benchmarks.alert_receivers import verify

MODEL = ModelSpec(
    "m",
    "v1",
    "mars",
    (
        AttributeSpec("top_red", "top colour", "red top", 0.5),
        AttributeSpec("backpack", "bags", "backpack", 0.3),
        AttributeSpec("hat", "hat", "hat", 0.6),
    ),
)


def decide(p: list[float], seen_on: str = "gate-3", **search) -> bool:
    return matches(criteria(RuleSearch(**search), MODEL), MODEL, seen_on, p)


def test_required_attributes_are_decided_positive_and_excluded_negative_by_each_threshold():
    assert decide([0.51, 0.31, 0.6], attributes="top_red,backpack", exclude="hat")
    assert not decide([0.50, 0.31, 0.0], attributes="top_red,backpack")  # p > threshold, not >=
    assert not decide([0.9, 0.9, 0.61], attributes=["top_red"], exclude=["hat"])
    assert decide([0.9, 0.9, 0.0])  # no attributes: every track


def test_min_probability_replaces_the_thresholds_as_the_search_does():
    assert decide([0.7, 0.0, 0.69], attributes="top_red", exclude="hat", min_probability=0.7)
    assert not decide([0.69, 0.0, 0.0], attributes="top_red", min_probability=0.7)
    assert not decide([0.7, 0.0, 0.7], attributes="top_red", exclude="hat", min_probability=0.7)


def test_the_sentence_is_read_and_cameras_may_be_a_list():
    assert decide([0.9, 0.9, 0.1], q="a person in a red top with a backpack and no hat", camera=["gate-3", "dock"])
    assert not decide([0.9, 0.1, 0.1], q="red top with a backpack")
    assert not decide([0.9, 0.9, 0.1], camera="dock", q="red top")
    assert decide([0.9, 0.9, 0.1], seen_on="dock", camera=["gate-3", "dock"], q="red top")


def test_unknown_and_contradictory_attributes_are_refused_with_the_closest_name():
    with pytest.raises(ServiceError) as unknown:
        criteria(RuleSearch(attributes="backpak"), MODEL)
    assert unknown.value.code == "unknown_attribute" and "backpack" in unknown.value.message
    with pytest.raises(ServiceError) as both:
        criteria(RuleSearch(attributes="hat", exclude="hat"), MODEL)
    assert both.value.code == "bad_search"


def test_a_schedule_covers_its_days_and_hours_across_midnight_in_its_time_zone():
    night = Schedule(days=["fri"], start="22:00", end="06:00", timezone="Europe/Berlin")
    assert active(night, datetime(2026, 3, 6, 21, 30, tzinfo=UTC))  # Friday 22:30 in Berlin
    assert active(night, datetime(2026, 3, 7, 4, 0, tzinfo=UTC))  # Saturday 05:00: Friday's night still
    assert not active(night, datetime(2026, 3, 7, 5, 30, tzinfo=UTC))  # Saturday 06:30
    assert not active(night, datetime(2026, 3, 5, 22, 0, tzinfo=UTC))  # Thursday 23:00
    assert active(None, datetime(2026, 3, 5, 22, 0, tzinfo=UTC))
    assert active(Schedule(days=["thu"]), datetime(2026, 3, 5, 12, tzinfo=UTC))


ALLOWED = ("https://hooks.example.com/vtfpar/", "http://127.0.0.1:8080/hook")


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/vtfpar/gate",
        "http://127.0.0.1:8080/hook",
        "http://127.0.0.1:8080/hook/sub",
        "HTTPS://HOOKS.example.com/vtfpar/x?y=1",
    ],
)
def test_webhooks_under_an_allowed_prefix_are_accepted(url):
    assert check_webhook(url, ALLOWED) == url


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com.evil.net/vtfpar/x",  # another host
        "https://hooks.example.com/other",
        "http://127.0.0.1:8080/hooker",  # not a segment boundary
        "https://hooks.example.com/vtfpar/../admin",
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "https://hooks.example.com/vtfpar/x\r\nX-Injected: 1",
        "https://hooks.example.com/vtfpar/a b",
        "https://user:pw@hooks.example.com/vtfpar/x",
        "file:///etc/passwd",
        "gopher://127.0.0.1:8080/hook",
    ],
)
def test_webhooks_elsewhere_are_refused(url):
    with pytest.raises(ServiceError) as refused:
        check_webhook(url, ALLOWED)
    assert refused.value.code == "webhook_not_allowed"


def test_no_webhook_is_allowed_without_targets():
    with pytest.raises(ServiceError, match="VTFPAR_WEBHOOK_TARGETS"):
        check_webhook("https://hooks.example.com/vtfpar/x", ())


def test_the_signature_is_what_a_receiver_recomputes_and_a_changed_body_fails():
    body = b'{"id": 1}'
    header = signature("secret", body, 1_700_000_000)
    assert header.startswith("t=1700000000,v1=")
    assert verify("secret", header, body, tolerance_s=10**10)
    assert not verify("secret", header, body + b" ", tolerance_s=10**10)
    assert not verify("other", header, body, tolerance_s=10**10)
