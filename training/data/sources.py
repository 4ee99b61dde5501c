"""``--data`` and ``--data-format`` -> a :class:`TrackletSet`, whichever reader the layout needs."""

from __future__ import annotations

from pathlib import Path

from model import VTFPAR, AttributeSchema, SchemaError, load_schema

from .manifest import load_manifest
from .mars import LABEL_FILE, is_mars_layout, load_mars
from .package import LAYOUTS, detect_package, load_package
from .records import DatasetError, TrackletSet

DATA_FORMATS = ("auto", "mars", "mars-package", "duke-package", "manifest")


def detect_format(data: Path) -> str:
    if data.is_file():
        return "manifest"
    if not data.is_dir():
        raise DatasetError(f"dataset path {data} does not exist")
    if is_mars_layout(data):
        return "mars"
    package = detect_package(data)
    if package:
        return f"{package}-package"
    expected = [LABEL_FILE] + [layout.labels for layout in LAYOUTS.values()]
    raise DatasetError(
        f"{data}: not a known dataset layout: found none of {expected}; pass a manifest file "
        "(.csv/.jsonl) or --data-format"
    )


def load_dataset(
    data: str | Path, data_format: str = "auto", schema: str | AttributeSchema | None = None
) -> TrackletSet:
    """Read a dataset. ``schema`` (a schema, its name or a JSON path) applies to manifests; the MARS and Duke
    layouts imply theirs."""
    data = Path(data)
    if data_format not in DATA_FORMATS:
        raise DatasetError(f"unknown data format {data_format!r}; expected one of {DATA_FORMATS}")
    if data_format == "auto":
        data_format = detect_format(data)
    if data_format != "manifest" and schema is not None:
        raise DatasetError(f"--schema applies to manifests only; the {data_format} layout defines its own schema")
    if data_format == "mars":
        return load_mars(data)
    if data_format.endswith("-package"):
        return load_package(data, data_format.removesuffix("-package"))
    if isinstance(schema, AttributeSchema):
        return load_manifest(data, schema)
    try:
        return load_manifest(data, load_schema(schema or "mars"))
    except SchemaError as exc:
        raise DatasetError(str(exc)) from None


def load_dataset_for(model: VTFPAR, data: str | Path, data_format: str = "auto") -> TrackletSet:
    """Read a dataset to run ``model`` on: a manifest with the model's schema; other layouts must bring the same."""
    if data_format == "auto":
        data_format = detect_format(Path(data))
    dataset = load_dataset(data, data_format, model.schema if data_format == "manifest" else None)
    if dataset.schema.names != model.schema.names:
        raise DatasetError(
            f"{dataset.description} is labelled with schema {dataset.schema.name!r}, "
            f"but the checkpoint predicts {model.schema.name!r} ({len(model.schema)} attributes)"
        )
    return dataset
