"""``vtfpar serve-ray`` or ``python -m app.ray`` (``app/ray/__main__.py``): the service on Ray Serve, in one command.

    vtfpar serve-ray --ingress-replicas 2 --model-replicas 2 --port 8000

Starts a local Ray instance, or joins the cluster at ``RAY_ADDRESS``; starts Serve's HTTP proxy on ``--host``/
``--port`` (default ``VTFPAR_HOST``/``VTFPAR_PORT``) unless Serve already runs there; deploys the application
(``app.ray.app``) under ``--name`` at ``--route-prefix``; and serves until SIGTERM or SIGINT. Then ingress
replicas stop admitting (503 ``not_ready``) and finish what they admitted, for up to ``VTFPAR_DRAIN_TIMEOUT_S``,
and everything this command started is stopped: the application, Serve if it started it, Ray if it started it.
Exit status: 0 after a clean stop, 2 for bad settings or flags, 3 when the application could not be deployed.
"""

from __future__ import annotations

import argparse
import logging
import logging.config
import math
import os
import signal
import sys
import threading
import time

import ray
from pydantic import ValidationError
from ray import serve

from ..__main__ import BAD_SETTINGS, STARTUP_FAILURE, default_token_or_exit, settings_or_exit
from ..cpus import usable_cpus
from ..default_token import with_announced_default_token
from ..log import log_config
from ..settings import Settings
from .app import AppOptions, application, replica_counts

log = logging.getLogger("app.ray")

# Where Serve's controller lives (ray.serve._private.constants): its presence means Serve already runs.
SERVE_CONTROLLER = "SERVE_CONTROLLER_ACTOR"
SERVE_NAMESPACE = "serve"
DRAIN_POLL_S = 0.2


def parse_args(argv: list[str] | None, settings: Settings) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vtfpar serve-ray", description=__doc__.split("\n\n")[0])
    for name, field in AppOptions.model_fields.items():  # the flags are the Serve config's args
        default = "1 when the cluster has a GPU and VTFPAR_DEVICE is not cpu, else 0" if name == "model_gpus" else None
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=field.annotation if field.annotation is float else str,
            help=f"{field.description} (default: {default or field.default})",
        )
    parser.add_argument("--host", default=settings.host, help="Serve's HTTP proxy address (default: VTFPAR_HOST).")
    parser.add_argument("--port", type=int, default=settings.port, help="Serve's HTTP port (default: VTFPAR_PORT).")
    parser.add_argument("--name", default="vtfpar", help="Application name; several can share one Serve.")
    parser.add_argument("--route-prefix", default="/", help="Where the application's routes start (default: /).")
    return parser.parse_args(argv)


def options_or_exit(args: argparse.Namespace, **defaults) -> AppOptions:
    given = {name: value for name in AppOptions.model_fields if (value := getattr(args, name)) is not None}
    try:
        return AppOptions(**{**defaults, **given})
    except ValidationError as exc:
        for error in exc.errors():
            print(f"error: --{str(error['loc'][0]).replace('_', '-')}: {error['msg']}", file=sys.stderr)
        sys.exit(BAD_SETTINGS)


def cpus_needed(options: AppOptions, max_streams: int = 0) -> float:
    """Logical CPUs the replicas reserve at their largest, and ``max_streams`` camera actors."""
    ingress, model = replica_counts(options.ingress_replicas)[1], replica_counts(options.model_replicas)[1]
    return ingress * options.ingress_cpus + model * options.model_cpus + max_streams * options.camera_cpus


def start_or_join_ray(options: AppOptions, max_streams: int = 0) -> bool:
    """Joins ``RAY_ADDRESS``'s cluster, or starts a local instance; returns whether it started one.

    A local instance declares at least the CPUs the replicas and ``max_streams`` cameras reserve: Ray counts CPUs
    as logical slots, and two ingress plus two model replicas should run on a 2-core machine too (they then share
    its cores)."""
    if os.environ.get("RAY_ADDRESS"):
        ray.init(logging_level=logging.WARNING)
        log.info("joined the Ray cluster at %s", os.environ["RAY_ADDRESS"])
        return False
    cores = usable_cpus()  # not the host's cores: a container's quota counts
    declared = max(cores, math.ceil(cpus_needed(options, max_streams)))
    ray.init(address="local", num_cpus=declared, include_dashboard=False, logging_level=logging.WARNING)
    if declared > cores:
        log.warning("local Ray declares %d CPUs on a %d-core machine: the replicas share its cores", declared, cores)
    # Ray turns on token authentication for a new local instance (the token is in ~/.ray/auth_token unless
    # RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH say otherwise); a command joining by address must ask for it.
    auth = "RAY_AUTH_MODE=token " if os.environ.get("RAY_AUTH_MODE") == "token" else ""
    log.info("started a local Ray instance; to join it: %sRAY_ADDRESS=%s", auth, ray.get_runtime_context().gcs_address)
    return True


def serve_is_running() -> bool:
    try:
        ray.get_actor(SERVE_CONTROLLER, namespace=SERVE_NAMESPACE)
    except ValueError:
        return False
    return True


def default_model_gpus(settings: Settings) -> float:
    has_gpu = ray.cluster_resources().get("GPU", 0) >= 1
    return 1.0 if has_gpu and settings.device != "cpu" else 0.0


def drain(name: str, timeout_s: float) -> None:
    """Ingress replicas stop admitting and finish what they admitted (up to ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s

    def ask(method: str):
        return getattr(coordinator, method).remote().result(timeout_s=max(deadline - time.monotonic(), 0.1))

    coordinator = serve.get_deployment_handle("Coordinator", app_name=name)
    ask("drain")
    while not ask("drained"):
        if time.monotonic() > deadline:
            log.warning("drain timed out after %g s with requests in flight", timeout_s)
            return
        time.sleep(DRAIN_POLL_S)
    log.info("drained: every admitted request was answered")


def failures(name: str) -> list[str]:
    """Why each deployment of the application failed: the last line of its error (a traceback)."""
    try:
        deployments = serve.status().applications[name].deployments
    except Exception:  # no status to give: the exception said what it could
        return []
    return [
        f"{deployment}: {status.message.strip().splitlines()[-1]}"
        for deployment, status in deployments.items()
        if status.message.strip()
    ]


def deploy(settings: Settings, args: argparse.Namespace, options: AppOptions, start_serve: bool) -> None:
    if start_serve:
        serve.start(http_options={"host": args.host, "port": args.port})
    else:
        log.info("Serve already runs on this cluster: its HTTP options stay as they are")
    serve.run(application(options, settings), name=args.name, route_prefix=args.route_prefix)
    log.info(
        "serving %s (%s ingress, %s model replicas, %g GPU each) at http://%s:%d%s",
        args.name,
        options.ingress_replicas,
        options.model_replicas,
        options.model_gpus,
        args.host,
        args.port,
        args.route_prefix,
    )


def served_settings(settings: Settings, args: argparse.Namespace) -> Settings:
    """The settings every replica gets: Serve's address in them, and the default API token in force when that
    address is beyond loopback (as ``vtfpar serve`` does; the token travels to the replicas in the settings)."""
    listening = settings.model_copy(update={"host": args.host, "port": args.port})
    return default_token_or_exit(listening, with_announced_default_token)


def main(argv: list[str] | None = None) -> None:
    settings = settings_or_exit()
    args = parse_args(argv, settings)
    logging.config.dictConfig(log_config(settings.log_level, settings.log_json))
    settings = served_settings(settings, args)
    started_ray = start_or_join_ray(options_or_exit(args), settings.max_streams)
    # After ray.init, which installs its own SIGTERM handler in this process (it dumps a stack and exits).
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    options = options_or_exit(args, model_gpus=default_model_gpus(settings))
    started_serve = not serve_is_running()
    status = 0
    try:
        deploy(settings, args, options, started_serve)
    except Exception as exc:  # a deploy that failed (bad checkpoint, no resources): say why, then clean up
        log.error("cannot serve: %s", "; ".join([str(exc), *failures(args.name)]))
        status = STARTUP_FAILURE
    else:
        stop.wait()
        log.info("stopping: draining the ingress replicas")
        try:
            drain(args.name, settings.drain_timeout_s)
        except Exception as exc:  # stop all the same
            log.error("drain failed: %s", exc)
    finally:
        if started_serve:
            serve.shutdown()
        else:
            serve.delete(args.name)
        if started_ray:
            ray.shutdown()
        log.info("stopped")
    sys.exit(status)
