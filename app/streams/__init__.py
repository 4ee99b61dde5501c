"""Live cameras: RTSP, HTTP (MPEG-TS, HLS), RTMP and local recordings in, people tracked, their attributes as
events. See docs/streams.md ("running a stream elsewhere" for what a Stream is handed)."""

from .manager import CLOSED, StreamManager, Streams, StreamSpec, Watched
from .reader import Clock, SystemClock
from .sources import Source, check_source
from .status import StreamStatus
from .stream import ClipModel, Event, Stream, StreamConfig
from .tracks import TrackEnded, TrackState

__all__ = [
    "CLOSED",
    "ClipModel",
    "Clock",
    "Event",
    "Source",
    "Stream",
    "StreamConfig",
    "StreamManager",
    "StreamSpec",
    "Streams",
    "StreamStatus",
    "SystemClock",
    "TrackEnded",
    "TrackState",
    "Watched",
    "check_source",
]
