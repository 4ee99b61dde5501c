"""One Coordinator replica per application: every ingress and model replica, and every camera actor, reports to
it each second.

A report carries the replica's metrics (its Prometheus exposition) and, from an ingress replica, how many
requests it has admitted and not answered yet and whether it is draining. Ingress replicas get the other
replicas' metrics back, so whichever one a scrape reaches can answer ``/metrics`` for the whole application
(``app.ray.metrics``). ``python -m app.ray`` asks the Coordinator to drain on SIGTERM: ingress replicas hear it
with their next report, stop admitting (503 ``not_ready``) and finish what they admitted; ``drained`` turns true
once every ingress replica has reported that it is draining with nothing in flight.

A Serve deployment rather than a bare named actor, so that Serve owns its lifetime with the application's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from ray import serve

log = logging.getLogger(__name__)

REPORT_INTERVAL_S = 1.0
# A replica that has not reported for this long is gone (stopped, scaled down or dead): its metrics are dropped.
STALE_AFTER_S = 5 * REPORT_INTERVAL_S
INGRESS, MODEL, CAMERA = "Ingress", "Model", "Camera"


@dataclass(frozen=True)
class ReplicaReport:
    replica: str  # Serve's replica tag, as Ray's own metrics label it
    deployment: str  # INGRESS, MODEL or CAMERA (a camera actor, app.ray.camera)
    exposition: bytes  # the replica's own metrics, Prometheus text format
    in_flight: int = 0  # ingress: /predict requests admitted and not answered yet
    draining: bool = False  # ingress: refusing new requests


@dataclass(frozen=True)
class CoordinatorReply:
    draining: bool  # ingress replicas: stop admitting and finish what was admitted
    reports: tuple[ReplicaReport, ...]  # every other live replica's latest report (only for ingress replicas)


@serve.deployment(name="Coordinator", num_replicas=1, ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1000)
class Coordinator:
    def __init__(self) -> None:
        self._latest: dict[str, tuple[float, ReplicaReport]] = {}
        self._draining = False

    def _live(self) -> list[ReplicaReport]:
        now = time.monotonic()
        for replica, (at, _) in list(self._latest.items()):
            if now - at > STALE_AFTER_S:
                del self._latest[replica]
        return [report for _, report in self._latest.values()]

    # async: the methods run on the replica's event loop, one at a time, so the dictionary needs no lock.
    async def report(self, report: ReplicaReport) -> CoordinatorReply:
        self._latest[report.replica] = (time.monotonic(), report)
        others = tuple(r for r in self._live() if r.replica != report.replica) if report.deployment == INGRESS else ()
        return CoordinatorReply(draining=self._draining, reports=others)

    async def drain(self) -> None:
        self._draining = True

    async def drained(self) -> bool:
        ingress = [report for report in self._live() if report.deployment == INGRESS]
        return self._draining and all(report.draining and report.in_flight == 0 for report in ingress)


class Reporter:
    """Sends ``make_report()`` to the Coordinator every ``REPORT_INTERVAL_S`` and hands each reply to
    ``on_reply``; a failed report is logged and the next one tried (the Coordinator may be restarting)."""

    def __init__(
        self,
        coordinator,
        make_report: Callable[[], ReplicaReport | None],
        on_reply: Callable[[CoordinatorReply], None] = lambda reply: None,
    ) -> None:
        self.coordinator = coordinator
        self.make_report = make_report
        self.on_reply = on_reply
        self._task = asyncio.get_running_loop().create_task(self._run(), name="coordinator-reports")

    async def _run(self) -> None:
        while True:
            report = self.make_report()
            if report is not None:
                try:
                    self.on_reply(await self.coordinator.report.remote(report))
                except Exception as exc:  # the next report may get through
                    log.warning("report to the coordinator failed: %s", exc)
            await asyncio.sleep(REPORT_INTERVAL_S)

    def stop(self) -> None:
        """Stops reporting; the replica's metrics expire from the Coordinator after ``STALE_AFTER_S``. (No farewell
        call: while an application is deleted the Coordinator may be gone first, and a call to it would wait.)"""
        self._task.cancel()
