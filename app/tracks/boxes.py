"""Reading the ``tracks`` of a /predict/tracks request: MOT Challenge text or JSON, into boxes per track.

MOT text has one box per line, ``frame,id,left,top,width,height[,conf,x,y,z]``: frames 1-based, pixels in the
video's frame, columns after the sixth ignored. JSON is ``[{"frame": .., "id": .., "box": [l, t, w, h]}, ...]``
with the same meanings (other keys ignored). The first non-blank byte decides: ``[`` is JSON, anything else MOT.

Everything that can be checked without the video is checked here, each failure naming its line (MOT) or item
(JSON): numbers, sizes, duplicates, and the request's limits on tracks and boxes. Whether a box fits the video
(its frame exists, it overlaps the picture) is checked once the video is indexed (:func:`check_boxes`).
"""

from __future__ import annotations

import codecs
import io
import itertools
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO, cast

import ijson

from ..errors import ErrorCode, ServiceError

# The tracks part may hold this many bytes per box allowed: generous for any MOT or JSON writer, and it bounds
# the memory a JSON document takes before its boxes are counted.
BYTES_PER_BOX = 256


@dataclass(frozen=True)
class TrackLimits:
    max_tracks: int
    max_track_boxes: int

    @classmethod
    def from_settings(cls, settings) -> TrackLimits:
        return cls(max_tracks=settings.max_tracks, max_track_boxes=settings.max_track_boxes)


@dataclass(frozen=True)
class Box:
    frame: int  # 0-based display-order index of the video frame (MOT frame number - 1)
    left: float
    top: float
    width: float
    height: float
    where: str  # "line 7" (MOT) or "item 6" (JSON, 0-based): what errors name; "the detector" for its boxes


@dataclass
class Tracks:
    """Boxes by track id, each track's in frame order."""

    source: str  # "mot", "json" or "detector"
    boxes: dict[int, list[Box]] = field(default_factory=dict)

    @property
    def box_count(self) -> int:
        return sum(len(boxes) for boxes in self.boxes.values())


def bad_tracks(where: str, problem: str) -> ServiceError:
    return ServiceError(ErrorCode.BAD_TRACKS, f"tracks {where}: {problem}")


def parse_tracks(file: BinaryIO, limits: TrackLimits) -> Tracks:
    """The boxes of a MOT text or JSON tracks file, checked on their own (see the module docstring)."""
    file.seek(0, io.SEEK_END)
    size = file.tell()
    file.seek(0)
    if size > limits.max_track_boxes * BYTES_PER_BOX:
        raise ServiceError(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"the tracks part is {size} bytes; with at most {limits.max_track_boxes} boxes it may be "
            f"{limits.max_track_boxes * BYTES_PER_BOX}",
        )
    reader = io.BufferedReader(cast(io.RawIOBase, file))  # the upload's section is raw: buffer its lines
    first = reader.peek(io.DEFAULT_BUFFER_SIZE).lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    builder = _Builder("json" if first == b"[" else "mot", limits)
    if builder.tracks.source == "json":
        if reader.peek(3).startswith(codecs.BOM_UTF8):
            reader.read(3)
        _read_json(reader, builder)
    else:
        _read_mot(reader, builder)
    if not builder.tracks.boxes:
        raise bad_tracks("file", "no boxes: expected MOT lines 'frame,id,left,top,width,height' or a JSON array")
    for boxes in builder.tracks.boxes.values():
        boxes.sort(key=lambda box: box.frame)
    return builder.tracks


def check_boxes(tracks: Tracks, total_frames: int, width: int, height: int) -> None:
    """Every box must be in a frame the video has and overlap its ``width`` x ``height`` picture."""
    for boxes in tracks.boxes.values():
        for box in boxes:
            if box.frame >= total_frames:
                raise bad_tracks(box.where, f"frame {box.frame + 1} is past the video's last frame ({total_frames})")
            if box.left >= width or box.top >= height or box.left + box.width <= 0 or box.top + box.height <= 0:
                raise bad_tracks(
                    box.where,
                    f"the box (left {box.left:g}, top {box.top:g}, width {box.width:g}, height {box.height:g}) "
                    f"lies outside the {width}x{height} frame",
                )


_BOX = ("left", "top", "width", "height")


class _Builder:
    """Collects boxes, refusing duplicates and anything beyond the request's limits as soon as it appears."""

    def __init__(self, source: str, limits: TrackLimits) -> None:
        self.tracks = Tracks(source)
        self.limits = limits
        self.count = 0
        self._seen: dict[tuple[int, int], str] = {}  # (track, frame) -> where its box was

    def add(self, where: str, frame: object, track: object, box: Sequence[object]) -> None:
        frame_number = _integer(where, "frame", frame)
        track_id = _integer(where, "id", track)
        if frame_number < 1:
            raise bad_tracks(where, f"frame {frame_number}: MOT frames are numbered from 1")
        if track_id < 0:
            raise bad_tracks(
                where,
                f"track id {track_id}: a negative id marks an untracked detection (MOT det files); send tracks, "
                "or send the video alone to /predict/scene",
            )
        left, top, width, height = (_number(where, name, value) for name, value in zip(_BOX, box, strict=True))
        if width <= 0 or height <= 0:
            raise bad_tracks(where, f"the box has width {width:g} and height {height:g}; both must be positive")
        key = (track_id, frame_number)
        if key in self._seen:
            raise bad_tracks(where, f"track {track_id} already has a box in frame {frame_number} ({self._seen[key]})")
        self._seen[key] = where
        self.count += 1
        if self.count > self.limits.max_track_boxes:
            raise ServiceError(
                ErrorCode.PAYLOAD_TOO_LARGE,
                f"tracks {where}: more than {self.limits.max_track_boxes} boxes; the limit is "
                f"{self.limits.max_track_boxes} (VTFPAR_MAX_TRACK_BOXES)",
            )
        boxes = self.tracks.boxes.get(track_id)
        if boxes is None:
            if len(self.tracks.boxes) == self.limits.max_tracks:
                raise ServiceError(
                    ErrorCode.PAYLOAD_TOO_LARGE,
                    f"tracks {where}: track {track_id} is one more than the limit of {self.limits.max_tracks} "
                    "tracks (VTFPAR_MAX_TRACKS, at most VTFPAR_MAX_QUEUE)",
                )
            boxes = self.tracks.boxes[track_id] = []
        boxes.append(Box(frame_number - 1, left, top, width, height, where))


def _read_mot(lines: Iterable[bytes], builder: _Builder) -> None:
    for number, raw in enumerate(lines, start=1):
        where = f"line {number}"
        try:
            line = raw.decode("utf-8-sig" if number == 1 else "utf-8").strip()
        except UnicodeDecodeError:
            raise bad_tracks(where, "not UTF-8 text") from None
        if not line:
            continue
        fields = [value.strip() for value in line.split(",")]
        if len(fields) < 6:
            raise bad_tracks(
                where, f"expected 'frame,id,left,top,width,height[,...]', got {len(fields)} field(s): {_quote(line)}"
            )
        builder.add(where, fields[0], fields[1], fields[2:6])


_ITEM = 'expected {"frame": .., "id": .., "box": [left, top, width, height]}'
_STARTS, _ENDS = frozenset({"start_map", "start_array"}), frozenset({"end_map", "end_array"})


def _read_json(file: BinaryIO, builder: _Builder) -> None:
    """The items of a JSON array, each checked as soon as it is read (parsed as a stream with ijson): memory holds
    one item's frame, id and box whatever the document holds, so 24 MB of ``[{},{},...]`` is refused at item 0
    without being loaded (``json.loads`` would build 8 million dicts, 620 MiB, first)."""
    events = ijson.basic_parse(file, use_float=True)
    try:
        if next(events, ("", None))[0] != "start_array":
            raise bad_tracks("file", 'expected a JSON array of {"frame": .., "id": .., "box": [l, t, w, h]}')
        for number in itertools.count():
            event, _ = next(events)
            if event == "end_array":
                break
            where = f"item {number}"
            if event != "start_map":
                raise bad_tracks(where, _ITEM)
            item = _json_item(events, where)
            builder.add(where, item["frame"], item["id"], cast(list, item["box"]))
        next(events, None)  # anything after the array is a parse error
    except ijson.JSONError as exc:
        raise bad_tracks("file", f"not valid JSON ({_json_problem(exc)})") from None


def _json_problem(exc: Exception) -> str:
    """The parser's own words, e.g. "parse error: premature EOF": the first line of its message (the others
    quote the client's text)."""
    text = str(exc).removeprefix("b'")  # yajl's message, sometimes as the repr of bytes
    return re.split(r"\n|\\n", text, maxsplit=1)[0].strip() or "incomplete document"


def _json_item(events: Iterator[tuple[str, object]], where: str) -> dict[str, object]:
    """One item's frame, id and box, after its ``start_map``; the values of other keys are skipped."""
    item: dict[str, object] = {}
    for event, key in events:
        if event == "end_map":
            break
        if key == "box":
            item["box"] = _json_box(events, where)
        elif key in ("frame", "id"):
            item[key] = _json_scalar(events)
        else:
            _skip(next(events)[0], events)
    if not {"frame", "id", "box"} <= item.keys():
        raise bad_tracks(where, _ITEM)
    return item


def _json_box(events: Iterator[tuple[str, object]], where: str) -> list[object]:
    event, _ = next(events)
    values: list[object] = []
    if event == "start_array":
        while len(values) <= 4 and (value := _json_scalar(events, end="end_array")) is not _END:
            values.append(value)
    if len(values) != 4:
        raise bad_tracks(where, "'box' must be [left, top, width, height]")
    return values


_END = object()


def _json_scalar(events: Iterator[tuple[str, object]], end: str = "") -> object:
    """The next value if it is a number, string, boolean or null; an array or object is skipped and stands as
    "[...]" or "{...}" (which no number check accepts); ``_END`` for the ``end`` event."""
    event, value = next(events)
    if event == end:
        return _END
    if event in _STARTS:
        _skip(event, events)
        return "{...}" if event == "start_map" else "[...]"
    return value


def _skip(event: str, events: Iterator[tuple[str, object]]) -> None:
    """Past the value that begins with ``event``, however deeply nested, holding nothing."""
    depth = 1 if event in _STARTS else 0
    while depth:
        event, _ = next(events)
        depth += (event in _STARTS) - (event in _ENDS)


def _number(where: str, name: str, value: object) -> float:
    if isinstance(value, bool):
        raise bad_tracks(where, f"{name} must be a number, got {value!r}")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise bad_tracks(where, f"{name} must be a number, got {_quote(str(value))}") from None
    if not math.isfinite(number):
        raise bad_tracks(where, f"{name} must be a finite number, got {_quote(str(value))}")
    return number


def _integer(where: str, name: str, value: object) -> int:
    number = _number(where, name, value)
    if not number.is_integer():
        raise bad_tracks(where, f"{name} must be a whole number, got {_quote(str(value))}")
    return int(number)


def _quote(text: str, limit: int = 60) -> str:
    """Client text in a message: repr-escaped (no control characters reach logs) and cut short."""
    return repr(text if len(text) <= limit else text[:limit] + "...")
