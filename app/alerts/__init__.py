"""Alerts: standing searches (rules) that fire on live and stored tracks, delivered over server-sent events,
signed webhooks and MQTT from an outbox in the database. See docs/alerts.md."""

from .metrics import AlertMetrics
from .rules import RuleSpec
from .service import Alerts, message
from .store import Alert, AlertStore, Rule

__all__ = ["Alert", "AlertMetrics", "AlertStore", "Alerts", "Rule", "RuleSpec", "message"]
