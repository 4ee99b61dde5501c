"""Every knob is a VTFPAR_* environment variable, validated when the service starts."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from app.settings import Settings


def test_every_setting_reads_its_environment_variable(monkeypatch):
    values = {
        "CHECKPOINT": "/models/vtfpar/b16.safetensors",
        "BACKBONE_WEIGHTS": "/models/clip",
        "DEVICE": "cpu",
        "PRECISION": "fp32",
        "WARMUP": "false",
        "COMPILE": "on",
        "TORCH_THREADS": "1",
        "ONNX_TENSORRT": "false",
        "ONNX_TENSORRT_CACHE_DIR": "/cache/tensorrt",
        "MAX_BATCH_CLIPS": "16",
        "MAX_BATCH_WAIT_MS": "2.5",
        "MAX_QUEUE": "7",
        "QUEUE_TIMEOUT_S": "3",
        "MAX_CONCURRENT_REQUESTS": "9",
        "MAX_CONCURRENT_UPLOADS": "10",
        "RETRY_AFTER_S": "4",
        "MAX_UPLOAD_BYTES": "1000",
        "UPLOAD_TIMEOUT_S": "7.5",
        "MAX_UPLOAD_FRAMES": "12",
        "MAX_PIXELS": "640",
        "MAX_SIDE": "320",
        "MAX_ASPECT_RATIO": "4.5",
        "MAX_DURATION_S": "5",
        "MAX_FRAMES_DECODED": "99",
        "MIN_FRAMES": "2",
        "DECODE_TIMEOUT_S": "1.5",
        "MAX_TRACKS": "5",
        "MAX_TRACK_BOXES": "500",
        "DETECTOR": "fasterrcnn_mobilenet_v3_large_fpn",
        "DETECTOR_WEIGHTS": "/models/detector.pth",
        "DETECTION_INTERVAL": "3",
        "DETECTION_S_PER_FRAME": "0.05",
        "DECODE_WORKERS": "3",
        "DECODE_THREADS": "1",
        "DECODE_DEVICE": "cuda",
        "ALLOWED_CODECS": "h264, MSMPEG4V3",
        "STREAM_SOURCES": "rtsp://10.0.0.7/, file:///srv/recordings/",
        "STREAM_PLAYLIST_SOURCES": "https://cams.example.com/hls/",
        "STREAMS_FILE": "/etc/vtfpar/streams.json",
        "MAX_STREAMS": "2",
        "STREAM_DETECTION_INTERVAL": "5",
        "STREAM_UPDATE_S": "3.5",
        "STREAM_MAX_TRACKS": "8",
        "STREAM_TRACK_LOST_S": "2",
        "STREAM_OPEN_TIMEOUT_S": "4",
        "STREAM_READ_TIMEOUT_S": "6",
        "STREAM_RETRY_MAX_S": "20",
        "STREAM_GIVE_UP_S": "600",
        "STREAM_EVENT_BUFFER": "64",
        "HOST": "127.0.0.1",
        "PORT": "9000",
        "DRAIN_TIMEOUT_S": "11",
        "LOG_LEVEL": "debug",
        "LOG_JSON": "false",
        "API_TOKEN": "t0ken",
        "INSECURE_NO_TOKEN": "true",
        "DATA_DIR": "/var/lib/vtfpar",
        "DATABASE_URL": "postgresql://vtfpar:pw@db:5432/vtfpar",
        "STORE_THUMBNAILS": "false",
        "RETENTION_DAYS": "7.5",
        "ALERT_MIN_WINDOWS": "4",
        "WEBHOOK_TARGETS": "https://hooks.example.com/vtfpar/, http://10.0.0.9:8080/",
        "WEBHOOK_TIMEOUT_S": "2.5",
        "WEBHOOK_MAX_ATTEMPTS": "5",
        "WEBHOOK_RETRY_MAX_S": "15",
        "MQTT_URL": "mqtt://broker:1883",
        "MQTT_TOPIC_PREFIX": "site/alerts",
        "PUBLIC_URL": "https://vtfpar.example.com",
        "STORE_WORKERS": "6",
        "SEARCH_TIMEOUT_S": "2.5",
        "CLIP_TEXT": "true",
    }
    for name, value in values.items():
        monkeypatch.setenv(f"VTFPAR_{name}", value)
    settings = Settings()
    assert set(Settings.model_fields) == {name.lower() for name in values}, "a setting without an env var test"
    assert settings.checkpoint == Path("/models/vtfpar/b16.safetensors")
    assert settings.max_batch_clips == 16 and settings.max_batch_wait_ms == 2.5 and settings.warmup is False
    assert settings.compile == "on" and settings.onnx_tensorrt is False and settings.decode_device == "cuda"
    assert settings.clip_text is True
    assert settings.onnx_tensorrt_cache_dir == Path("/cache/tensorrt")
    assert settings.max_upload_bytes == 1000 and settings.decode_workers == 3 and settings.port == 9000
    assert settings.upload_timeout_s == 7.5 and settings.max_concurrent_uploads == 10
    assert settings.log_json is False and settings.log_level == "debug"
    assert settings.allowed_codecs == ("h264", "msmpeg4v3") and settings.max_aspect_ratio == 4.5
    assert (settings.max_tracks, settings.max_track_boxes, settings.detection_interval) == (5, 500, 3)
    assert settings.detection_s_per_frame == 0.05
    assert settings.detector == "fasterrcnn_mobilenet_v3_large_fpn"
    assert settings.detector_weights == Path("/models/detector.pth")
    assert settings.stream_sources == ("rtsp://10.0.0.7/", "file:///srv/recordings/")
    assert settings.stream_playlist_sources == ("https://cams.example.com/hls/",)
    assert settings.streams_file == Path("/etc/vtfpar/streams.json") and settings.max_streams == 2
    assert (settings.stream_detection_interval, settings.stream_update_s, settings.stream_max_tracks) == (5, 3.5, 8)
    assert (settings.stream_track_lost_s, settings.stream_open_timeout_s, settings.stream_read_timeout_s) == (2, 4, 6)
    assert (settings.stream_retry_max_s, settings.stream_give_up_s, settings.stream_event_buffer) == (20, 600, 64)
    assert settings.api_token is not None and settings.api_token.get_secret_value() == "t0ken"
    assert settings.insecure_no_token is True
    assert settings.data_dir == Path("/var/lib/vtfpar") and settings.store_thumbnails is False
    assert settings.database_url == "postgresql://vtfpar:pw@db:5432/vtfpar" and settings.retention_days == 7.5
    assert settings.webhook_targets == ("https://hooks.example.com/vtfpar/", "http://10.0.0.9:8080/")
    assert (settings.alert_min_windows, settings.webhook_timeout_s, settings.webhook_max_attempts) == (4, 2.5, 5)
    assert settings.webhook_retry_max_s == 15 and settings.mqtt_url == "mqtt://broker:1883"
    assert settings.mqtt_topic_prefix == "site/alerts" and settings.public_url == "https://vtfpar.example.com"
    assert settings.store_workers == 6 and settings.search_timeout_s == 2.5


def test_a_batch_wait_as_long_as_the_queue_timeout_is_refused(monkeypatch):
    """Every lone clip would wait for its batch to fill until its queue timeout had passed: 503 for all."""
    monkeypatch.setenv("VTFPAR_MAX_BATCH_WAIT_MS", "2000")
    monkeypatch.setenv("VTFPAR_QUEUE_TIMEOUT_S", "2")
    with pytest.raises(pydantic.ValidationError, match="max_batch_wait_ms must be shorter than queue_timeout_s"):
        Settings()


def test_defaults_serve_on_port_8000_of_every_interface(monkeypatch):
    for name in list(Settings.model_fields):
        monkeypatch.delenv(f"VTFPAR_{name.upper()}", raising=False)
    settings = Settings()
    assert (settings.host, settings.port) == ("0.0.0.0", 8000)
    assert settings.checkpoint is None and settings.uses_demo_checkpoint
    assert settings.detector == "hog" and settings.max_tracks == 64  # HOG needs no download: on by default
    assert settings.stream_sources == () and settings.api_token is None  # no streams unless sources are allowed


def test_a_gpu_gets_a_large_batch_and_a_decode_worker_per_usable_cpu_up_to_16(monkeypatch):
    for name in list(Settings.model_fields):
        monkeypatch.delenv(f"VTFPAR_{name.upper()}", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 192)  # the host's cores: not what the process may use
    monkeypatch.setattr("app.settings.usable_cpus", lambda: 6)
    defaults = Settings()
    assert defaults.for_device("cpu") == defaults and (defaults.max_batch_clips, defaults.decode_workers) == (8, 4)
    on_gpu = defaults.for_device("cuda")
    assert (on_gpu.max_batch_clips, on_gpu.decode_workers) == (32, 6)
    monkeypatch.setattr("app.settings.usable_cpus", lambda: 192)
    assert Settings().for_device("cuda").decode_workers == 16
    monkeypatch.setenv("VTFPAR_MAX_BATCH_CLIPS", "12")
    chosen = Settings(decode_workers=3).for_device("cuda")
    assert (chosen.max_batch_clips, chosen.decode_workers) == (12, 3), "values given are kept on a GPU"


@pytest.mark.parametrize(
    "name, value",
    [
        ("MAX_BATCH_CLIPS", "0"),
        ("COMPILE", "yes"),
        ("DEVICE", "tpu"),
        ("PRECISION", "int8"),
        ("ALLOWED_CODECS", ","),
        ("MAX_QUEUE", "many"),
        ("QUEUE_TIMEOUT_S", "-1"),
        ("UPLOAD_TIMEOUT_S", "0"),
        ("MAX_CONCURRENT_UPLOADS", "0"),
    ],
)
def test_invalid_values_are_refused_at_startup(monkeypatch, name, value):
    monkeypatch.setenv(f"VTFPAR_{name}", value)
    with pytest.raises(pydantic.ValidationError, match=name.lower()):
        Settings()


def test_python_m_app_names_the_bad_variable_and_exits_non_zero():
    import os
    import subprocess
    import sys

    env = {**os.environ, "VTFPAR_MAX_BATCH_CLIPS": "0", "VTFPAR_DEVICE": "gpu"}
    result = subprocess.run([sys.executable, "-m", "app"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "VTFPAR_MAX_BATCH_CLIPS" in result.stderr and "VTFPAR_DEVICE" in result.stderr


def test_the_data_lives_in_one_place_whatever_directory_the_service_starts_in(monkeypatch, tmp_path):
    """Unset: under XDG_DATA_HOME (else ~/.local/share), never a folder of the working directory; a relative
    path given is fixed to an absolute one once, so that the log and the store name the same place."""
    monkeypatch.delenv("VTFPAR_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    assert Settings().data_dir == tmp_path / "xdg" / "vtfpar"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert Settings().data_dir == tmp_path / "home" / ".local" / "share" / "vtfpar"
    monkeypatch.setenv("VTFPAR_DATA_DIR", "store")
    assert Settings().data_dir == tmp_path / "store"
