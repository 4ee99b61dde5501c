"""MQTT: the alerts' publisher (paho-mqtt 2, its network loop on its own thread, reconnecting by itself).

Topics: ``<prefix>/<camera>/<rule id>`` for each alert (QoS 1, not retained), ``<prefix>/<camera>/last`` for the
camera's latest alert (retained: a home-automation dashboard shows it the moment it subscribes), and
``<prefix>/status`` ``online``/``offline`` (retained, ``offline`` as the last will).
"""

from __future__ import annotations

import logging
import re
import uuid
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt

log = logging.getLogger(__name__)

PUBACK_TIMEOUT_S = 5.0  # a QoS 1 publish not acknowledged within this is a failed attempt (retried by the outbox)
UNSAFE_TOPIC = re.compile(r"[/#+\x00]")  # a camera name could otherwise add levels or wildcards


def camera_level(camera: str) -> str:
    return UNSAFE_TOPIC.sub("_", camera) or "_"


class MqttPublisher:
    def __init__(self, url: str, prefix: str) -> None:
        split = urlsplit(url)
        if split.scheme not in ("mqtt", "mqtts") or not split.hostname:
            raise ValueError(f"VTFPAR_MQTT_URL={url}: expected mqtt://host[:port] or mqtts://host[:port]")
        self.prefix = prefix.rstrip("/")
        self.host, self.port = split.hostname, split.port or (8883 if split.scheme == "mqtts" else 1883)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"vtfpar-{uuid.uuid4().hex[:12]}")
        if split.username:
            self.client.username_pw_set(unquote(split.username), unquote(split.password or "") or None)
        if split.scheme == "mqtts":
            self.client.tls_set()
        self.client.will_set(self.status_topic, "offline", qos=1, retain=True)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._connected

    @property
    def status_topic(self) -> str:
        return f"{self.prefix}/status"

    def alert_topic(self, camera: str, rule_id: int) -> str:
        return f"{self.prefix}/{camera_level(camera)}/{rule_id}"

    def start(self) -> None:
        """Connects in the background (a broker that is down now is retried, never fatal)."""
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()

    def stop(self) -> None:
        if self.client.is_connected():
            self.client.publish(self.status_topic, "offline", qos=1, retain=True).wait_for_publish(PUBACK_TIMEOUT_S)
        self.client.disconnect()
        self.client.loop_stop()

    def _connected(self, client, _userdata, _flags, reason, _properties) -> None:
        if reason.is_failure:
            log.warning("MQTT broker %s:%s refused the connection: %s", self.host, self.port, reason)
            return
        log.info("MQTT connected to %s:%s", self.host, self.port)
        client.publish(self.status_topic, "online", qos=1, retain=True)

    def publish(self, topic: str, payload: bytes, camera: str) -> None:
        """Blocks until the broker acknowledges the alert (QoS 1); raises otherwise. Then the camera's retained
        latest alert is updated (best effort: the alert itself went out)."""
        if not self.client.is_connected():
            raise ConnectionError(f"not connected to the MQTT broker {self.host}:{self.port}")
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(PUBACK_TIMEOUT_S)
        if not info.is_published():
            raise TimeoutError(f"the MQTT broker did not acknowledge within {PUBACK_TIMEOUT_S:g} s")
        self.client.publish(f"{self.prefix}/{camera_level(camera)}/last", payload, qos=1, retain=True)
