"""Response bodies (they are the OpenAPI schema at /docs) and the turning of one probability row into them (the
decision rule itself is ``model.decisions``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from model import AttributeSchema
from model.decisions import one_of_winners, positives


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
    container: str = Field(examples=["mp4"], description="mp4, matroska, avi or gif; jpeg/png for frames uploads.")
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


class ErrorBody(BaseModel):
    code: str = Field(examples=["unsupported_media_type"])
    message: str = Field(examples=["unrecognised format: expected a video (mp4/mov, webm/mkv, avi or gif)"])


class ErrorResponse(BaseModel):
    error: ErrorBody


class Health(BaseModel):
    status: Literal["ok", "not_ready"]


def interpret(
    schema: AttributeSchema, thresholds: list[float], probabilities
) -> tuple[list[AttributeResult], list[GroupResult]]:
    """Attach names, groups and decisions to one row of probabilities."""
    decided = positives(probabilities, thresholds)
    attributes = [
        AttributeResult(name=a.name, group=a.group, probability=float(p), threshold=t, positive=bool(positive))
        for a, p, t, positive in zip(schema.attributes, probabilities, thresholds, decided, strict=True)
    ]
    groups = [
        GroupResult(name=name, winner=schema.names[column], probability=float(probabilities[column]))
        for name, column in one_of_winners(probabilities, schema).items()
    ]
    return attributes, groups


def prediction_response(request_id: str, runner, clip, result, total_s: float) -> PredictResponse:
    """The /predict body for one decoded clip (a PreparedClip) and its row of a batch (a BatchResult)."""
    identity, media = runner.identity, clip.media
    attributes, groups = interpret(runner.schema, runner.thresholds, result.probabilities)
    return PredictResponse(
        request_id=request_id,
        model=ModelRef(name=identity.name, version=identity.version, schema=identity.schema, demo=identity.demo),
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
        attributes=attributes,
        groups=groups,
        batch_size=result.batch_size,
        timings=Timings(
            decode_s=clip.decode_s, queue_s=result.queue_s, inference_s=result.inference_s, total_s=total_s
        ),
    )


class ModelInfo(BaseModel):
    name: str
    version: str
    digest: str = Field(description="Full sha256 of the checkpoint file.")
    schema_name: str = Field(alias="schema")
    demo: bool
    frames_per_clip: int = Field(description="Frames sampled from each clip (T).")
    image_size: int = Field(description="Side of the square each frame is padded and resized to.")
    model_card: str | None = Field(
        description="Where the model's card is (URL or path), as its checkpoint records it; null if it names none."
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


class InfoResponse(BaseModel):
    model: ModelInfo
    device: str = Field(examples=["cuda:0"])
    dtype: str = Field(description="Autocast dtype of the forward pass.", examples=["bf16"])
    torch_threads: int = Field(description="CPU threads torch uses (VTFPAR_TORCH_THREADS or torch's default).")
    attributes: list[AttributeInfo]
    groups: list[GroupInfo]
    limits: dict[str, float | int] = Field(description="Every upload and media limit in force.")
    batching: dict[str, float | int] = Field(description="Batching, queue and admission knobs in force.")
    decoding: dict[str, float | int | list[str]] = Field(description="Decode pool, threads and accepted formats.")
