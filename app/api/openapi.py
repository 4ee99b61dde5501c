"""The OpenAPI document's words for the routes: error responses by status (from ``errors.ERRORS``) and the upload
bodies FastAPI cannot infer from the routes' signatures (they read the raw request stream)."""

from __future__ import annotations

from .errors import ERRORS, RETRY_LATER
from .schemas import ErrorResponse
from .uploads import RAW_CONTENT_TYPES


def described(status: int) -> str:
    """Every code answered with ``status``, each with what it means."""
    return " ".join(f"`{code.value}`: {text}" for code, (answered, text) in ERRORS.items() if answered == status)


def error_responses(*statuses: int) -> dict:
    """FastAPI ``responses=`` for a route that may answer these error statuses: each lists its codes."""
    responses: dict[int, dict] = {
        status: {"model": ErrorResponse, "description": described(status)} for status in statuses
    }
    for status in set(statuses) & RETRY_LATER:
        responses[status]["headers"] = {
            "Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}
        }
    return responses


_BINARY = {"type": "string", "format": "binary", "minLength": 1}  # an empty file is refused
_REQUEST_ID = {
    "name": "X-Request-Id",
    "in": "header",
    "required": False,
    # Any value is accepted: one that does not match the pattern is replaced by a generated id.
    "schema": {"type": "string"},
    "description": "Your id for this request (letters, digits and `. _ : -`, up to 128 characters; "
    "anything else is replaced by a generated id). Echoed in the response header, the body and the logs.",
}
_VIDEO_PART = {**_BINARY, "description": "One clip: mp4/mov, webm/mkv, avi, gif or mpeg-ts."}
_VIDEO_FORM = {
    "title": "Video",
    "type": "object",
    "properties": {"video": _VIDEO_PART},
    "required": ["video"],
    "additionalProperties": False,
}
_RAW_VIDEO = {content_type: {"schema": _BINARY} for content_type in RAW_CONTENT_TYPES}
_VIDEO_ENCODING = {"video": {"contentType": ", ".join(RAW_CONTENT_TYPES)}}
PREDICT_BODY = {
    "parameters": [_REQUEST_ID],
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "oneOf": [
                        _VIDEO_FORM,
                        {
                            "title": "Frames",
                            "type": "object",
                            "properties": {
                                "frames": {
                                    "type": "array",
                                    "items": _BINARY,
                                    "minItems": 1,
                                    "description": "A tracklet: JPEG/PNG crops in temporal order (at most "
                                    "VTFPAR_MAX_UPLOAD_FRAMES, see /info).",
                                }
                            },
                            "required": ["frames"],
                            "additionalProperties": False,
                        },
                    ]
                },
                "encoding": {**_VIDEO_ENCODING, "frames": {"contentType": "image/jpeg, image/png"}},
            },
            **_RAW_VIDEO,
        },
    },
}
TRACKS_BODY = {
    "parameters": [_REQUEST_ID],
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "video": {**_BINARY, "description": "Camera footage: mp4/mov, webm/mkv, avi, gif or mpeg-ts."},
                        "tracks": {
                            **_BINARY,
                            "description": "The boxes: MOT Challenge text (frame,id,left,top,width,height[,...] "
                            'per line, frames 1-based) or JSON ([{"frame": 1, "id": 3, "box": [l, t, w, h]}, ...]). '
                            "At most VTFPAR_MAX_TRACKS tracks and VTFPAR_MAX_TRACK_BOXES boxes (see /info).",
                        },
                    },
                    "required": ["video", "tracks"],
                    "additionalProperties": False,
                },
                "encoding": {**_VIDEO_ENCODING, "tracks": {"contentType": "text/plain, text/csv, application/json"}},
            }
        },
    },
}
SCENE_BODY = {
    "parameters": [_REQUEST_ID],
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": _VIDEO_FORM, "encoding": _VIDEO_ENCODING},
            **_RAW_VIDEO,
        },
    },
}
