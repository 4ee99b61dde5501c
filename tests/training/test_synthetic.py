"""Synthetic pedestrian tracklets: MARS layout, determinism, priors, visible cues, speed."""

import dataclasses
import hashlib
import json
import time

import numpy as np
import pytest

from training.data.mars import load_mars
from training.synthetic.render import (
    BACK,
    FRONTAL,
    LATERAL,
    MOTION_VARIES,
    POSE_VARIES,
    RUNNING,
    STAYING,
    VIEWS,
    WALKING,
    Canvas,
    draw_person,
    make_look,
    plan_motion,
)
from training.synthetic.tracklets import MARS_ROWS, generate, main, plan_dataset


def digest_tree(root):
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_writes_the_mars_layout_the_mars_reader_reads(small_synthetic):
    data = load_mars(small_synthetic)
    settings = json.loads((small_synthetic / "synthetic.json").read_text())
    assert data.schema.name == "mars"
    assert (len(data.train), len(data.test)) == (settings["train_tracklets"], settings["test_tracklets"])
    assert len(data.train) + len(data.test) == 40
    for tracklet in data.train + data.test:
        assert 6 <= len(tracklet.frame_files) <= 10
        assert tracklet.frame_files[0].name.startswith(tracklet.name + "F001")
    train_ids = {t.name[:4] for t in data.train}
    assert train_ids.isdisjoint(t.name[:4] for t in data.test)  # split by identity, as MARS


def test_deterministic_for_a_seed(tmp_path):
    kwargs = dict(tracklets=5, frames_per_tracklet=(3, 5), size=(32, 16))
    first = digest_tree(generate(tmp_path / "a", seed=11, **kwargs))
    assert digest_tree(generate(tmp_path / "b", seed=11, **kwargs)) == first
    assert digest_tree(generate(tmp_path / "c", seed=12, **kwargs)) != first


def test_default_priors_follow_the_mars_label_file():
    jobs = plan_dataset(6000, seed=0, priors="mars", test_fraction=0.5, frames_range=(1, 1))
    share = {kind: np.mean([job.raw[kind] for job in jobs]) for kind in ("Tops.l", "hat", "gender", "hair")}
    assert share["Tops.l"] == pytest.approx(15334 / MARS_ROWS, abs=0.02)
    assert share["hat"] == pytest.approx(552 / MARS_ROWS, abs=0.01)
    assert share["gender"] == pytest.approx(6771 / MARS_ROWS, abs=0.03)
    assert share["hair"] == pytest.approx(5571 / MARS_ROWS, abs=0.03)
    skirts = np.mean([job.raw["Bottoms.t"] == 0 for job in jobs])
    assert skirts == pytest.approx(2249 / MARS_ROWS, abs=0.02)
    teenagers = np.mean([job.raw["Age"] == 1 for job in jobs])
    assert teenagers == pytest.approx(13161 / MARS_ROWS, abs=0.03)
    uniform = plan_dataset(6000, seed=0, priors="uniform", test_fraction=0.5, frames_range=(1, 1))
    assert np.mean([job.raw["hat"] for job in uniform]) == pytest.approx(0.5, abs=0.04)


BASE_RAW = {
    "Tops.c": 3,
    "Bottoms.c": 2,
    "Age": 2,
    "Tops.l": 0,
    "Bottoms.l": 0,
    "shoulder bag": 0,
    "backpack": 0,
    "hat": 0,
    "handbag": 0,
    "hair": 0,
    "gender": 0,
    "Bottoms.t": 1,
}


def draw(look, state):
    canvas = Canvas(np.full((128, 64, 3), 100.0, dtype=np.float32))
    draw_person(canvas, look, state, foot_y=124, centre_x=32, u=110)
    return canvas.image


@pytest.mark.parametrize(
    "field,value",
    [
        ("top", None),
        ("bottom", None),
        ("height", 0.62),
        ("hair", (200, 200, 200)),
        ("female", True),
        ("long_hair", True),
        ("short_sleeves", True),
        ("short_bottom", True),
        ("skirt", True),
        ("hat", (230, 40, 40)),
        ("backpack", (20, 20, 20)),
        ("shoulder_bag", (150, 95, 45)),
        ("handbag", (160, 30, 60)),
    ],
)
@pytest.mark.parametrize("view", [FRONTAL, LATERAL, BACK])
def test_every_appearance_attribute_changes_the_pixels_in_every_view(field, value, view):
    look = make_look(BASE_RAW, np.random.default_rng(0))
    if field in ("top", "bottom"):
        value = make_look({**BASE_RAW, "Tops.c": 7, "Bottoms.c": 5}, np.random.default_rng(0)).__dict__[field]
    changed = dataclasses.replace(look, **{field: value})
    state = plan_motion(view, STAYING, 4, np.random.default_rng(0))[0]
    difference = np.abs(draw(look, state) - draw(changed, state)).sum(axis=-1) > 30
    assert difference.sum() >= 20, f"{field} barely visible ({difference.sum()} pixels) in view {view}"


def test_views_differ_and_motion_needs_several_frames():
    look = make_look(BASE_RAW, np.random.default_rng(0))
    views = [draw(look, plan_motion(view, STAYING, 2, np.random.default_rng(1))[0]) for view in VIEWS]
    for i in range(len(views)):
        for j in range(i + 1, len(views)):
            assert np.abs(views[i] - views[j]).sum() > 0, (i, j)
    staying = plan_motion(FRONTAL, STAYING, 12, np.random.default_rng(2))
    assert len({(s.centre, s.phase) for s in staying}) == 1  # nothing moves
    walking, running = (plan_motion(LATERAL, m, 12, np.random.default_rng(2)) for m in (WALKING, RUNNING))
    walk_span = abs(walking[-1].centre - walking[0].centre)
    run_span = abs(running[-1].centre - running[0].centre)
    assert 0 < walk_span < run_span
    # One frame of a stayer looks like one frame of a walker: same stride amplitude range.
    assert abs(staying[0].stride - walking[0].stride) < 0.03
    varies = plan_motion(FRONTAL, MOTION_VARIES, 12, np.random.default_rng(3))
    steps = np.abs(np.diff([s.centre for s in varies]))
    assert steps.max() - steps.min() > 0.01  # the speed changes within the tracklet
    turning = plan_motion(POSE_VARIES, WALKING, 12, np.random.default_rng(4))
    assert abs(turning[-1].view - turning[0].view) >= 2


@pytest.mark.slow
def test_a_few_hundred_tracklets_in_well_under_a_minute(tmp_path):
    started = time.perf_counter()
    generate(tmp_path / "speed", tracklets=200, seed=0)  # default 128x64, 16 frames: 3,200 JPEGs
    assert time.perf_counter() - started < 45  # about 10 s on an idle 2-core machine


def test_command_line(tmp_path, capsys):
    assert (
        main(["--out", str(tmp_path / "cli"), "--tracklets", "4", "--size", "32x16", "--frames-per-tracklet", "2-3"])
        == 0
    )
    assert "tracklets to" in capsys.readouterr().out and (tmp_path / "cli" / "mars_attributes.csv").is_file()
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path / "x"), "--tracklets", "4", "--size", "33x16"])
    assert exit_info.value.code == 2 and "must be even" in capsys.readouterr().err
