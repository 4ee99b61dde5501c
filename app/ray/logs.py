"""The service's log format in Ray replicas, for the ``app`` loggers only (Ray keeps its own)."""

from __future__ import annotations

import logging.config

from ..log import log_config
from ..settings import Settings


def configure_replica_logging(settings: Settings) -> None:
    """JSON (or plain) lines with request ids on stderr, which Ray writes to the replica's log file and, with
    ``log_to_driver``, to the console of ``python -m app.ray``."""
    config = log_config(settings.log_level, settings.log_json)
    config["loggers"] = {"app": config["loggers"]["app"]}
    del config["root"]
    logging.config.dictConfig(config)
