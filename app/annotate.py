"""``vtfpar annotate``: attributes per person for a video file, and the video with every track drawn on it.

    vtfpar annotate VIDEO [--tracks MOT.txt] --out annotated.mp4 --json tracks.jsonl [--url URL] [--margin M]

Offline (the default) it runs the serving pipeline in this process, without a server: the model of
``VTFPAR_CHECKPOINT`` (or the built-in demo model) and every other ``VTFPAR_*`` setting, as ``python -m app``
reads them. With ``--tracks`` the boxes come from that MOT text or JSON file, as /predict/tracks takes them;
without, from the built-in detector and tracker, as /predict/scene finds them (``VTFPAR_DETECTOR``, HOG by
default). ``--url`` sends the same request to a running service instead, and loads no model.

``--json`` gets one line per track, the track object of the /predict/tracks answer (attributes, groups, the
frames and crops the model saw), then one line per skipped track with ``"skipped": true`` and the reason.
``--out`` gets the whole video (H.264) with each track's box in a colour of its own, its id and its most
probable positive attributes; a skipped track's box is grey.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path

import av
import httpx
from PIL import Image, ImageDraw, ImageFont
from pydantic import ValidationError

from model import CheckpointError

from .api.schemas import TracksResponse, tracks_response
from .backend import LocalBackend
from .errors import ServiceError
from .inference import StartupError, load_runner
from .metrics import Metrics
from .service import Service
from .settings import Settings
from .tracks import TrackLimits, load_scene, parse_tracks, submit_tracks

# Limits for reading the --tracks file to draw it: the answer has already been checked against the real ones.
DRAWING_LIMITS = TrackLimits(max_tracks=10**9, max_track_boxes=10**9)
PALETTE = (
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
)
SKIPPED_COLOUR = (160, 160, 160)
HTTP_TIMEOUT_S = 600


class AnnotateError(Exception):
    """A failure the user can fix: printed as one line, exit status 2."""


def annotate_offline(video: Path, tracks: Path | None, margin: float, settings: Settings) -> TracksResponse:
    """The /predict/tracks (or /predict/scene) answer for local files, from the serving pipeline in-process."""
    return asyncio.run(_annotate_offline(video, tracks, margin, settings.model_copy(update={"warmup": False})))


async def _annotate_offline(video: Path, tracks: Path | None, margin: float, settings: Settings) -> TracksResponse:
    start = time.perf_counter()
    runner = load_runner(settings)
    scene = load_scene(settings, runner.device) if tracks is None else None
    if tracks is None and scene is None:
        raise AnnotateError("no --tracks given and built-in detection is off (VTFPAR_DETECTOR=off): pass --tracks")
    service = Service(settings, LocalBackend(settings, runner, Metrics()), scene=scene)
    await service.start()
    try:
        with open(video, "rb") as video_file, contextlib.ExitStack() as files:
            if tracks is None:
                prepared = await service.decoder.run(
                    lambda deadline: service.tracks.read_scene(video_file, margin, deadline)
                )
            else:
                tracks_file = files.enter_context(open(tracks, "rb"))
                prepared = await service.decoder.run(
                    lambda deadline: service.tracks.read_tracks(video_file, tracks_file, margin, deadline)
                )
        submitted = time.perf_counter()
        results = await submit_tracks(service.backend, prepared)
        model_s = time.perf_counter() - submitted
    finally:
        await service.stop()
    return tracks_response(
        "vtfpar annotate",
        runner.description,
        prepared,
        results,
        model_s=model_s,
        total_s=time.perf_counter() - start,
        with_boxes=tracks is None,
    )


def annotate_remote(url: str, video: Path, tracks: Path | None, margin: float) -> TracksResponse:
    """The same answer from a running service."""
    endpoint = f"{url.rstrip('/')}/predict/{'tracks' if tracks is not None else 'scene'}"
    with open(video, "rb") as video_file, contextlib.ExitStack() as files:
        parts = {"video": (video.name, video_file)}
        if tracks is not None:
            parts["tracks"] = (tracks.name, files.enter_context(open(tracks, "rb")))
        try:
            response = httpx.post(endpoint, params={"margin": margin}, files=parts, timeout=HTTP_TIMEOUT_S)
        except httpx.HTTPError as exc:
            raise AnnotateError(f"{endpoint}: {exc}") from None
    if response.status_code != 200:
        try:
            error = response.json()["error"]
            detail = f"{error['code']}: {error['message']}"
        except (ValueError, KeyError, TypeError):
            detail = response.text[:200]
        raise AnnotateError(f"{endpoint} answered {response.status_code}: {detail}")
    try:
        return TracksResponse.model_validate(response.json())
    except (ValueError, ValidationError) as exc:
        raise AnnotateError(f"{endpoint} did not answer with a /predict/tracks body: {exc}") from None


def track_boxes(answer: TracksResponse, tracks: Path | None) -> dict[int, list[list[float]]]:
    """Every box of every track (run or skipped), as ``[frame (1-based), left, top, width, height]`` rows."""
    if tracks is None:
        return {track.track_id: track.track_boxes or [] for track in answer.tracks}
    with open(tracks, "rb") as handle:
        parsed = parse_tracks(handle, DRAWING_LIMITS)
    return {
        track_id: [[box.frame + 1, box.left, box.top, box.width, box.height] for box in boxes]
        for track_id, boxes in parsed.boxes.items()
    }


def write_jsonl(answer: TracksResponse, path: Path) -> None:
    with open(path, "w") as handle:
        for track in answer.tracks:
            handle.write(json.dumps(track.model_dump()) + "\n")
        for skipped in answer.skipped:
            handle.write(json.dumps({"skipped": True, **skipped.model_dump()}) + "\n")


def captions(answer: TracksResponse, top: int) -> dict[int, tuple[list[str], tuple[int, int, int]]]:
    """Per track id: the lines drawn above its box, and its colour."""
    drawn = {}
    for track in answer.tracks:
        positive = sorted((a for a in track.attributes if a.positive), key=lambda a: -a.probability)
        lines = [f"#{track.track_id}"] + [f"{a.name} {a.probability:.2f}" for a in positive[:top]]
        drawn[track.track_id] = (lines, PALETTE[track.track_id % len(PALETTE)])
    for skipped in answer.skipped:
        drawn[skipped.track_id] = ([f"#{skipped.track_id} skipped"], SKIPPED_COLOUR)
    return drawn


def draw_video(
    video: Path,
    out: Path,
    boxes: dict[int, list[list[float]]],
    drawn: dict[int, tuple[list[str], tuple[int, int, int]]],
) -> int:
    """Re-encode ``video`` with the boxes drawn; returns the number of frames written.

    A track's box stays on screen until its next box, across gaps no longer than its usual step (so boxes from
    a detector that ran on every k-th frame are drawn on every frame)."""
    schedule = _schedule(boxes)
    with av.open(str(video)) as source, av.open(str(out), mode="w") as target:
        stream_in = source.streams.video[0]
        # libx264 wants even sides: an odd last row or column is left out.
        width, height = stream_in.codec_context.width // 2 * 2, stream_in.codec_context.height // 2 * 2
        stream_out = target.add_stream("libx264", rate=stream_in.average_rate or 25)
        stream_out.width, stream_out.height, stream_out.pix_fmt = width, height, "yuv420p"
        font = ImageFont.load_default(size=max(9, height // 30))
        count = 0
        for count, frame in enumerate(source.decode(stream_in), start=1):
            image = frame.to_image().crop((0, 0, width, height))
            _draw_frame(image, [(track_id, box) for track_id, box in schedule.get(count, [])], drawn, font)
            for packet in stream_out.encode(av.VideoFrame.from_image(image)):
                target.mux(packet)
        for packet in stream_out.encode():
            target.mux(packet)
    return count


def _schedule(boxes: dict[int, list[list[float]]]) -> dict[int, list[tuple[int, list[float]]]]:
    """Frame (1-based) -> the (track id, box) pairs on screen in it."""
    schedule: dict[int, list[tuple[int, list[float]]]] = {}
    for track_id, rows in boxes.items():
        rows = sorted(rows)
        steps = [int(b[0] - a[0]) for a, b in zip(rows, rows[1:], strict=False)]
        step = min(steps, default=1)
        for row, following in zip(rows, rows[1:] + [None], strict=True):
            hold = step if following is None else min(int(following[0] - row[0]), step)
            for frame in range(int(row[0]), int(row[0]) + hold):
                schedule.setdefault(frame, []).append((track_id, row[1:]))
    return schedule


def _draw_frame(image: Image.Image, on_screen, drawn, font) -> None:
    """Boxes first, then each caption above its box, moved down past the captions already placed."""
    draw = ImageDraw.Draw(image)
    for track_id, (left, top, width, height) in on_screen:
        colour = drawn.get(track_id, ([], SKIPPED_COLOUR))[1]
        draw.rectangle([left, top, left + width, top + height], outline=colour, width=max(2, image.height // 150))
    placed: list[tuple[float, float, float, float]] = []
    for track_id, (left, top, _, _) in on_screen:
        lines, colour = drawn.get(track_id, ([f"#{track_id}"], SKIPPED_COLOUR))
        text = "\n".join(lines)
        x0, y0, x1, y1 = draw.multiline_textbbox((0, 0), text, font=font, spacing=1)
        width, height = x1 - x0 + 2, y1 - y0 + 2
        x = min(max(0.0, left), max(0.0, image.width - width))
        y = max(0.0, top - height - 1)
        for other in sorted(placed, key=lambda rect: rect[1]):
            if x < other[2] and other[0] < x + width and y < other[3] and other[1] < y + height:
                y = other[3] + 1
        placed.append((x, y, x + width, y + height))
        draw.rectangle([x, y, x + width, y + height], fill=(0, 0, 0))
        draw.multiline_text((x + 1, y + 1 - y0), text, fill=colour, font=font, spacing=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vtfpar annotate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("video", type=Path, help="the video file (mp4/mov, webm/mkv, avi, gif or mpeg-ts)")
    parser.add_argument("--tracks", type=Path, help="its tracks, MOT text or JSON; omit for the built-in detector")
    parser.add_argument("--out", type=Path, required=True, help="the annotated video to write (mp4, H.264)")
    parser.add_argument("--json", type=Path, required=True, help="the JSON lines to write, one per track")
    parser.add_argument("--url", help="a running service (http://host:8000) to ask instead of loading the model")
    parser.add_argument("--margin", type=float, default=0.0, help="grow each box by this fraction before cropping")
    parser.add_argument("--top", type=int, default=3, help="positive attributes drawn per track (default 3)")
    args = parser.parse_args(argv)
    for path in (args.video, args.tracks):
        if path is not None and not path.is_file():
            parser.error(f"{path} does not exist")
    try:
        if args.url:
            answer = annotate_remote(args.url, args.video, args.tracks, args.margin)
        else:
            answer = annotate_offline(args.video, args.tracks, args.margin, _settings())
        write_jsonl(answer, args.json)
        frames = draw_video(args.video, args.out, track_boxes(answer, args.tracks), captions(answer, args.top))
    except ServiceError as exc:
        print(f"error: {exc.code.value}: {exc.message}", file=sys.stderr)
        return 2
    except (AnnotateError, StartupError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"{len(answer.tracks)} track(s), {len(answer.skipped)} skipped: {args.json}; "
        f"{frames} frame(s) annotated: {args.out}"
    )
    return 0


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(f"VTFPAR_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        raise AnnotateError(problems) from None


if __name__ == "__main__":
    sys.exit(main())
