"""The service's one error type and its closed set of codes.

Every failure a client can see is a :class:`ServiceError` carrying an :class:`ErrorCode`; the HTTP status for
each code is decided in exactly one place (``app/api/errors.py``), so decoding and batching never think in HTTP.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    BAD_REQUEST = "bad_request"  # malformed request: missing/extra fields, empty upload
    UNAUTHORIZED = "unauthorized"  # VTFPAR_API_TOKEN is set and the request does not carry it
    TOO_MANY_WRONG_TOKENS = "too_many_wrong_tokens"  # this client sent too many wrong tokens lately
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    UPLOAD_TIMEOUT = "upload_timeout"  # the body was not complete within the upload deadline
    PAYLOAD_TOO_LARGE = "payload_too_large"  # upload bytes or number of frame files above the limit
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"  # content type, container, codec or image format refused
    UNDECODABLE_MEDIA = "undecodable_media"  # corrupt or truncated media
    NO_VIDEO_STREAM = "no_video_stream"
    TOO_FEW_FRAMES = "too_few_frames"
    CLIP_TOO_LONG = "clip_too_long"  # duration, or frames that would have to be decoded
    TOO_MANY_PIXELS = "too_many_pixels"
    BAD_FRAME_SIZE = "bad_frame_size"  # a side longer than max_side, or sides too unequal (max_aspect_ratio)
    DECODE_TIMEOUT = "decode_timeout"
    BAD_TRACKS = "bad_tracks"  # a tracks file (MOT text or JSON) that cannot be read, or boxes outside the video
    DETECTION_OFF = "detection_off"  # /predict/scene on a server without a configured detector
    # Live streams
    SOURCE_NOT_ALLOWED = "source_not_allowed"  # a stream URL outside VTFPAR_STREAM_SOURCES (or of no known scheme)
    TOO_MANY_STREAMS = "too_many_streams"  # VTFPAR_MAX_STREAMS streams are open already
    TOO_MANY_VIEWERS = "too_many_viewers"  # a stream's MJPEG preview has as many viewers as it takes
    # Stored tracks and their search
    UNKNOWN_ATTRIBUTE = "unknown_attribute"  # an attribute the model's schema does not have (closest names given)
    BAD_TIME = "bad_time"  # a time that is not ISO 8601, or bounds in the wrong order
    BAD_SEARCH = "bad_search"  # a cursor of another query, an unknown model, contradictory attributes, no bounds
    SEARCH_TIMEOUT = "search_timeout"  # a search of the stored tracks ran longer than search_timeout_s
    CAMERA_REQUIRED = "camera_required"  # store=true without camera=NAME
    # Alerts
    WEBHOOK_NOT_ALLOWED = "webhook_not_allowed"  # a rule's webhook URL outside VTFPAR_WEBHOOK_TARGETS
    MQTT_OFF = "mqtt_off"  # a rule asks for MQTT and VTFPAR_MQTT_URL is unset
    BAD_RULE = "bad_rule"  # a rule whose schedule's time zone is unknown
    NO_EMBEDDING = "no_embedding"  # a stored track without a comparable appearance embedding (see app/api/errors.py)
    QUEUE_FULL = "queue_full"
    OVERLOADED = "overloaded"  # too many requests in flight
    NOT_READY = "not_ready"  # loading, warming up or draining
    QUEUE_TIMEOUT = "queue_timeout"
    CLIENT_DISCONNECTED = "client_disconnected"  # the client left before its answer; only metrics see it
    INTERNAL_ERROR = "internal_error"


class ServiceError(Exception):
    def __init__(self, code: ErrorCode, message: str, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s  # when this error knows better than VTFPAR_RETRY_AFTER_S

    def __repr__(self) -> str:
        return f"ServiceError({self.code.value}, {self.message!r})"
