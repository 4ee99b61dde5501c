"""End to end against a real server: every accepted upload kind answers with the documented JSON, and the
probabilities equal a direct model call on the same frames."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.api.schemas import InfoResponse, PredictResponse
from app.settings import Settings
from benchmarks.media import VIDEO_FORMATS, decode_all, decode_image, encode, frames, image_bytes

TOLERANCE = 1e-5


def check_answer(body: dict, all_frames: list[np.ndarray], direct) -> PredictResponse:
    answer = PredictResponse.model_validate(body)  # the documented schema
    indices, expected = direct(all_frames)
    assert answer.input.frame_indices == indices
    assert answer.input.total_frames == len(all_frames)
    served = np.array([a.probability for a in answer.attributes])
    np.testing.assert_allclose(served, expected, atol=TOLERANCE, rtol=0)
    return answer


@pytest.mark.parametrize("kind", sorted(VIDEO_FORMATS))
def test_each_container_gives_the_direct_model_answer(server, direct, reference_model, kind):
    data = encode(kind, frames(17, seed=len(kind)))
    response = httpx.post(f"{server.url}/predict", files={"video": (f"clip.{kind}", data)})
    assert response.status_code == 200, response.text
    answer = check_answer(response.json(), decode_all(data), direct)
    assert answer.input.source == "video"
    assert answer.model.name == "tiny" and answer.model.schema_name == "mars" and answer.model.demo is False
    assert answer.model.version == server.service.backend.description.served.digest[:12]
    schema = reference_model.schema
    assert [a.name for a in answer.attributes] == schema.names
    assert [a.group for a in answer.attributes] == [a.group for a in schema.attributes]
    assert all(a.positive == (a.probability > a.threshold) for a in answer.attributes)
    one_of = [g for g in schema.groups if g.kind == "one_of"]
    assert [g.name for g in answer.groups] == [g.name for g in one_of]
    for group, result in zip(one_of, answer.groups, strict=True):
        best = max(group.columns, key=lambda c: answer.attributes[c].probability)
        assert result.winner == schema.attributes[best].name
    timings = answer.timings
    assert 0 <= timings.decode_s <= timings.total_s and timings.queue_s >= 0 and timings.inference_s > 0


def test_a_raw_video_body_is_accepted(server, direct):
    data = encode("mp4", frames(9, seed=5))
    response = httpx.post(f"{server.url}/predict", content=data, headers={"Content-Type": "video/mp4"})
    assert response.status_code == 200, response.text
    check_answer(response.json(), decode_all(data), direct)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_tracklet_of_crops_gives_the_direct_model_answer(server, direct, fmt):
    crops = [image_bytes(image, fmt) for image in frames(7, width=64, height=128, seed=11)]
    files = [("frames", (f"{i:04d}.{fmt.lower()}", crop)) for i, crop in enumerate(crops)]
    response = httpx.post(f"{server.url}/predict", files=files)
    assert response.status_code == 200, response.text
    answer = check_answer(response.json(), [decode_image(c) for c in crops], direct)
    assert answer.input.source == "frames" and answer.input.container == fmt.lower()


def test_a_tracklet_of_crops_of_different_sizes_gives_the_direct_model_answer(server, direct):
    """Tracker crops change size from frame to frame; each is padded and resized on its own."""
    crops = [image_bytes(frames(1, width=40 + 4 * i, height=120 - 6 * i, seed=i)[0], "PNG") for i in range(7)]
    files = [("frames", (f"{i:04d}.png", crop)) for i, crop in enumerate(crops)]
    response = httpx.post(f"{server.url}/predict", files=files)
    assert response.status_code == 200, response.text
    check_answer(response.json(), [decode_image(c) for c in crops], direct)


def test_the_request_id_is_accepted_and_echoed(server):
    data = encode("avi", frames(5))
    response = httpx.post(
        f"{server.url}/predict", files={"video": ("a.avi", data)}, headers={"X-Request-Id": "cam-7:track-42"}
    )
    assert response.headers["x-request-id"] == "cam-7:track-42"
    assert response.json()["request_id"] == "cam-7:track-42"
    generated = httpx.get(f"{server.url}/info", headers={"X-Request-Id": "bad id with spaces"})
    assert generated.headers["x-request-id"] not in ("", "bad id with spaces")


def test_64_concurrent_clips_each_get_their_own_answer_in_shared_batches(server, direct):
    clips = [encode("mp4", frames(5 + i % 11, width=32, height=64, seed=100 + i)) for i in range(64)]

    async def post_all():
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60) as client:
            return await asyncio.gather(
                *(
                    client.post("/predict", files={"video": ("c.mp4", clip)}, headers={"X-Request-Id": f"clip-{i}"})
                    for i, clip in enumerate(clips)
                )
            )

    before = _batches(server)
    responses = asyncio.run(post_all())
    for i, (clip, response) in enumerate(zip(clips, responses, strict=True)):
        assert response.status_code == 200, response.text
        assert response.json()["request_id"] == f"clip-{i}"
        check_answer(response.json(), decode_all(clip), direct)
    after = _batches(server)
    batches, clips_run, single = (after[k] - before[k] for k in ("count", "sum", "le_1"))
    assert clips_run == 64
    assert batches < 64 and single < batches, f"no batching seen: {batches} batches, {single} of size 1"
    assert max(r.json()["batch_size"] for r in responses) > 1


def _batches(server) -> dict:
    text = httpx.get(f"{server.url}/metrics").text
    family = next(f for f in text_string_to_metric_families(text) if f.name == "vtfpar_batch_size_clips")
    values = {}
    for sample in family.samples:
        if sample.name.endswith("_count"):
            values["count"] = sample.value
        elif sample.name.endswith("_sum"):
            values["sum"] = sample.value
        elif sample.name.endswith("_bucket") and float(sample.labels["le"]) == 1.0:
            values["le_1"] = sample.value
    return values


def test_info_echoes_the_model_and_every_limit(server):
    info = InfoResponse.model_validate(httpx.get(f"{server.url}/info").json())
    settings = server.settings
    assert (
        info.model.digest == server.service.backend.description.served.digest
        and info.model.version == info.model.digest[:12]
    )
    assert info.model.frames_per_clip == 4 and info.device == "cpu" and info.precision == "fp32"
    assert info.compiled is False, "VTFPAR_COMPILE=auto compiles on CUDA only"
    assert len(info.attributes) == 43 and len(info.groups) == 14
    for name, value in {**info.limits, **info.batching, **info.streams, **info.store}.items():
        assert getattr(settings, name) == value
    assert {
        "max_upload_bytes",
        "max_pixels",
        "max_duration_s",
        "max_frames_decoded",
        "decode_timeout_s",
        "max_upload_frames",
        "max_side",
        "max_aspect_ratio",
    } <= set(info.limits)
    assert {"upload_timeout_s"} <= set(info.limits)
    assert {"max_batch_clips", "max_batch_wait_ms", "max_queue", "queue_timeout_s"} <= set(info.batching)
    assert {"max_concurrent_uploads", "max_concurrent_requests"} <= set(info.batching)
    assert (set(info.limits), set(info.batching)) == (
        set(Settings.in_info_section("limits")),
        set(Settings.in_info_section("batching")),
    ), "/info lists every field of its sections"
    assert info.decoding["decode_workers"] == settings.decode_workers
    # Streams and store settings as docs/settings.md lists them, but nothing that may name a place or a secret.
    assert {"max_streams", "stream_update_s", "stream_give_up_s"} <= set(info.streams)
    assert set(info.store) == {"store_thumbnails", "retention_days"}
    assert not {"stream_sources", "streams_file", "data_dir", "database_url", "api_token"} & {
        *info.streams,
        *info.store,
    }
    assert info.decoding["codecs"] == list(settings.allowed_codecs) and "mpegts" in info.decoding["containers"]


def test_the_openapi_schema_documents_uploads_answers_and_errors(server):
    spec = httpx.get(f"{server.url}/openapi.json").json()
    predict = spec["paths"]["/predict"]["post"]
    body = predict["requestBody"]["content"]
    video, tracklet = body["multipart/form-data"]["schema"]["oneOf"]  # one or the other, never both
    assert (video["required"], tracklet["required"]) == (["video"], ["frames"])
    assert video["additionalProperties"] is tracklet["additionalProperties"] is False
    raw = set(body) - {"multipart/form-data"}
    assert {"video/mp4", "video/webm", "video/x-msvideo", "image/gif", "application/octet-stream"} <= raw
    assert not any(content_type.endswith("*") for content_type in raw)
    assert predict["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/PredictResponse")
    for status in ("400", "408", "413", "415", "422", "429", "503"):
        assert predict["responses"][status]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
    assert "Retry-After" in predict["responses"]["429"]["headers"]
    for path in ("/health/live", "/health/ready", "/info", "/metrics"):
        assert path in spec["paths"]
    assert httpx.get(f"{server.url}/docs").status_code == 200
