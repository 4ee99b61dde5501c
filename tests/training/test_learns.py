"""It learns: the tiny preset trained on synthetic tracklets on a CPU beats the priors, and uses time.

Setting: 1,200 synthetic tracklets (uniform class priors, 64x32 frames, 8 per tracklet), 887 train / 313
held-out identities' tracklets; tiny preset (32x32 input, 4 frames) unchanged; 8 epochs of batch 8, lr 1e-3,
one crop/flip per clip (880 steps). Measured on 2 shared, heavily loaded CPU cores (torch 2.14, seed 7):

  label-based mA                                     model 0.594  vs. predicting the training priors 0.500
  group-mean F1 (VTFPAR++ protocol)                  model 0.525  vs. 0.425
  group mA: top colour 0.64, bottom colour 0.62, age 0.68 (chance 0.5)
  motion group, 4 ordered frames vs. 1 frame x 4     mA 0.554 vs. 0.512, accuracy 0.565 vs. 0.544

The asserted margins are about 60 % of the measured ones. Group-mean accuracy is not asserted at this length:
under the protocol a one-hot group scores (K-1)/K by predicting nothing, and the paper's loss up-weights rare
positives, so after 8 epochs the model still trades accuracy for recall (0.565 vs. the priors' 0.617); trained
twice as long on twice the data (`docs/training.md`, "On a CPU") it passes the priors (0.678 vs. 0.628).
"""

import numpy as np
import pytest

from model import load_checkpoint
from training.data.sources import load_dataset
from training.evaluate import evaluate
from training.loss import positive_ratios
from training.metrics import compute_metrics
from training.synthetic.tracklets import generate
from training.train import main as train_main

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("learns")
    data = generate(
        root / "data",
        tracklets=1200,
        seed=7,
        frames_per_tracklet=(8, 8),
        size=(64, 32),
        priors="uniform",
        test_fraction=0.25,
    )
    out = root / "run"
    assert (
        train_main(
            [
                "--data",
                str(data),
                "--out",
                str(out),
                "--preset",
                "tiny",
                "--epochs",
                "8",
                "--warmup-epochs",
                "1",
                "--batch-size",
                "8",
                "--lr",
                "1e-3",
                "--eval-every",
                "8",
                # The paper's setting: all training identities train (this test measures learning, not selection).
                "--val-fraction",
                "0",
                "--select-on",
                "test",
                "--aug-per-clip",
                "--seed",
                "7",
                # Module fixtures run before the autouse two-thread fixture: say it here, or this inherits
                # whatever thread count an earlier in-process server left.
                "--threads",
                "2",
            ]
        )
        == 0
    )
    checkpoint = str(out / "last.safetensors")
    assert load_checkpoint(checkpoint).model.config.frames == 4  # the "4 ordered frames" of the motion test
    return data, evaluate(checkpoint, str(data))["metrics"], evaluate(checkpoint, str(data), sampling="single_frame")


def test_beats_the_priors_on_held_out_tracklets(trained):
    data_root, model, _ = trained
    data = load_dataset(data_root)
    train_labels = np.stack([t.labels for t in data.train])
    test_labels = np.stack([t.labels for t in data.test])
    priors = np.broadcast_to(positive_ratios(train_labels).numpy(), test_labels.shape)
    baseline = compute_metrics(priors, test_labels, data.schema)
    print(
        f"accuracy {model['protocol']['accuracy']:.3f} vs priors {baseline['protocol']['accuracy']:.3f}; "
        f"F1 {model['protocol']['f1']:.3f} vs {baseline['protocol']['f1']:.3f}; "
        f"mA {model['mA']:.3f} vs {baseline['mA']:.3f}; "
        + ", ".join(f"{name} mA {g['mA']:.2f}" for name, g in model["groups"].items())
    )
    assert baseline["mA"] == pytest.approx(0.5)
    assert model["mA"] >= baseline["mA"] + 0.055
    assert model["protocol"]["f1"] >= baseline["protocol"]["f1"] + 0.06
    # The biggest cues (garment colours, body height) are each learned beyond chance.
    for group in ("top color", "bottom color", "age"):
        assert model["groups"][group]["mA"] >= 0.58, (group, model["groups"][group])


def test_motion_needs_more_than_one_frame(trained):
    data_root, model, single_frame = trained
    clip, single = model["groups"]["motion"], single_frame["metrics"]["groups"]["motion"]
    print(
        f"motion accuracy {clip['accuracy']:.3f} vs single frame {single['accuracy']:.3f}; "
        f"mA {clip['mA']:.3f} vs {single['mA']:.3f}"
    )
    assert clip["mA"] >= single["mA"] + 0.025
    assert clip["accuracy"] >= single["accuracy"] + 0.012
