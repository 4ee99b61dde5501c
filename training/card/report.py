"""``vtfpar report`` (or ``python -m training.card.report``): a model card with plots for a checkpoint.

Evaluates the checkpoint on one split of ``--data`` (default: test) exactly as ``vtfpar evaluate`` does, once
with its calibrated decisions and once with the plain sigmoid at the default threshold, and writes into
``--out``:

- ``MODEL_CARD.md``: the model, its intended use, the data and sampling, the training provenance and the
  calibration from the checkpoint's header, the results (headline, per group, per attribute), the plots and
  the limits;
- ``metrics.json``: ``{"calibrated": ..., "default_threshold": ...}``, what ``vtfpar evaluate --json`` and
  ``vtfpar evaluate --uncalibrated --json`` write;
- ``attribute_scores.png``, ``precision_recall.png``, ``reliability.png``, ``confusion.png`` (training/card/plots.py).

``--reid`` adds the re-identification protocol of ``vtfpar evaluate --reid`` (``training.reid``) on the same split:
the appearance embedding the service stores against its baselines, in the card and in ``metrics.json``.

Every number in the card is formatted from those results or from the header; none is typed in.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import torch

from model import CheckpointError
from model.decisions import probabilities

from ..data.dataset import SAMPLING_MODES
from ..data.records import DatasetError
from ..distributed import DeviceError
from ..evaluate import SPLITS, Predictions, add_run_options, predict_split, reid
from ..metrics import headline

CARD = "MODEL_CARD.md"
METRICS = "metrics.json"
FIGURES = {
    "attribute_scores.png": "F1 and mA per attribute, at the default threshold and calibrated",
    "precision_recall.png": "precision-recall curves per group, with both operating points",
    "reliability.png": "reliability diagram of all probabilities, before and after calibration",
    "confusion.png": "confusion matrices of the one-of groups' winners",
}
FILES = (CARD, METRICS, *FIGURES)
# Below this many positives (or negatives) in the evaluated split an attribute's scores are mostly noise.
MIN_SUPPORT = 20
WEAK_F1, WEAK_MA = 0.5, 0.6
HEADLINE_ROWS = {
    "protocol_accuracy": "VTFPAR++ protocol accuracy (mean over groups)",
    "protocol_precision": "VTFPAR++ protocol precision",
    "protocol_recall": "VTFPAR++ protocol recall",
    "protocol_f1": "VTFPAR++ protocol F1",
    "mA": "label-based mA",
    "instance_f1": "instance-based F1",
    "winner_accuracy": "one-of winners, top-1 accuracy (mean over groups)",
    "ece": "expected calibration error (lower is better)",
}


def _f(value: float) -> str:
    return f"{value:.3f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def _model_section(predictions: Predictions) -> list[str]:
    metadata, model = predictions.loaded.metadata, predictions.loaded.model
    backbone, pre = metadata.get("backbone", {}), metadata.get("preprocessing", {})
    rows = [
        ["checkpoint", f"`{Path(predictions.loaded.path).name}`, sha256 `{predictions.loaded.digest}`"],
        ["preset", f"`{model.config.name}`"],
        ["backbone", f"{backbone.get('arch')} ({'embedded' if backbone.get('embedded') else backbone.get('weights')})"],
        ["schema", f"`{model.schema.name}`: {len(model.schema)} attributes in {len(model.schema.groups)} groups"],
        ["input", f"{model.config.frames} frames per clip, {pre.get('sampling')} sampling, {pre.get('image_size')} px"],
    ]
    return ["## Model", "", *_table(["", ""], rows), ""]


def _intended_use(predictions: Predictions) -> list[str]:
    provenance = predictions.loaded.metadata.get("provenance", {})
    lines = [
        "## Intended use",
        "",
        "Attributes of one pedestrian in a short clip or tracklet of person crops (as a tracker cuts them): a "
        "probability per attribute, a decision (`probability > threshold`, with the thresholds below) and, for "
        "each one-of group, the winning class. Not for identifying people, and not for decisions about a person "
        "without a human check.",
    ]
    if provenance.get("demo"):
        lines += [
            "",
            "**This is the built-in demo model**: it was trained on synthetic renders to exercise the pipeline and "
            "knows nothing about real footage.",
        ]
    return [*lines, ""]


def _data_section(predictions: Predictions, calibrated: dict) -> list[str]:
    return [
        "## Evaluation data and sampling",
        "",
        f"- data: {predictions.dataset.description}",
        f"- split: {calibrated['split']} ({int(calibrated['metrics']['num_samples'])} tracklets)",
        f"- sampling: {calibrated['sampling']}, {calibrated['frames_per_clip']} frames per clip, "
        f"{calibrated['passes']} pass(es)",
        "",
    ]


def _training_section(provenance: dict) -> list[str]:
    settings = provenance.get("settings") or {}
    validation = provenance.get("validation")
    rows = [[key, f"{provenance[key]}"] for key in ("trainer", "epoch", "global_step") if key in provenance]
    if "selected_on" in provenance:
        rows.append(["best epoch chosen on", f"{provenance['selected_on']} split, by {provenance['selected_by']}"])
    data = provenance.get("data")
    if isinstance(data, dict):
        data = data.get("description") or json.dumps(data)
    if data:
        rows.append(["training data", str(data)])
    if validation:
        rows.append(
            [
                "validation split",
                f"{validation['identities']} identities, {validation['tracklets']} tracklets "
                f"(fraction {validation['fraction']}, seed {validation['seed']})",
            ]
        )
    for key in ("epochs", "batch_size", "lr", "seed", "sampling", "precision"):
        if key in settings:
            rows.append([key, f"{settings[key]}"])
    if provenance.get("command"):
        rows.append(["command", f"`{provenance['command']}`"])
    if not rows:
        return ["## Training", "", "The checkpoint records no training provenance.", ""]
    return ["## Training (from the checkpoint's header)", "", *_table(["", ""], rows), ""]


def _calibration_section(predictions: Predictions) -> list[str]:
    model = predictions.loaded.model
    record = model.calibration
    if not record:
        return [
            "## Decisions",
            "",
            f"Not calibrated: every attribute is decided at {model.config.threshold:g} on the plain sigmoid.",
            "",
        ]
    fit_on, before, after = record["fit_on"], record["validation"]["before"], record["validation"]["after"]
    lines = [
        "## Decisions and calibration",
        "",
        f"Per-attribute thresholds maximising **{record['objective']}**"
        + (" on per-attribute temperature-scaled probabilities" if model.temperatures is not None else "")
        + f", fit on the {fit_on['split']} split: {fit_on['tracklets']} tracklets of {fit_on['identities']} "
        f"identities of {fit_on['data']} ({fit_on['sampling']} sampling); the test split never reaches the fit. "
        "One-of groups are answered by their most probable class.",
        "",
        *_table(
            ["on the validation split", f"threshold {record['default_threshold']:g}", "calibrated"],
            [[HEADLINE_ROWS[k], _f(before[k]), _f(after[k])] for k in ("protocol_f1", "mA", "winner_accuracy", "ece")],
        ),
    ]
    if record["kept_default"]:
        lines += [
            "",
            f"Kept at {record['default_threshold']:g} (one class only on the validation split): "
            + ", ".join(f"`{name}`" for name in record["kept_default"]),
        ]
    return [*lines, ""]


def _results_section(default: dict, calibrated: dict, model) -> list[str]:
    d, c = headline(default["metrics"]), headline(calibrated["metrics"])
    threshold = f"threshold {model.config.threshold:g}"
    lines = [
        f"## Results on the {calibrated['split']} split",
        "",
        f'"default" is the plain sigmoid at {threshold} for every attribute (the paper\'s protocol); "cal." '
        "is the checkpoint's calibrated decisions, which the service uses.",
        "",
        *_table(
            ["metric", threshold, "calibrated"], [[label, _f(d[k]), _f(c[k])] for k, label in HEADLINE_ROWS.items()]
        ),
        "",
        "### Per group",
        "",
    ]
    rows = []
    for name, group in calibrated["metrics"]["groups"].items():
        before = default["metrics"]["groups"][name]
        top1 = _f(group["winner_accuracy"]) if "winner_accuracy" in group else ""
        rows.append([name, group["kind"], _f(before["f1"]), _f(group["f1"]), _f(before["mA"]), _f(group["mA"]), top1])
    lines += _table(["group", "kind", "F1 (default)", "F1 (cal.)", "mA (default)", "mA (cal.)", "winner top-1"], rows)
    lines += ["", "### Per attribute", ""]
    temperatures = model.temperatures or [1.0] * len(model.schema)
    rows = []
    for j, (name, attribute) in enumerate(calibrated["metrics"]["attributes"].items()):
        before = default["metrics"]["attributes"][name]
        rows.append(
            [
                name,
                attribute["group"],
                f"{attribute['positives']}",
                f"{attribute['threshold']:.3f}",
                f"{temperatures[j]:.2f}",
                _f(before["f1"]),
                _f(attribute["f1"]),
                _f(before["mA"]),
                _f(attribute["mA"]),
                _f(attribute["ece"]),
            ]
        )
    header = ["attribute", "group", "positives", "threshold", "temperature", "F1 (default)", "F1 (cal.)"]
    lines += _table([*header, "mA (default)", "mA (cal.)", "ECE (cal.)"], rows)
    return [*lines, ""]


def _limits_section(predictions: Predictions, calibrated: dict) -> list[str]:
    provenance = predictions.loaded.metadata.get("provenance", {})
    metrics, total = calibrated["metrics"], int(calibrated["metrics"]["num_samples"])
    data = provenance.get("data")
    synthetic = provenance.get("demo") or (isinstance(data, dict) and data.get("generator") == "training.synthetic")
    lines = ["## Limits", ""]
    if synthetic:
        lines.append(
            "- **Synthetic data only.** Trained and evaluated on rendered pedestrians (`training/synthetic/`): "
            "flat-shaded figures on cluttered backgrounds with simple occluders, blur and noise. No real cameras, "
            "people, clothing textures, lighting, crowds or video compression: these numbers say nothing about "
            "real footage."
        )
    lines.append(
        f"- Measured on {total} tracklets of {predictions.dataset.description}; other cameras, places, seasons "
        "and populations change both the attributes' base rates and how well they are seen. Recalibrate on "
        "labelled footage of your own (`vtfpar calibrate`) before trusting the decisions there."
    )
    sparse = [
        name for name, a in metrics["attributes"].items() if min(a["positives"], total - a["positives"]) < MIN_SUPPORT
    ]
    if sparse:
        lines.append(
            f"- Fewer than {MIN_SUPPORT} positives (or negatives) in this split, so their scores are noisy: "
            + ", ".join(f"`{n}`" for n in sparse)
        )
    weak = [n for n, a in metrics["attributes"].items() if a["f1"] < WEAK_F1 or a["mA"] < WEAK_MA]
    if weak:
        lines.append(
            f"- Weak (calibrated F1 below {WEAK_F1} or mA below {WEAK_MA}): treat as hints, not decisions: "
            + ", ".join(f"`{n}`" for n in weak)
        )
    return [*lines, ""]


def _reid_section(predictions: Predictions, report: dict | None) -> list[str]:
    if report is None:
        return []
    model = predictions.loaded.model
    rows = report["rows"]
    names = {
        "embedding": f"appearance embedding ({model.appearance_width} floats, what the service stores)",
        "attribute logits": f"the {len(model.schema)} calibrated attribute logits",
        "colour histogram": "colour histogram of the clip",
        "chance": "chance (random ranking)",
    }
    lines = [
        "## Re-identification",
        "",
        f"`vtfpar evaluate --reid` on the same split: each tracklet a query, its gallery every tracklet of another "
        f"camera, cosine similarity; {report['tracklets']} tracklets, {report['identities']} identities, "
        f"{rows['embedding']['queries']} queries. The embedding and how it was chosen: docs/search.md, "
        '"Appearance search".',
        "",
        "| | rank-1 | mAP |",
        "|---|---|---|",
        *(f"| {names.get(name, name)} | {_f(row['rank1'])} | {_f(row['mAP'])} |" for name, row in rows.items()),
        "",
    ]
    if model.config.clip_weights is None:
        lines += [
            "The CLIP tower has no pretrained weights: the embedding describes clothing layout and attributes as the "
            "side nets learnt them for the attributes, not a learnt identity feature.",
            "",
        ]
    return lines


def model_card(predictions: Predictions, calibrated: dict, default: dict) -> str:
    loaded = predictions.loaded
    model = loaded.model
    figures = [f"![{caption}]({name})\n\n*{caption}.*\n" for name, caption in FIGURES.items()]
    lines = [
        f"# Model card: {model.config.name} (version {loaded.digest[:12]})",
        "",
        f"Written by `vtfpar report` from the checkpoint's header and an evaluation on the {calibrated['split']} "
        f"split; every number is computed (the evaluation is in `{METRICS}`), none is typed in.",
        "",
        *_model_section(predictions),
        *_intended_use(predictions),
        *_data_section(predictions, calibrated),
        *_training_section(loaded.metadata.get("provenance", {})),
        *_calibration_section(predictions),
        *_results_section(default, calibrated, model),
        *_reid_section(predictions, calibrated.get("reid")),
        "## Plots",
        "",
        *figures,
        *_limits_section(predictions, calibrated),
    ]
    return "\n".join(lines)


def write_report(predictions: Predictions, out: Path, reid_report: dict | None = None) -> dict:
    """Every file of the report into ``out``; returns the two evaluation results (the calibrated one with
    ``reid_report`` under ``reid``, as ``vtfpar evaluate --reid --json`` writes it)."""
    from . import plots  # matplotlib is an optional dependency (the "report" extra): only imported here

    out.mkdir(parents=True, exist_ok=True)
    model = predictions.loaded.model
    results = {"calibrated": predictions.result(), "default_threshold": predictions.result(calibrated=False)}
    if reid_report is not None:
        results["calibrated"]["reid"] = reid_report
    calibrated, default = results["calibrated"]["metrics"], results["default_threshold"]["metrics"]
    logits = torch.from_numpy(predictions.logits[0])
    (out / METRICS).write_text(json.dumps(results, indent=1) + "\n")
    plots.attribute_scores(out / "attribute_scores.png", default, calibrated)
    probs = probabilities(logits).numpy()  # a curve does not change under a temperature; its operating points do
    plots.precision_recall(out / "precision_recall.png", model.schema, probs, predictions.labels, default, calibrated)
    plots.reliability(out / "reliability.png", default["reliability"], calibrated["reliability"])
    plots.confusion(out / "confusion.png", model.schema, calibrated)
    (out / CARD).write_text(model_card(predictions, results["calibrated"], results["default_threshold"]))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vtfpar report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", required=True, help="a .safetensors checkpoint")
    parser.add_argument("--data", required=True, help="dataset folder or manifest (as for training)")
    parser.add_argument("--out", required=True, type=Path, help="folder for the card, metrics.json and the plots")
    parser.add_argument("--data-format", default="auto")
    parser.add_argument("--split", choices=SPLITS, default="test")
    parser.add_argument("--sampling", choices=SAMPLING_MODES, help="frame sampling (default: segment_middle)")
    parser.add_argument("--reid", action="store_true", help="add re-identification rank-1/mAP (training.reid)")
    add_run_options(parser)
    args = parser.parse_args(argv)
    if importlib.util.find_spec("matplotlib") is None:
        parser.error("the plots need matplotlib: pip install 'vtfpar-serve[report]'")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        predictions = predict_split(
            args.checkpoint,
            args.data,
            data_format=args.data_format,
            split=args.split,
            sampling=args.sampling,
            batch_size=args.batch_size,
            workers=args.workers,
            device=args.device,
            precision=args.precision,
            backbone_weights=args.backbone_weights,
        )
        reid_report = None
        if args.reid:
            options = dict(data_format=args.data_format, split=args.split, batch_size=args.batch_size)
            options.update(device=args.device, precision=args.precision, backbone_weights=args.backbone_weights)
            reid_report = reid(args.checkpoint, args.data, **options)
    except (DatasetError, CheckpointError, DeviceError) as exc:
        parser.error(str(exc))
    write_report(predictions, args.out, reid_report)
    print(f"wrote {', '.join(FILES)} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
