"""Every knob of the service, read once from the environment (prefix ``VTFPAR_``).

``VTFPAR_MAX_BATCH_CLIPS=16`` sets ``max_batch_clips``; field names map to variables by upper-casing them.
``/info`` echoes the effective values, but for paths, addresses and secrets.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic.json_schema import JsonDict
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .cpus import usable_cpus

DEMO_CHECKPOINT = Path(__file__).parent / "assets" / "demo.safetensors"
# FFmpeg decoders of what cameras, phones and browsers write; an operator can admit others (e.g. msmpeg4v3).
DEFAULT_CODECS = ("av1", "gif", "h264", "hevc", "mjpeg", "mpeg4", "vp8", "vp9")
# Defaults for a model on a GPU, where a batch of 32 costs little more than one and decoding, not the model, sets
# the pace: a decode worker per usable CPU, up to 16 (each holds an upload's frames and runs FFmpeg's threads; GPU
# hosts have 100-200 cores, and beyond 16 decodes at once memory grows faster than a 32-clip batch needs; not
# measured on a GPU yet). Applied once the device is known, to the settings not given.
CUDA_MAX_BATCH_CLIPS = 32
CUDA_MAX_DECODE_WORKERS = 16
# Which /info section echoes a field (json_schema_extra), so /info lists every field of its kind.
BATCHING: JsonDict = {"info": "batching"}
LIMITS: JsonDict = {"info": "limits"}
DECODING: JsonDict = {"info": "decoding"}
STREAMS: JsonDict = {"info": "streams"}
STORE: JsonDict = {"info": "store"}


def cuda_defaults() -> dict[str, int]:
    return {"max_batch_clips": CUDA_MAX_BATCH_CLIPS, "decode_workers": min(usable_cpus(), CUDA_MAX_DECODE_WORKERS)}


def default_data_dir() -> Path:
    """One place for the service's files whatever directory it starts in: ``$XDG_DATA_HOME/vtfpar``, else
    ``~/.local/share/vtfpar`` (the container image sets ``/data``)."""
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "vtfpar"


def field_extra(field: FieldInfo) -> dict:
    """A field's ``json_schema_extra`` (its /info section, a default described in words), as a dict."""
    return field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VTFPAR_", env_ignore_empty=True, extra="ignore", frozen=True)

    # Model
    checkpoint: Path | None = Field(
        None,
        description="Checkpoint to serve: a .safetensors checkpoint, or its ONNX export (.onnx, served with ONNX "
        "Runtime); unset = the built-in demo model.",
    )
    backbone_weights: str | None = Field(
        None, description="CLIP weights for checkpoints saved without their backbone (a local file or folder)."
    )
    clip_text: bool = Field(
        False,
        description="Serve a checkpoint made without clip_image_embedding with it: the CLIP tower's blocks after "
        "the last tap and its text tower are loaded from the checkpoint's CLIP weights source (not embedded), so "
        "that stored tracks get CLIP image embeddings and q='s free words are read (docs/search.md, Free text).",
    )
    device: Literal["auto", "cuda", "cpu"] = Field("auto", description="auto = cuda when available, else cpu.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="Autocast precision on CUDA (auto = bf16 where supported, else fp16); CPU runs fp32. The fusion "
        "block, heads and logit BatchNorm always run in fp32 (their large gains would turn bf16 rounding into "
        "flipped decisions).",
    )
    warmup: bool = Field(
        True,
        description="Run every batch size (1, 2, 4, ... and the largest) before reporting ready, twice each with CUDA "
        "graphs (which capture on a size's second call). If warm-up "
        "fails (say, CUDA out of memory) the process exits with status 3, so that a supervisor restarts it.",
    )
    compile: Literal["auto", "on", "off"] = Field(
        "auto",
        description="torch.compile the forward pass (inductor) for the warmed batch sizes, with CUDA graphs on CUDA; "
        "each batch is padded up to the next warmed size, so no request waits for a compilation. auto = on with "
        "CUDA, off on CPU (compiling takes minutes there). A failed compilation fails warm-up (exit status 3).",
    )
    torch_threads: int | None = Field(
        None,
        ge=1,
        description="CPU threads for torch (torch.set_num_threads); unset = torch's default (all cores) on CPU, 1 on "
        "CUDA, where torch's CPU work is the decode threads' preprocessing, each on its own thread.",
    )
    # Where uploads' video frames are decoded
    decode_device: Literal["cpu", "cuda"] = Field(
        "cpu",
        description="cpu: FFmpeg's software decoders; cuda: NVDEC (FFmpeg's CUDA hwaccel, bundled in PyAV's wheels; "
        "needs the NVIDIA driver), frames copied back to host memory, same limits; checked with a test clip at "
        "startup. Codecs NVDEC lacks decode in software.",
    )
    # ONNX checkpoints (VTFPAR_CHECKPOINT=FILE.onnx, served with ONNX Runtime)
    onnx_tensorrt: bool = Field(
        True,
        description="With onnxruntime-gpu and TensorRT on a GPU host, run an ONNX checkpoint with ONNX Runtime's "
        "TensorRT provider ahead of CUDA (an engine for batches 1 to max_batch_clips, built at the first start and "
        "cached in onnx_tensorrt_cache_dir); off = the CUDA provider.",
    )
    onnx_tensorrt_cache_dir: Path | None = Field(
        None,
        description="Where TensorRT's engines are cached (building one takes minutes); unset = vtfpar-tensorrt in the "
        "temporary folder. The image sets /cache/tensorrt, on the cache volume, so a new container reuses them.",
    )

    # Dynamic batching and backpressure
    max_batch_clips: int = Field(
        8, ge=1, description="Most clips one forward pass takes; 1 turns batching off.", json_schema_extra=BATCHING
    )
    max_batch_wait_ms: float = Field(
        5.0,
        ge=0,
        description="How long the worker waits to fill a batch after its first clip.",
        json_schema_extra=BATCHING,
    )
    max_queue: int = Field(
        64,
        ge=1,
        description="Clips waiting for the model, per lane: /predict's clips beyond it get 429 queue_full; the tracks "
        "of /predict/tracks and /predict/scene wait for room instead; live streams' clips have a lane of their own.",
        json_schema_extra=BATCHING,
    )
    queue_timeout_s: float = Field(
        10.0,
        gt=0,
        description="A clip queued longer than this is dropped with 503 queue_timeout (a running batch is never cut "
        "short).",
        json_schema_extra=BATCHING,
    )
    max_concurrent_requests: int = Field(
        128,
        ge=1,
        description="/predict requests whose body has arrived, handled at once (decode, queue, forward pass); "
        "beyond it 429 overloaded. A request still uploading never counts here.",
        json_schema_extra=BATCHING,
    )
    max_concurrent_uploads: int = Field(
        256,
        ge=1,
        description="/predict bodies being received at once; beyond it 429 overloaded before reading.",
        json_schema_extra=BATCHING,
    )
    retry_after_s: int = Field(1, ge=0, description="Retry-After sent with 429 and 503.", json_schema_extra=BATCHING)

    # Upload and media limits (all checked before any frame is decoded)
    max_upload_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1,
        description="Request body bytes (64 MiB by default), checked on Content-Length and counted while streaming.",
        json_schema_extra=LIMITS,
    )
    upload_timeout_s: float = Field(
        30.0,
        gt=0,
        description="A /predict body not complete this long after its headers gets 408 upload_timeout, and the "
        "connection is closed.",
        json_schema_extra=LIMITS,
    )
    max_upload_frames: int = Field(
        1000, ge=1, description="Image files in one frames upload.", json_schema_extra=LIMITS
    )
    max_pixels: int = Field(
        3840 * 2160,
        ge=1,
        description="Width x height of a video or image (3840x2160 by default).",
        json_schema_extra=LIMITS,
    )
    max_side: int = Field(
        4096, ge=1, description="Longest side of a video frame or image, in pixels.", json_schema_extra=LIMITS
    )
    max_aspect_ratio: float = Field(
        10.0,
        ge=1,
        description="Longest side over shortest side of a video frame or image.",
        json_schema_extra=LIMITS,
    )
    max_duration_s: float = Field(60.0, gt=0, description="Video duration.", json_schema_extra=LIMITS)
    max_frames_decoded: int = Field(
        2000,
        ge=1,
        description="Frames one request may decode; the decode plan is checked against it before decoding.",
        json_schema_extra=LIMITS,
    )
    min_frames: int = Field(
        1,
        ge=1,
        description="Fewest frames a clip or tracklet must have (shorter clips repeat frames, as in training).",
        json_schema_extra=LIMITS,
    )
    decode_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Wall-clock deadline for demuxing, decoding and preparing one upload (for /predict/tracks and "
        "/predict/scene: reading the tracks, detection and every track's crops).",
        json_schema_extra=LIMITS,
    )

    # /predict/tracks and /predict/scene
    max_tracks: int = Field(
        64,
        ge=1,
        description="Tracks one /predict/tracks request may send (413 beyond it); /predict/scene runs this many and "
        "lists the rest as skipped. A request's tracks beyond the queue's room wait for room, not refused.",
        json_schema_extra=LIMITS,
    )
    max_track_boxes: int = Field(
        100_000,
        ge=1,
        description="Boxes one /predict/tracks request may send (413 beyond it).",
        json_schema_extra=LIMITS,
    )
    detector: str = Field(
        "hog",
        description="Person detector for /predict/scene and live streams (needs the [scene] extra): hog (OpenCV's HOG "
        "people detector, CPU, nothing to download), a torchvision detection model (e.g. "
        "fasterrcnn_mobilenet_v3_large_fpn, with VTFPAR_DETECTOR_WEIGHTS), or off (404 detection_off).",
    )
    detector_weights: Path | None = Field(
        None,
        description="Local weights file of the detector (.pth or .safetensors state dict); unset = torchvision's "
        "download of its COCO weights into TORCH_HOME (needs internet once).",
    )
    detection_interval: int = Field(
        1, ge=1, description="/predict/scene runs the detector on every k-th frame; ByteTrack's time scale follows."
    )
    detection_s_per_frame: float = Field(
        0.2,
        ge=0,
        description="/predict/scene's decode deadline (VTFPAR_DECODE_TIMEOUT_S) grows by this much for each frame the "
        "detector runs on, so that it follows the work (HOG on a busy 2-core CPU: about 0.04 s a 768x576 frame).",
        json_schema_extra=LIMITS,
    )

    # Decoding resources
    decode_workers: int = Field(
        default_factory=lambda: min(4, usable_cpus()),
        ge=1,
        description="Uploads decoded at once (a bounded thread pool); on CUDA a worker per usable CPU up to 16, since "
        "decoding, not the model, sets the pace there. CPUs: those the process may use (affinity, cgroup quota).",
        json_schema_extra={**DECODING, "default_text": "min(4, CPUs); min(16, CPUs) on CUDA"},
    )
    decode_threads: int = Field(
        2,
        ge=1,
        description="FFmpeg threads per decode of frames of 640x480 or more; smaller frames decode on one thread "
        "(handing them between threads cost more CPU than it saved).",
        json_schema_extra=DECODING,
    )
    allowed_codecs: Annotated[tuple[str, ...], NoDecode] = Field(
        DEFAULT_CODECS,
        min_length=1,
        description="Video codecs accepted (FFmpeg decoder names, comma-separated in the environment; e.g. add "
        "msmpeg4v3 for old AVI archives).",
    )

    # Live streams
    stream_sources: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="URL prefixes a stream may be opened from (comma-separated), e.g. rtsp://10.0.0.7/, "
        "https://cams.example.com/live/, file:///srv/recordings/; empty = no streams.",
    )
    stream_playlist_sources: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="URL prefixes (comma-separated) under which an HTTP stream may be an HLS or DASH playlist; its "
        "segments may lie on any host it names, so list only playlists you trust. Empty = no playlists.",
    )
    streams_file: Path | None = Field(
        None, description='JSON file of streams to start with the service: [{"name": ..., "url": ..., ...}, ...].'
    )
    max_streams: int = Field(
        4, ge=0, description="Streams open at once; beyond it POST /streams gets 429.", json_schema_extra=STREAMS
    )
    stream_detection_interval: int = Field(
        3, ge=1, description="A stream's detector runs on every k-th frame.", json_schema_extra=STREAMS
    )
    stream_update_s: float = Field(
        2.0,
        gt=0,
        description="Seconds (stream time) between a track's attribute updates: one clip each.",
        json_schema_extra=STREAMS,
    )
    stream_max_tracks: int = Field(
        32, ge=1, description="People followed at once per stream; more are not followed.", json_schema_extra=STREAMS
    )
    stream_track_lost_s: float = Field(
        1.0,
        gt=0,
        description="A track unseen this long (stream time) has ended (track_end).",
        json_schema_extra=STREAMS,
    )
    stream_open_timeout_s: float = Field(
        10.0, gt=0, description="Opening a stream's source, before it fails.", json_schema_extra=STREAMS
    )
    stream_read_timeout_s: float = Field(
        10.0,
        gt=0,
        description="A source silent this long, or sending no video frame this long, is reconnected.",
        json_schema_extra=STREAMS,
    )
    stream_retry_max_s: float = Field(
        30.0,
        gt=0,
        description="Longest wait between reconnection attempts (backoff doubles up to it, jittered).",
        json_schema_extra=STREAMS,
    )
    stream_give_up_s: float = Field(
        300.0,
        gt=0,
        description="A source that delivers no frame for this long ends failed, retries stopped.",
        json_schema_extra=STREAMS,
    )
    stream_event_buffer: int = Field(
        256,
        ge=1,
        description="Events held for each slow events reader; the oldest are dropped beyond it.",
        json_schema_extra=STREAMS,
    )

    # Access
    api_token: SecretStr | None = Field(
        None,
        description="When set, managing streams, reading their events and reading or deleting stored tracks need "
        "'Authorization: Bearer <token>' (401 otherwise), and so does store=true on /predict/tracks and "
        "/predict/scene; other predictions, health, /info and /metrics stay open. Unset on a service that listens "
        "beyond loopback: vtfpar serve (and serve-ray; uvicorn --factory by VTFPAR_HOST) makes one at first start, "
        "keeps it in <data_dir>/api-token (owner-only) and logs it with the console's address.",
    )
    insecure_no_token: bool = Field(
        False,
        description="true = a service that listens beyond loopback without VTFPAR_API_TOKEN makes no token: anyone "
        "who reaches it can read, search and delete the stored people and open streams.",
    )

    # Track store
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="The service's own files: the embedded track database (tracks.db) and the thumbnails/ folder; "
        "a relative path is taken from the directory the service starts in. The log says where at start.",
        json_schema_extra={"default_text": "$XDG_DATA_HOME/vtfpar, else ~/.local/share/vtfpar; /data in the image"},
    )
    database_url: str | None = Field(
        None,
        description="Where tracks are stored: sqlite:///PATH, or postgresql://USER:PASSWORD@HOST:PORT/DB when "
        "several instances share one store; unset = sqlite:///<data_dir>/tracks.db.",
    )
    store_thumbnails: bool = Field(
        True,
        description="Keep a JPEG of each stored track's best crop (under <data_dir>/thumbnails).",
        json_schema_extra=STORE,
    )
    retention_days: float = Field(
        30,
        ge=0,
        description="Stored tracks last seen longer ago than this are purged (hourly); 0 keeps them.",
        json_schema_extra=STORE,
    )

    # Alerts (standing searches that fire on live and stored tracks; see docs/alerts.md)
    alert_min_windows: int = Field(
        3,
        ge=1,
        description="A live track is matched against the rules once its attributes are fused over this many windows "
        "(or when it ends, whichever comes first): an early half-hidden window does not fire.",
    )
    webhook_targets: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="URL prefixes a rule's webhook may post to (comma-separated), e.g. https://hooks.example.com/; "
        "empty = no webhooks.",
    )
    webhook_timeout_s: float = Field(5.0, gt=0, description="A webhook POST's timeout (connect and answer).")
    webhook_max_attempts: int = Field(
        12,
        ge=1,
        description="Deliveries (webhook or MQTT) tried this often, with capped jittered backoff, then failed.",
    )
    webhook_retry_max_s: float = Field(
        30.0, gt=0, description="Longest wait between a delivery's attempts (backoff doubles up to it, jittered)."
    )
    mqtt_url: str | None = Field(
        None,
        description="MQTT broker for alerts (mqtt://[user:password@]host[:1883] or mqtts://...); unset = no MQTT.",
    )
    mqtt_topic_prefix: str = Field(
        "vtfpar/alerts",
        min_length=1,
        pattern=r"^[^#+\x00]+$",
        description="Alerts go to <prefix>/<camera>/<rule id> (QoS 1); <prefix>/<camera>/last holds the camera's "
        "latest alert (retained), <prefix>/status online/offline (retained).",
    )
    public_url: str | None = Field(
        None,
        description="The service's URL as webhook and MQTT receivers reach it (e.g. https://vtfpar.example.com), "
        "for the alerts' thumbnail links; unset = links relative to the service.",
    )
    store_workers: int = Field(
        4,
        ge=1,
        le=64,
        description="Threads of the track store's own pool (searches, writes, erasure): bounded, "
        "and apart from the threads that decode uploads.",
    )
    search_timeout_s: float = Field(
        10.0, gt=0, description="A search of the stored tracks running longer is stopped (503 search_timeout)."
    )

    # Process
    host: str = Field("0.0.0.0", description="Listen address.")
    port: int = Field(8000, ge=0, le=65535, description="Listen port.")
    drain_timeout_s: float = Field(
        25.0,
        ge=0,
        description="On SIGTERM, how long accepted work may take to finish; keep it below the orchestrator's grace "
        "period (Docker stop_grace_period, Kubernetes terminationGracePeriodSeconds).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Lowest level logged.")
    log_json: bool = Field(
        True,
        description="One JSON object per log line, with request_id on request logs (false = plain text). Control "
        "characters a client sent are escaped either way, so no one can forge a log line.",
    )

    @field_validator("allowed_codecs", mode="before")
    @classmethod
    def _codec_list(cls, value: object) -> object:
        if isinstance(value, str):
            value = [name.strip().lower() for name in value.split(",") if name.strip()]
        return tuple(sorted(set(value))) if isinstance(value, list | tuple | set | frozenset) else value

    @field_validator("stream_sources", "stream_playlist_sources", "webhook_targets", mode="before")
    @classmethod
    def _source_list(cls, value: object) -> object:
        if isinstance(value, str):
            value = [prefix.strip() for prefix in value.split(",") if prefix.strip()]
        return tuple(value) if isinstance(value, list | tuple) else value

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().absolute()  # fixed once, so that the log and the store name the same place

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.min_frames > self.max_frames_decoded:
            raise ValueError("min_frames cannot exceed max_frames_decoded")
        if self.max_batch_wait_ms / 1000 >= self.queue_timeout_s:
            raise ValueError(
                "max_batch_wait_ms must be shorter than queue_timeout_s, or a clip waiting alone for its batch to "
                "fill would always time out"
            )
        return self

    def for_device(self, device_type: str) -> Settings:
        """These settings with the GPU-sized defaults when the model runs on CUDA; values given stay."""
        if device_type != "cuda":
            return self
        return self.model_copy(update={k: v for k, v in cuda_defaults().items() if k not in self.model_fields_set})

    @classmethod
    def in_info_section(cls, section: str) -> list[str]:
        """The fields /info echoes under ``section`` (``batching``, ``limits``, ``decoding``, ``streams``,
        ``store``); paths, addresses and secrets are in none."""
        return [name for name, field in cls.model_fields.items() if field_extra(field).get("info") == section]

    @property
    def uses_demo_checkpoint(self) -> bool:
        return self.checkpoint is None

    @property
    def checkpoint_path(self) -> Path:
        return DEMO_CHECKPOINT if self.checkpoint is None else self.checkpoint
