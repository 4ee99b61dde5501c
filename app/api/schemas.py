"""Response bodies (they are the OpenAPI schema at /docs) and the turning of one probability row into them (the
decision rule itself is ``model.decisions``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from starlette.requests import Request

from model.decisions import one_of_winners, positives

from ..store import ModelSpec, StoredTrack
from ..streams.status import StreamStatus


class ModelRef(BaseModel):
    name: str = Field(description="Model config (preset) name.", examples=["vtfpar-b16"])
    version: str = Field(
        description="First 12 hex digits of the checkpoint's sha256 (full digest in /info).", examples=["3f9c2a71d0be"]
    )
    schema_name: str = Field(alias="schema", description="Attribute schema the model predicts.", examples=["mars"])
    demo: bool = Field(description="True when the built-in demo checkpoint is served (not a trained model).")

    model_config = {"populate_by_name": True}


class InputInfo(BaseModel):
    source: Literal["video", "frames"]
    container: str = Field(
        examples=["mp4"], description="mp4, matroska, avi, gif or mpegts; jpeg/png for frames uploads."
    )
    codec: str = Field(examples=["h264"])
    width: int
    height: int
    duration_s: float | None = Field(description="Video duration; null for frames uploads.")
    total_frames: int = Field(description="Frames in the upload.")
    frame_indices: list[int] = Field(
        description="Indices (0-based, among total_frames) of the frames the model saw.",
        examples=[[12, 37, 62, 87, 112, 137]],
    )
    frames_decoded: int = Field(description="Frames actually decoded; seeking keeps this small for long clips.")


class AttributeResult(BaseModel):
    name: str = Field(examples=["backpack"])
    group: str = Field(examples=["backpack"])
    probability: float = Field(ge=0, le=1, examples=[0.83])
    threshold: float = Field(examples=[0.45])
    positive: bool = Field(description="probability > threshold", examples=[True])


class GroupResult(BaseModel):
    name: str = Field(examples=["age"])
    winner: str = Field(
        description="The attribute with the highest probability in this one-of-N group.", examples=["age_adult"]
    )
    probability: float = Field(ge=0, le=1, examples=[0.71])


class Timings(BaseModel):
    decode_s: float = Field(description="Demux, decode, sampling and preprocessing.")
    queue_s: float = Field(description="Waiting for a batch.")
    inference_s: float = Field(description="The forward pass of the batch this clip ran in.")
    total_s: float = Field(description="From the request's arrival to the response.")


class PredictResponse(BaseModel):
    request_id: str
    model: ModelRef
    input: InputInfo
    attributes: list[AttributeResult] = Field(description="Every attribute, in the schema's column order.")
    groups: list[GroupResult] = Field(description="The winning class of each one-of-N group.")
    batch_size: int = Field(description="Clips in the forward pass that served this request.")
    timings: Timings


class TracksInput(BaseModel):
    source: Literal["video"]
    container: str = Field(examples=["mp4"], description="mp4, matroska, avi, gif or mpegts.")
    codec: str = Field(examples=["h264"])
    width: int
    height: int
    duration_s: float | None
    total_frames: int = Field(description="Frames in the video.")
    frames_decoded: int = Field(
        description="Frames actually decoded, for all tracks together (and, for /predict/scene, for detection)."
    )
    tracks_source: Literal["mot", "json", "detector"] = Field(
        description="Where the tracks came from: the request's MOT text or JSON, or the service's own detector."
    )
    boxes: int = Field(description="Boxes in all tracks.")
    margin: float = Field(
        description="Fraction of each box's width (height) added on its left and right (above and below)."
    )


class TrackResult(BaseModel):
    track_id: int = Field(description="The track's id, as in the tracks sent (from the tracker for /predict/scene).")
    first_frame: int = Field(description="First frame with a box of this track (1-based, as in MOT files).")
    last_frame: int = Field(description="Last frame with a box of this track (1-based).")
    boxes: int = Field(description="Boxes this track has.")
    frames_used: list[int] = Field(
        description="The frames (1-based) whose crops the model saw, in order: the track's boxes sampled as /predict "
        "samples a clip's frames (repeated when the track has fewer boxes than the model takes).",
        examples=[[12, 37, 62, 87, 112, 137]],
    )
    boxes_used: list[list[int]] = Field(
        description="The crop cut from each of those frames, [left, top, width, height] in whole pixels: the box "
        "grown by the margin and clipped to the frame."
    )
    track_boxes: list[list[float]] | None = Field(
        None,
        description="/predict/scene only: every box of the track, [frame (1-based), left, top, width, height]. "
        "Null for /predict/tracks, whose boxes the client sent.",
    )
    attributes: list[AttributeResult] = Field(description="Every attribute, in the schema's column order.")
    groups: list[GroupResult] = Field(description="The winning class of each one-of-N group.")
    batch_size: int = Field(description="Clips in the forward pass that served this track.")


class SkippedTrackResult(BaseModel):
    track_id: int
    first_frame: int = Field(description="1-based.")
    last_frame: int = Field(description="1-based.")
    boxes: int
    reason: str = Field(examples=["2 box(es); at least 4 needed (VTFPAR_MIN_FRAMES)"])


class TracksTimings(BaseModel):
    decode_s: float = Field(
        description="Reading the tracks, demux, decode, cropping and preprocessing (and detection, for /predict/scene)."
    )
    model_s: float = Field(
        description="From the first track's submission to the last track's answer: queue waits and forward passes."
    )
    total_s: float = Field(description="From the request's arrival to the response.")


class TracksResponse(BaseModel):
    request_id: str
    model: ModelRef
    input: TracksInput
    tracks: list[TrackResult] = Field(description="The tracks the model ran on, by track id.")
    skipped: list[SkippedTrackResult] = Field(description="Tracks not run, each with the reason.")
    timings: TracksTimings
    stored: list[int] | None = Field(
        None, description="With store=true: the stored tracks' ids (GET /tracks/{id}), in the order of tracks."
    )


class ErrorBody(BaseModel):
    code: str = Field(examples=["unsupported_media_type"])
    message: str = Field(examples=["unrecognised format: expected a video (mp4/mov, webm/mkv, avi, gif or mpeg-ts)"])


class ErrorResponse(BaseModel):
    error: ErrorBody


class Health(BaseModel):
    status: Literal["ok", "not_ready"]


def decisions(model, probabilities) -> tuple[list[dict], list[dict]]:
    """One row of probabilities as answer data (``model`` is the ModelDescription): every attribute with its
    decision, each one-of group's winner, by ``model.decisions``' rule."""
    schema = model.schema
    if not ((probabilities >= 0) & (probabilities <= 1)).all():  # NaN included: a model bug, never an answer
        raise ValueError(f"the model returned probabilities outside [0, 1]: {probabilities.tolist()}")
    decided = positives(probabilities, model.thresholds).tolist()
    values = probabilities.tolist()
    attributes = [
        {"name": a.name, "group": a.group, "probability": p, "threshold": t, "positive": positive}
        for a, p, t, positive in zip(schema.attributes, values, model.thresholds, decided, strict=True)
    ]
    groups = [
        {"name": name, "winner": schema.names[column], "probability": values[column]}
        for name, column in one_of_winners(probabilities, schema).items()
    ]
    return attributes, groups


def predict_response(request_id: str, model, clip, result, total_s: float) -> PredictResponse:
    """The /predict body for one decoded clip (a PreparedClip) and its row of a batch (a BatchResult)."""
    served, media = model.served, clip.media
    attributes, groups = decisions(model, result.probabilities)
    return PredictResponse(
        request_id=request_id,
        model=ModelRef(name=served.name, version=served.version, schema_name=served.schema, demo=served.demo),
        input=InputInfo(
            source=media.source,
            container=media.container,
            codec=media.codec,
            width=media.width,
            height=media.height,
            duration_s=media.duration_s,
            total_frames=media.total_frames,
            frame_indices=media.indices,
            frames_decoded=media.frames_decoded,
        ),
        attributes=[AttributeResult(**attribute) for attribute in attributes],
        groups=[GroupResult(**group) for group in groups],
        batch_size=result.batch_size,
        timings=Timings(
            decode_s=clip.decode_s, queue_s=result.queue_s, inference_s=result.inference_s, total_s=total_s
        ),
    )


def tracks_response(
    request_id: str, model, prepared, results, model_s: float, total_s: float, with_boxes: bool = False
) -> TracksResponse:
    """The /predict/tracks (or /predict/scene, ``with_boxes``) body for a PreparedTracks and its batch rows."""
    served, index = model.served, prepared.index
    tracks = []
    for track, result in zip(prepared.tracks, results, strict=True):
        plan = track.plan
        attributes, groups = decisions(model, result.probabilities)
        tracks.append(
            TrackResult(
                track_id=plan.track_id,
                first_frame=plan.boxes[0].frame + 1,
                last_frame=plan.boxes[-1].frame + 1,
                boxes=len(plan.boxes),
                frames_used=[box.frame + 1 for box in plan.used],
                boxes_used=[region.ltwh() for region in plan.regions],
                track_boxes=[_box_row(box) for box in plan.boxes] if with_boxes else None,
                attributes=attributes,
                groups=groups,
                batch_size=result.batch_size,
            )
        )
    return TracksResponse(
        request_id=request_id,
        model=ModelRef(name=served.name, version=served.version, schema_name=served.schema, demo=served.demo),
        input=TracksInput(
            source="video",
            container=index.kind.name,
            codec=index.codec,
            width=index.width,
            height=index.height,
            duration_s=index.duration_s,
            total_frames=index.total_frames,
            frames_decoded=prepared.frames_decoded,
            tracks_source=prepared.source,
            boxes=prepared.box_count,
            margin=prepared.margin,
        ),
        tracks=tracks,
        skipped=[
            SkippedTrackResult(
                track_id=track.track_id,
                first_frame=track.boxes[0].frame + 1,
                last_frame=track.boxes[-1].frame + 1,
                boxes=len(track.boxes),
                reason=track.reason,
            )
            for track in prepared.skipped
        ],
        timings=TracksTimings(decode_s=prepared.decode_s, model_s=model_s, total_s=total_s),
    )


def _box_row(box) -> list[float]:
    return [box.frame + 1, *(round(value, 1) for value in (box.left, box.top, box.width, box.height))]


def box_ltwh(x0: float, y0: float, x1: float, y1: float) -> list[float]:
    """A box as the API gives every box: [left, top, width, height] pixels (MOT's order, which /predict/tracks
    takes and answers), whatever corners the service keeps inside."""
    return [round(x0, 1), round(y0, 1), round(x1 - x0, 1), round(y1 - y0, 1)]


class ModelInfo(BaseModel):
    name: str
    version: str
    digest: str = Field(description="Full sha256 of the checkpoint file.")
    schema_name: str = Field(alias="schema")
    demo: bool
    frames_per_clip: int = Field(description="Frames sampled from each clip (T).")
    image_size: int = Field(description="Side of the square each frame is padded and resized to.")
    model_card: str | None = Field(
        description="The model card's URL, as its checkpoint records it; null if it records none, or a file path "
        "(the demo model's card is docs/model-card/MODEL_CARD.md of the source repository)."
    )
    calibration: dict | None = Field(
        description="What the thresholds and temperatures were fit on (objective, split, tracklets, validation "
        "scores before and after); null when the checkpoint was not calibrated."
    )

    model_config = {"populate_by_name": True}


class AttributeInfo(BaseModel):
    name: str
    group: str
    phrase: str
    threshold: float = Field(description="The attribute is positive iff its probability is above this.")
    temperature: float = Field(description="probability = sigmoid(logit / temperature); 1 unless calibrated.")


class GroupInfo(BaseModel):
    name: str
    kind: Literal["binary", "one_of"]
    attributes: list[str]


class SceneInfo(BaseModel):
    enabled: bool = Field(
        description="False: /predict/scene answers 404 detection_off (VTFPAR_DETECTOR=off, or no 'scene' extra)."
    )
    detector: str | None = Field(examples=["hog", "fasterrcnn_mobilenet_v3_large_fpn"])
    detector_weights: str | None = Field(
        description="The local weights file, or null for torchvision's downloaded COCO weights."
    )
    detection_interval: int = Field(description="The detector runs on every k-th frame.")
    tracker: str | None = Field(examples=["bytetrack (trackers 2.6.1)"])


class InfoResponse(BaseModel):
    model: ModelInfo
    device: str = Field(examples=["cuda:0"])
    precision: str = Field(
        description="Autocast precision of the forward pass (the head runs in fp32).", examples=["bf16"]
    )
    torch_threads: int = Field(description="CPU threads torch uses (VTFPAR_TORCH_THREADS or torch's default).")
    runtime: str = Field(
        description="What runs the forward pass: torch, or ONNX Runtime and its provider for an ONNX checkpoint.",
        examples=["torch 2.14.1", "onnxruntime 1.32.0 (CPUExecutionProvider)"],
    )
    compiled: bool = Field(
        description="The forward pass runs through torch.compile (VTFPAR_COMPILE), with CUDA graphs on CUDA, at the "
        "warmed batch sizes (1, 2, 4, ... up to max_batch_clips)."
    )
    attributes: list[AttributeInfo]
    groups: list[GroupInfo]
    limits: dict[str, float | int] = Field(description="Every upload and media limit in force.")
    batching: dict[str, float | int] = Field(description="Batching, queue and admission knobs in force.")
    decoding: dict[str, float | int | list[str]] = Field(description="Decode pool, threads and accepted formats.")
    streams: dict[str, float | int] = Field(
        description="Live streams' settings in force (not the allowed sources, whose URLs may hold credentials)."
    )
    store: dict[str, float | int | bool] = Field(
        description="The track store's settings in force: thumbnails and retention (not its location)."
    )
    scene: SceneInfo = Field(description="Built-in detection and tracking for /predict/scene.")


# Stored tracks (GET /tracks and its neighbours)


class ModelIdentity(BaseModel):
    name: str
    version: str
    schema_name: str = Field(alias="schema")
    key: str = Field(description="How GET /tracks?model= names it: name:version.")

    model_config = {"populate_by_name": True}


class StoredAttributeBody(BaseModel):
    name: str
    group: str
    probability: float = Field(description="Fused over the track's windows.")
    threshold: float
    positive: bool


class ListedTrack(BaseModel):
    """A stored track as a result list shows it: everything but its boxes (up to 512 for a stream track)."""

    id: int
    camera: str
    source: str = Field(description="upload or stream.")
    track_id: int = Field(description="The tracker's (or the client's) id within its recording.")
    first_seen: datetime
    last_seen: datetime
    windows: int = Field(description="Clips the model saw, fused into the probabilities.")
    model: ModelIdentity
    attributes: list[StoredAttributeBody] = Field(description="Every attribute, in the schema's order.")
    thumbnail: str | None = Field(description="URL of the best crop's JPEG; null when none was kept.")


class TrackBody(ListedTrack):
    boxes: list[list[float]] = Field(
        description="[seconds after first_seen, left, top, width, height] per box (pixels), the API's one box format."
    )


class ScoredTrack(ListedTrack):
    score: float = Field(
        description="prod(p, required) * prod(1 - p, excluded); 1 when nothing was asked. With free text read "
        "(interpretation.free_text), that times exp(s * (cos - 1)): cos of the CLIP text and image embeddings, s "
        "CLIP's temperature."
    )


class Interpretation(BaseModel):
    required: list[str]
    excluded: list[str]
    unused: list[str] = Field(description="Words of q that were not understood (common filler words aside).")
    contradictions: list[str] = Field(
        default_factory=list, description="Attributes q both required and excluded: left out of both."
    )
    free_text: str | None = Field(
        None,
        description="The words no attribute covers, ranked by the served model's CLIP text tower against the "
        "tracks' CLIP image embeddings; null when none, or when they could not be read (see note).",
    )
    pretrained_tower: bool | None = Field(
        None,
        description="False when the served model's CLIP tower is not a pretrained one (the demo's is random): a "
        "free-text ranking then means nothing. Null when the runner cannot tell (ONNX).",
    )
    note: str | None = Field(None, description="Why free words were not read, or why their ranking means nothing.")


class SearchResponse(BaseModel):
    model: ModelIdentity = Field(description="The model whose tracks were ranked.")
    interpretation: Interpretation | None = Field(description="How q was read; null without q.")
    required: list[str]
    excluded: list[str]
    tracks: list[ScoredTrack] = Field(description="Best first: by score, then most recent.")
    next_cursor: str | None = Field(description="Pass as cursor= (same filters) for the next page; null at the end.")


class SimilarTrack(TrackBody):
    score: float = Field(description="Cosine similarity of the appearance embeddings, -1 to 1.")


class SimilarResponse(BaseModel):
    model: ModelIdentity = Field(description="The model that embedded the track (only its tracks are compared).")
    track: int | None = Field(description="The track searched from (left out of the results); null for an upload.")
    pretrained_tower: bool | None = Field(
        description="False when the served model's CLIP tower is not a pretrained one (the demo's is random): its "
        "embeddings then tell little about appearance. Null when the runner cannot tell (ONNX)."
    )
    tracks: list[SimilarTrack] = Field(description="Best first: by score, then the highest id.")
    next_cursor: str | None = Field(description="Pass as cursor= (same filters) for the next page; null at the end.")


class StoredModelBody(BaseModel):
    model: ModelIdentity
    tracks: int
    served: bool


class Erased(BaseModel):
    deleted: int


# Live streams


class StreamList(BaseModel):
    streams: list[StreamStatus]


# Alerts


class RuleBody(BaseModel):
    id: int
    name: str
    search: dict = Field(description="GET /tracks's parameters by their names, as given.")
    schedule: dict | None
    webhook: str | None
    mqtt: bool
    created_at: datetime
    updated_at: datetime


class RuleCreated(RuleBody):
    secret: str = Field(description="The key of the webhook's HMAC-SHA256 signatures; shown only here.")


class RuleList(BaseModel):
    rules: list[RuleBody]


class DeliveryBody(BaseModel):
    channel: Literal["webhook", "mqtt"]
    target: str = Field(description="The webhook's URL, or the MQTT topic.")
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    last_error: str | None
    delivered_at: datetime | None


class AlertBody(BaseModel):
    id: int
    rule: dict = Field(description='{"id", "name"} of the rule that fired.')
    camera: str
    fired_at: datetime
    decided_at: datetime = Field(description="When the track's attributes matched (the window that decided).")
    track: dict = Field(description="The track as it matched: times, windows, attributes (stored id for uploads).")
    thumbnail: str | None = Field(description="URL of the track's best crop when it fired.")
    acknowledged_at: datetime | None
    deliveries: list[DeliveryBody]


class AlertList(BaseModel):
    alerts: list[AlertBody]
    next_before: int | None = Field(description="before= for the next (older) page; null on the last.")


def identity(model: ModelSpec) -> ModelIdentity:
    return ModelIdentity(name=model.name, version=model.version, schema_name=model.schema_name, key=model.key)


def track_fields(request: Request, track: StoredTrack) -> dict[str, Any]:
    """A stored track as the fields of :class:`TrackBody` (its thumbnail as a URL of this service)."""
    thumbnail = str(request.url_for("track_thumbnail", track=track.id)) if track.has_thumbnail else None
    return {
        "id": track.id,
        "camera": track.camera,
        "source": track.source,
        "track_id": track.track_id,
        "first_seen": track.first_seen,
        "last_seen": track.last_seen,
        "windows": track.windows,
        # The API's one box format; None in search results, which leave the boxes out.
        "boxes": None if track.boxes is None else [[t, *box_ltwh(x0, y0, x1, y1)] for t, x0, y0, x1, y1 in track.boxes],
        "model": identity(track.model),
        "attributes": [StoredAttributeBody(**vars(a)) for a in track.attributes],
        "thumbnail": thumbnail,
    }
