"""A stream's status: the one shape ``Stream.status()`` builds and the API answers (GET /streams, /streams/{id})."""

from __future__ import annotations

from pydantic import BaseModel, Field

from .reader import StreamState


class StreamStatus(BaseModel):
    id: str
    name: str
    url: str = Field(description="The source's URL, credentials hidden.")
    state: StreamState = Field(examples=["running"])
    fps_in: float = Field(description="Frames decoded per second (last 5 s).")
    fps_processed: float = Field(description="Frames detected and tracked per second (last 5 s).")
    frames_dropped: int = Field(description="Frames meant for the detector that were replaced: processing fell behind.")
    lag_s: float = Field(description="From the last processed frame's arrival to the end of its processing.")
    active_tracks: int
    reconnects: int = Field(description="Times the source came back after failing.")
    last_error: str | None = Field(description="Why the source last failed (credentials hidden).")
    detection_interval: int
    update_s: float
    created_at: str
