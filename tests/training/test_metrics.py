"""Metrics of docs/method.md §4.1 (VTFPAR++ protocol) and §4.2 (mA, instance metrics) on toy cases."""

import numpy as np
import pytest

from model import load_schema, schema_from_dict
from training.metrics import compute_metrics, format_report


def toy_schema():
    return schema_from_dict(
        {
            "name": "toy",
            "groups": [
                {"name": "hat", "kind": "binary", "attributes": [{"name": "hat", "phrase": "hat"}]},
                {
                    "name": "colour",
                    "kind": "one_of",
                    "attributes": [{"name": f"c{i}", "phrase": f"colour {i}"} for i in range(9)],
                },
            ],
        }
    )


def one_hot(classes, k=9):
    out = np.zeros((len(classes), k), dtype=np.uint8)
    out[np.arange(len(classes)), classes] = 1
    return out


def test_all_zero_predictions_on_a_nine_way_group():
    schema = toy_schema()
    labels = np.concatenate([np.ones((6, 1), np.uint8), one_hot([0, 1, 2, 3, 4, 5])], axis=1)
    metrics = compute_metrics(np.zeros(labels.shape), labels, schema)
    colour = metrics["groups"]["colour"]
    assert colour["accuracy"] == pytest.approx(8 / 9)
    assert (colour["precision"], colour["recall"], colour["f1"]) == (0.0, 0.0, 0.0)


def test_protocol_counts_are_micro_averaged_within_a_group_and_averaged_over_groups():
    schema = toy_schema()
    hat = np.array([[1], [0], [1], [0]], np.uint8)
    labels = np.concatenate([hat, one_hot([0, 1, 2, 3])], axis=1)
    probs = np.zeros(labels.shape)
    probs[:, 0] = [0.9, 0.9, 0.2, 0.1]  # hat: TP, FP, FN, TN
    probs[[0, 1], 1 + np.array([0, 1])] = 0.8  # colour: two right
    probs[2, 1 + 5] = 0.8  # one wrong class
    metrics = compute_metrics(probs, labels, schema)
    hat_group = metrics["groups"]["hat"]
    assert (hat_group["accuracy"], hat_group["precision"], hat_group["recall"]) == (0.5, 0.5, 0.5)
    colour = metrics["groups"]["colour"]
    # 36 (sample, column) pairs: TP 2, FP 1, FN 2, TN 31.
    assert colour["accuracy"] == pytest.approx(33 / 36)
    assert colour["precision"] == pytest.approx(2 / 3)
    assert colour["recall"] == pytest.approx(2 / 4)
    assert colour["f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert metrics["protocol"]["accuracy"] == pytest.approx((0.5 + 33 / 36) / 2)
    assert metrics["protocol"]["f1"] == pytest.approx((0.5 + colour["f1"]) / 2)


def test_threshold_is_strictly_greater_than_0_45():
    schema = toy_schema()
    labels = np.concatenate([np.ones((1, 1), np.uint8), one_hot([0])], axis=1)
    at = compute_metrics(np.full(labels.shape, 0.45), labels, schema)
    above = compute_metrics(np.full(labels.shape, 0.4501), labels, schema)
    assert at["attributes"]["hat"]["tp"] == 0 and above["attributes"]["hat"]["tp"] == 1


def test_label_based_ma_and_instance_metrics():
    schema = toy_schema()
    labels = np.concatenate([np.array([[1], [0]], np.uint8), one_hot([0, 1])], axis=1)
    perfect = compute_metrics(labels.astype(float), labels, schema)
    assert [perfect["attributes"][n]["mA"] for n in ("hat", "c0", "c1")] == pytest.approx([1, 1, 1])
    # As in the reference (eps denominators), a column without positives has TPR 0: its mA is at most 0.5.
    assert perfect["attributes"]["c5"]["mA"] == pytest.approx(0.5)
    assert perfect["mA"] == pytest.approx((3 * 1 + 7 * 0.5) / 10)
    constant = compute_metrics(np.ones(labels.shape), labels, schema)
    assert constant["attributes"]["hat"]["mA"] == pytest.approx(0.5)
    # Sample 0: Y = {hat, c0}, predicted {hat, c1}: |Y∩Ŷ| = 1, |Y∪Ŷ| = 3.  Sample 1: Y = {c1}, Ŷ = {c1}.
    probs = np.zeros(labels.shape)
    probs[0, [0, 2]] = 0.9
    probs[1, 2] = 0.9
    metrics = compute_metrics(probs, labels, schema)
    assert metrics["instance"]["accuracy"] == pytest.approx((1 / 3 + 1) / 2)
    assert metrics["instance"]["precision"] == pytest.approx((1 / 2 + 1) / 2)
    assert metrics["instance"]["recall"] == pytest.approx((1 / 2 + 1) / 2)
    assert metrics["instance"]["f1"] == pytest.approx((0.5 + 1) / 2)


def test_per_attribute_thresholds_and_report_tables():
    schema = load_schema("mars")
    rng = np.random.default_rng(0)
    labels = (rng.random((20, len(schema))) < 0.3).astype(np.uint8)
    probs = rng.random(labels.shape)
    thresholds = np.full(len(schema), 0.45)
    thresholds[0] = 0.99
    metrics = compute_metrics(probs, labels, schema, thresholds)
    assert metrics["attributes"]["top_short"]["tp"] + metrics["attributes"]["top_short"]["fp"] == int(
        (probs[:, 0] > 0.99).sum()
    )
    assert len(metrics["groups"]) == 14 and len(metrics["attributes"]) == 43
    report = format_report(metrics)
    for name in ("VTFPAR++ protocol", "label-based mA", "bottom color", "motion_varies"):
        assert name in report


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="must both be"):
        compute_metrics(np.zeros((2, 3)), np.zeros((2, 10)), toy_schema())
