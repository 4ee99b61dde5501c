"""Live cameras: RTSP, HTTP (MPEG-TS, HLS), RTMP and local recordings in, people tracked, their attributes as
events. See docs/streams.md."""

from .manager import CLOSED, StreamManager, Streams, StreamSpec, Watched
from .stream import Event, Stream
from .tracks import TrackEnded

__all__ = ["CLOSED", "Event", "Stream", "StreamManager", "Streams", "StreamSpec", "TrackEnded", "Watched"]
