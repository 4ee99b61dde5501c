"""Drawing synthetic pedestrians with numpy: one identity's look, one tracklet's motion, one frame at a time.

Every MARS attribute kind has a cue big enough to survive a 32x32 model input: torso and leg colours (or a
two-colour pattern for "complex"), sleeve and leg length, skirt vs. trousers, backpack, shoulder bag, hand bag,
hat, long hair, a gender cue (broad vs. narrow shoulders), an age cue (body height; grey hair when old), body
orientation, and motion. Motion is only decidable across frames: walking, running and riding drift across the
crop at different speeds with strides (or pedalling) of different frequency; staying stands still with the legs
at a random but fixed stride, so a single frame cannot tell it from walking, and some stayers stand astride a
bicycle, so a bicycle alone does not mean riding; "varies" switches motion mid-tracklet and "pose varies" turns
the body. Nuisances: background clutter, occluders, crop and scale jitter, brightness, motion blur and noise.

Geometry is in fractions of the person's height ``u``; colours are RGB in 0..255.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Raw MARS class orders (see training/data/mars.py ONE_OF_KINDS).
TOP_COLOURS = {
    "black": (25, 25, 28),
    "purple": (125, 45, 160),
    "green": (40, 150, 60),
    "blue": (35, 70, 200),
    "gray": (128, 128, 128),
    "white": (238, 238, 238),
    "yellow": (240, 215, 35),
    "red": (210, 30, 30),
}
TOP_ORDER = ("black", "purple", "green", "blue", "gray", "white", "yellow", "red", "complex")
BOTTOM_COLOURS = {
    "white": (238, 238, 238),
    "purple": (125, 45, 160),
    "black": (25, 25, 28),
    "green": (40, 150, 60),
    "gray": (128, 128, 128),
    "pink": (245, 140, 185),
    "yellow": (240, 215, 35),
    "blue": (35, 70, 200),
    "brown": (125, 75, 30),
}
BOTTOM_ORDER = ("white", "purple", "black", "green", "gray", "pink", "yellow", "blue", "brown", "complex")
# Body height by age class (young, teenager, adult, old), as a fraction of the adult's.
AGE_HEIGHT = (0.62, 0.8, 1.0, 0.97)
SKIN = ((232, 192, 160), (205, 155, 115), (160, 110, 75), (105, 70, 50))
HAIR = ((22, 18, 18), (60, 40, 25), (95, 62, 35))
GREY_HAIR = ((200, 200, 200), (170, 170, 170))
BAG_COLOURS = ((45, 30, 20), (20, 20, 20), (150, 95, 45), (70, 70, 90), (160, 30, 60))
HAT_COLOURS = ((250, 250, 250), (230, 40, 40), (250, 200, 0), (30, 90, 230), (255, 120, 0))
SHOES = (30, 28, 26)
BIKE = (25, 25, 25)

# Raw MARS pose classes: five views, and a tracklet whose view changes.
FRONTAL, LATERAL_FRONTAL, LATERAL, LATERAL_BACK, BACK, POSE_VARIES = range(6)
VIEWS = (FRONTAL, LATERAL_FRONTAL, LATERAL, LATERAL_BACK, BACK)
SIDEWAYS_VIEWS = (LATERAL_FRONTAL, LATERAL, LATERAL_BACK)  # the body moves the way it faces
# Per view: how much of the body's width faces the camera, how much of the face shows, and how visible a stride
# is (it happens in the plane of motion, seen best from the side).
VIEW_WIDTH = (1.0, 0.8, 0.55, 0.8, 1.0)
VIEW_FACE = (1.0, 0.62, 0.35, 0.12, 0.0)
VIEW_STRIDE = (0.35, 0.7, 1.0, 0.7, 0.35)

# Raw MARS motion classes.
WALKING, RUNNING, RIDING, STAYING, MOTION_VARIES = range(5)
# Per motion (walking, running, riding, staying): fraction of the free horizontal room crossed over the
# tracklet, stride cycles per tracklet, stride amplitude (fraction of u; similar for all, so one frame's stride
# says little).
MOTION_DRIFT = (0.5, 0.9, 1.0, 0.0)
MOTION_CYCLES = (1.3, 3.2, 1.8, 0.0)
MOTION_STRIDE = (0.11, 0.13, 0.07, 0.11)
VARYING_MOTIONS = (WALKING, RUNNING, STAYING)  # what "motion varies" switches between
RUNNING_BOB = 0.035  # vertical bounce of a runner, fraction of u
STAYING_WITH_BIKE = 0.3  # share of stayers standing astride a bicycle
AGE_OLD = 3  # raw MARS age class "old": drawn with grey hair

# Body geometry, in fractions of the person's height u (y measured down from the top of the head).
SHOULDER_Y, HIP_Y = 0.145, 0.5
HEAD_Y, HEAD_RY, HEAD_RX = 0.075, 0.07, 0.056
WHEEL_RADIUS, WHEEL_OFFSET = 0.13, 0.22  # bicycle wheels, and their distance from the body's centre line
PEDAL_RADIUS = 0.07
SADDLE_LIFT = 0.07  # how much higher a rider sits


@dataclass(frozen=True)
class Fill:
    """A solid colour, or two colours in stripes/checks (MARS's "complex")."""

    colour: tuple[float, float, float]
    second: tuple[float, float, float] | None = None
    pattern: str = "solid"
    period: float = 0.05

    def values(self, yy: np.ndarray, xx: np.ndarray, u: float) -> np.ndarray:
        first = np.asarray(self.colour, dtype=np.float32)
        if self.second is None:
            return np.broadcast_to(first, yy.shape + (3,))
        period = max(self.period * u, 1.5)
        if self.pattern == "hstripes":
            choose = (yy // period) % 2 == 0
        elif self.pattern == "vstripes":
            choose = (xx // period) % 2 == 0
        else:
            choose = ((yy // period) + (xx // period)) % 2 == 0
        return np.where(choose[..., None], first, np.asarray(self.second, dtype=np.float32))


@dataclass(frozen=True)
class Look:
    """An identity's appearance (shared by all its tracklets), derived from its raw MARS labels."""

    top: Fill
    bottom: Fill
    skin: tuple
    hair: tuple
    height: float
    female: bool
    long_hair: bool
    short_sleeves: bool
    short_bottom: bool
    skirt: bool
    hat: tuple | None
    backpack: tuple | None
    shoulder_bag: tuple | None
    handbag: tuple | None
    bag_side: int


@dataclass(frozen=True)
class BodyState:
    """One frame of a tracklet: where the body is, which way it faces, and its stride."""

    view: int
    facing: int
    centre: float  # fraction of the free room, 0..1
    phase: float
    stride: float
    bob: float
    on_bike: bool


def _jitter(colour, rng: np.random.Generator, amount: float = 8.0) -> tuple:
    return tuple(float(np.clip(c + rng.uniform(-amount, amount), 0, 255)) for c in colour)


def _garment(name: str, palette: dict, rng: np.random.Generator) -> Fill:
    if name != "complex":
        return Fill(_jitter(palette[name], rng))
    first, second = rng.choice(len(palette), size=2, replace=False)
    colours = list(palette.values())
    return Fill(
        _jitter(colours[first], rng),
        _jitter(colours[second], rng),
        pattern=str(rng.choice(["hstripes", "vstripes", "checks"])),
        period=float(rng.uniform(0.06, 0.09)),
    )


def make_look(raw: dict[str, int], rng: np.random.Generator) -> Look:
    """Appearance from raw MARS values (``Tops.c``, ``Bottoms.c``, ``Age``, ``Tops.l``, ...)."""
    old = raw["Age"] == AGE_OLD
    hair_palette = GREY_HAIR if old else HAIR
    return Look(
        top=_garment(TOP_ORDER[raw["Tops.c"]], TOP_COLOURS, rng),
        bottom=_garment(BOTTOM_ORDER[raw["Bottoms.c"]], BOTTOM_COLOURS, rng),
        skin=SKIN[rng.integers(len(SKIN))],
        hair=_jitter(hair_palette[rng.integers(len(hair_palette))], rng, 8),
        height=AGE_HEIGHT[raw["Age"]],
        female=raw["gender"] == 1,
        long_hair=raw["hair"] == 1,
        short_sleeves=raw["Tops.l"] == 1,
        short_bottom=raw["Bottoms.l"] == 1,
        skirt=raw["Bottoms.t"] == 0,
        hat=HAT_COLOURS[rng.integers(len(HAT_COLOURS))] if raw["hat"] else None,
        backpack=BAG_COLOURS[rng.integers(len(BAG_COLOURS))] if raw["backpack"] else None,
        shoulder_bag=BAG_COLOURS[rng.integers(len(BAG_COLOURS))] if raw["shoulder bag"] else None,
        handbag=BAG_COLOURS[rng.integers(len(BAG_COLOURS))] if raw["handbag"] else None,
        bag_side=int(rng.choice([-1, 1])),
    )


def plan_motion(pose: int, motion: int, num_frames: int, rng: np.random.Generator) -> list[BodyState]:
    """Per-frame body states for a tracklet with raw MARS ``pose`` (0-5) and ``motion`` (0-4)."""
    if pose == POSE_VARIES:
        first_view = int(rng.integers(0, len(VIEWS)))
        last_view = int(rng.choice([v for v in VIEWS if abs(v - first_view) >= 2]))
        views = np.rint(np.linspace(first_view, last_view, num_frames)).astype(int)
    else:
        views = np.full(num_frames, pose)
    facing = int(rng.choice([-1, 1]))

    if motion == MOTION_VARIES:  # two different motions, switching somewhere in the middle
        first, second = rng.choice(list(VARYING_MOTIONS), size=2, replace=False)
        switch = int(round(num_frames * rng.uniform(0.35, 0.65)))
        per_frame = [int(first)] * switch + [int(second)] * (num_frames - switch)
    else:
        per_frame = [motion] * num_frames
    steps = max(num_frames - 1, 1)
    # Each frame advances position and stride phase at its own motion's rate.
    drift = np.cumsum([0.0] + [MOTION_DRIFT[m] / steps for m in per_frame[1:]])
    phase = np.cumsum([rng.uniform(0, 2 * math.pi)] + [2 * math.pi * MOTION_CYCLES[m] / steps for m in per_frame[1:]])
    span = max(drift[-1], 1e-6)
    start = rng.uniform(0, 1 - min(span, 1.0)) if span < 1 else 0.0
    direction = facing if pose in SIDEWAYS_VIEWS else int(rng.choice([-1, 1]))
    centres = start + np.minimum(drift, 1.0) if direction > 0 else 1 - start - np.minimum(drift, 1.0)
    # Staying frames do not advance the phase: the legs hold whatever stride they had.
    bike = motion == RIDING or (motion == STAYING and rng.random() < STAYING_WITH_BIKE)
    return [
        BodyState(
            view=int(views[t]),
            facing=facing,
            centre=float(np.clip(centres[t], 0, 1)),
            phase=float(phase[t]),
            stride=MOTION_STRIDE[m],
            bob=RUNNING_BOB * abs(math.sin(phase[t])) if m == RUNNING else 0.0,
            on_bike=bike,
        )
        for t, m in enumerate(per_frame)
    ]


class Canvas:
    """A float RGB image with a few clipped, masked fill operations."""

    def __init__(self, image: np.ndarray):
        self.image = image

    def _paint(self, y0, y1, x0, x1, mask_of, fill: Fill, u: float) -> None:
        height, width = self.image.shape[:2]
        ys, ye = max(int(math.floor(y0)), 0), min(int(math.ceil(y1)), height)
        xs, xe = max(int(math.floor(x0)), 0), min(int(math.ceil(x1)), width)
        if ys >= ye or xs >= xe:
            return
        yy, xx = np.mgrid[ys:ye, xs:xe].astype(np.float32) + 0.5
        mask = mask_of(yy, xx)
        region = self.image[ys:ye, xs:xe]
        region[mask] = fill.values(yy, xx, u)[mask]

    def rect(self, y0, y1, x0, x1, fill: Fill, u: float = 1.0) -> None:
        self._paint(y0, y1, x0, x1, lambda yy, xx: np.ones(yy.shape, bool), fill, u)

    def trapezoid(self, y0, y1, cx, half_top, half_bottom, fill: Fill, u: float = 1.0) -> None:
        def mask(yy, xx):
            t = (yy - y0) / max(y1 - y0, 1e-6)
            return np.abs(xx - cx) <= half_top + t * (half_bottom - half_top)

        self._paint(y0, y1, cx - max(half_top, half_bottom) - 1, cx + max(half_top, half_bottom) + 1, mask, fill, u)

    def ellipse(self, cy, cx, ry, rx, fill: Fill, u: float = 1.0, keep=None, inner: float = 0.0) -> None:
        def mask(yy, xx):
            r = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
            inside = (r <= 1) & (r >= inner**2)
            return inside & keep(yy, xx) if keep is not None else inside

        self._paint(cy - ry - 1, cy + ry + 1, cx - rx - 1, cx + rx + 1, mask, fill, u)

    def segment(self, y0, x0, y1, x1, thickness, fill: Fill, u: float = 1.0) -> None:
        dy, dx = y1 - y0, x1 - x0
        length2 = max(dy * dy + dx * dx, 1e-6)

        def mask(yy, xx):
            t = np.clip(((yy - y0) * dy + (xx - x0) * dx) / length2, 0, 1)
            return (yy - y0 - t * dy) ** 2 + (xx - x0 - t * dx) ** 2 <= (thickness / 2) ** 2

        pad = thickness / 2 + 1
        self._paint(min(y0, y1) - pad, max(y0, y1) + pad, min(x0, x1) - pad, max(x0, x1) + pad, mask, fill, u)


@dataclass(frozen=True)
class Figure:
    """Where one frame's body goes on the canvas: the scale, the centre line and the measures the parts share."""

    u: float  # this person's height in pixels
    top: float  # y of the top of the head
    cx: float
    foot_y: float
    view: int
    facing: int
    width: float  # VIEW_WIDTH of the view
    stride_seen: float  # VIEW_STRIDE of the view
    swing: float  # horizontal foot offset of the stride in this frame
    shoulder_half: float
    waist_half: float

    @classmethod
    def place(cls, look: Look, state: BodyState, foot_y: float, centre_x: float, u: float) -> Figure:
        u = u * look.height
        width, stride_seen = VIEW_WIDTH[state.view], VIEW_STRIDE[state.view]
        lift = SADDLE_LIFT if state.on_bike else 0.0
        # Gender cue: a broad-shouldered V torso (male) or a narrow-shouldered A torso (female).
        return cls(
            u=u,
            top=foot_y - u * (1 + lift) - state.bob * u,
            cx=centre_x,
            foot_y=foot_y,
            view=state.view,
            facing=state.facing,
            width=width,
            stride_seen=stride_seen,
            swing=math.sin(state.phase) * state.stride * u * stride_seen,
            shoulder_half=(0.17 if not look.female else 0.085) * u * width,
            waist_half=(0.12 if not look.female else 0.125) * u * width,
        )

    def y(self, fraction: float) -> float:
        return self.top + fraction * self.u

    @property
    def behind(self) -> int:
        """The side of the body facing away from the direction of view in lateral poses."""
        return -self.facing


def draw_person(canvas: Canvas, look: Look, state: BodyState, foot_y: float, centre_x: float, u: float) -> None:
    """Draw one pedestrian with feet at ``foot_y``, centred at ``centre_x``; an adult is ``u`` pixels tall.

    Parts are painted back to front, so the order of the calls below is the occlusion order.
    """
    figure = Figure.place(look, state, foot_y, centre_x, u)
    if state.on_bike:
        _draw_bicycle(canvas, figure)
    if look.backpack is not None and figure.view == LATERAL:
        _draw_backpack_seen_from_the_side(canvas, figure, look.backpack)
    _draw_legs(canvas, figure, look, state)
    hands = _draw_torso_and_arms(canvas, figure, look)
    if look.backpack is not None:
        _draw_backpack_seen_from_front_or_back(canvas, figure, look.backpack)
    if look.shoulder_bag is not None:
        _draw_shoulder_bag(canvas, figure, look.shoulder_bag, look.bag_side)
    if look.handbag is not None:
        hand_x = hands[0] if len(hands) == 1 else hands[0 if look.bag_side < 0 else 1]
        _draw_handbag(canvas, figure, look.handbag, hand_x)
    _draw_head(canvas, figure, look)


def _draw_bicycle(canvas: Canvas, figure: Figure) -> None:
    u, cx = figure.u, figure.cx
    wheel_y = figure.foot_y - WHEEL_RADIUS * u
    wheel_rx = WHEEL_RADIUS * u * max(figure.stride_seen, 0.3)
    wheel_xs = [cx + side * WHEEL_OFFSET * u * figure.stride_seen for side in (-1, 1)]
    for wheel_x in wheel_xs:
        canvas.ellipse(wheel_y, wheel_x, WHEEL_RADIUS * u, wheel_rx, Fill(BIKE), inner=0.7)
    for wheel_x in wheel_xs:  # the frame: from each hub up to the saddle
        canvas.segment(wheel_y, wheel_x, figure.y(0.55), cx, 0.025 * u, Fill(BIKE))


def _draw_backpack_seen_from_the_side(canvas: Canvas, figure: Figure, colour: tuple) -> None:
    u, behind = figure.u, figure.behind
    back_x = figure.cx + behind * figure.waist_half
    canvas.rect(
        figure.y(0.17),
        figure.y(0.42),
        back_x + min(behind, 0) * 0.08 * u,
        back_x + max(behind, 0) * 0.08 * u,
        Fill(colour),
    )


def _draw_legs(canvas: Canvas, figure: Figure, look: Look, state: BodyState) -> None:
    """Hip to foot, feet swinging apart with the stride phase (pedalling in a circle when riding); then the
    waistband and, for a skirt, the skirt over the thighs."""
    u, cx = figure.u, figure.cx
    leg_half = 0.045 * u
    hip_y = figure.y(HIP_Y)
    thigh = look.bottom
    shin = Fill(look.skin) if (look.short_bottom or look.skirt) else look.bottom
    for side in (-1, 1):
        hip_x = cx + side * 0.055 * u * figure.width
        if state.on_bike:
            angle = state.phase + (0 if side > 0 else math.pi)
            foot = (
                figure.foot_y - WHEEL_RADIUS * u + PEDAL_RADIUS * u * math.sin(angle),
                cx + PEDAL_RADIUS * u * math.cos(angle) * figure.stride_seen,
            )
        else:
            foot = (figure.foot_y - 0.03 * u, hip_x + side * figure.swing)
        knee = (hip_y + 0.45 * (foot[0] - hip_y), hip_x + 0.45 * (foot[1] - hip_x))
        canvas.segment(hip_y, hip_x, knee[0], knee[1], 2 * leg_half, thigh, u)
        canvas.segment(knee[0], knee[1], foot[0], foot[1], 2 * leg_half * 0.9, shin, u)
        toe = 0.02 * u * (figure.facing if figure.view == LATERAL else 0)
        canvas.ellipse(foot[0], foot[1] + toe, 0.025 * u, 0.05 * u, Fill(SHOES))
    waist_half = figure.waist_half
    canvas.rect(figure.y(0.47), figure.y(0.56), cx - waist_half, cx + waist_half, look.bottom, u)
    if look.skirt:
        hem = 0.7 if look.short_bottom else 0.9
        canvas.trapezoid(
            figure.y(0.47), figure.y(hem), cx, waist_half, waist_half + 0.07 * u * figure.width, look.bottom, u
        )


def _draw_torso_and_arms(canvas: Canvas, figure: Figure, look: Look) -> list[float]:
    """The torso, then the arms: at the sides when seen from the front or back, one arm swinging over the torso
    from the side. Returns the x of each hand."""
    u, cx, y, swing = figure.u, figure.cx, figure.y, figure.swing
    arm_half = 0.045 * u
    sleeve_end = 0.26 if look.short_sleeves else 0.46
    if figure.view == LATERAL:
        arm_positions = [cx - swing * 0.8]
    else:
        shoulder_half = figure.shoulder_half
        arm_positions = [cx - shoulder_half - arm_half * 0.6, cx + shoulder_half + arm_half * 0.6]
    canvas.trapezoid(y(SHOULDER_Y), y(HIP_Y), cx, figure.shoulder_half, figure.waist_half, look.top, u)
    hands = []
    for index, arm_x in enumerate(arm_positions):
        hand_x = arm_x - (swing * 0.8 if figure.view != LATERAL else 0) * (1 if index == 0 else -1) * 0.3
        elbow_x = arm_x + (hand_x - arm_x) * sleeve_end
        canvas.segment(y(0.16), arm_x, y(sleeve_end), elbow_x, 2 * arm_half, look.top, u)
        canvas.segment(y(sleeve_end), elbow_x, y(HIP_Y), hand_x, 2 * arm_half * 0.85, Fill(look.skin), u)
        hands.append(hand_x)
    return hands


def _draw_backpack_seen_from_front_or_back(canvas: Canvas, figure: Figure, colour: tuple) -> None:
    """The pack itself from behind; only its two straps from the front."""
    u, cx, y = figure.u, figure.cx, figure.y
    if figure.view in (LATERAL_BACK, BACK):
        shift = figure.behind * 0.04 * u if figure.view == LATERAL_BACK else 0.0
        half = 0.12 * u * figure.width
        canvas.rect(y(0.17), y(0.45), cx + shift - half, cx + shift + half, Fill(colour))
    elif figure.view in (FRONTAL, LATERAL_FRONTAL):
        for side in (-1, 1):
            strap_x = cx + side * 0.07 * u * figure.width
            canvas.rect(y(SHOULDER_Y), y(0.38), strap_x - 0.03 * u, strap_x + 0.03 * u, Fill(colour))


def _draw_shoulder_bag(canvas: Canvas, figure: Figure, colour: tuple, side: int) -> None:
    """A strap across the chest from the opposite shoulder, and the bag at the hip."""
    u, cx, y = figure.u, figure.cx, figure.y
    canvas.segment(
        y(0.15), cx - side * figure.shoulder_half * 0.8, y(0.45), cx + side * figure.waist_half, 0.035 * u, Fill(colour)
    )
    bag_x = cx + side * (figure.waist_half + 0.04 * u)
    canvas.rect(y(0.38), y(0.56), bag_x - 0.08 * u, bag_x + 0.08 * u, Fill(colour))


def _draw_handbag(canvas: Canvas, figure: Figure, colour: tuple, hand_x: float) -> None:
    u, y = figure.u, figure.y
    canvas.segment(y(0.48), hand_x, y(0.52), hand_x, 0.015 * u, Fill(colour))
    canvas.rect(y(0.52), y(0.68), hand_x - 0.075 * u, hand_x + 0.075 * u, Fill(colour))


def _draw_head(canvas: Canvas, figure: Figure, look: Look) -> None:
    """Skin where the face shows, hair elsewhere; long hair falls to the shoulders; a hat with a brim."""
    u, cx, y, view, facing = figure.u, figure.cx, figure.y, figure.view, figure.facing
    hair = Fill(look.hair)
    head_y, head_ry, head_rx = y(HEAD_Y), HEAD_RY * u, HEAD_RX * u
    face_edge = head_rx * (1 - 2 * VIEW_FACE[view])
    canvas.ellipse(head_y, cx, head_ry, head_rx, Fill(look.skin))
    canvas.ellipse(
        head_y,
        cx,
        head_ry,
        head_rx,
        hair,
        keep=lambda yy, xx: (yy < head_y - 0.3 * head_ry) | ((xx - cx) * facing < face_edge),
    )
    if look.long_hair:
        if view in (LATERAL_BACK, BACK):
            canvas.rect(head_y, y(0.34), cx - 0.07 * u, cx + 0.07 * u, hair)
        elif view == LATERAL:
            back_x = cx + figure.behind * head_rx * 0.6
            canvas.rect(head_y, y(0.34), back_x - 0.045 * u, back_x + 0.045 * u, hair)
        else:
            for side in (-1, 1):
                lock_x = cx + side * head_rx * 0.8
                canvas.rect(head_y, y(0.32), lock_x - 0.035 * u, lock_x + 0.035 * u, hair)
    if look.hat is not None:
        canvas.rect(y(-0.05), y(0.03), cx - 0.07 * u, cx + 0.07 * u, Fill(look.hat))
        brim_shift = 0.03 * u * facing if view == LATERAL else 0.0
        canvas.rect(y(0.02), y(0.05), cx - 0.12 * u + brim_shift, cx + 0.12 * u + brim_shift, Fill(look.hat))


def make_background(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Muted base colour, a darker ground band and a few static clutter blocks (walls, windows, poles) of
    lower saturation than any garment, so clothing colours stay the most colourful thing in the frame."""
    base = rng.uniform(80, 180)

    def muted():
        return np.clip(base + rng.uniform(-40, 40) + rng.uniform(-18, 18, size=3), 0, 255)

    image = np.empty((height, width, 3), dtype=np.float32)
    image[:] = muted()
    ground = int(height * rng.uniform(0.7, 0.85))
    image[ground:] = muted() * 0.85
    canvas = Canvas(image)
    for _ in range(int(rng.integers(3, 8))):
        y0, x0 = rng.uniform(0, height * 0.8), rng.uniform(-width * 0.2, width)
        canvas.rect(
            y0, y0 + rng.uniform(0.05, 0.5) * height, x0, x0 + rng.uniform(0.05, 0.4) * width, Fill(tuple(muted()))
        )
    return image


def horizontal_blur(image: np.ndarray, length: int) -> np.ndarray:
    """Box blur along x (motion blur of a horizontally moving camera or subject)."""
    if length <= 1:
        return image
    padded = np.pad(image, ((0, 0), (length // 2, length - 1 - length // 2), (0, 0)), mode="edge")
    summed = np.cumsum(np.pad(padded, ((0, 0), (1, 0), (0, 0))), axis=1, dtype=np.float32)
    return (summed[:, length:] - summed[:, :-length]) / length


@dataclass(frozen=True)
class Occluder:
    colour: tuple
    frames: range
    x_start: float
    x_end: float
    half_width: float
    top: float


def render_tracklet(
    look: Look, states: list[BodyState], height: int, width: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """The frames (``uint8 [H, W, 3]``) of one tracklet."""
    margin = max(2, int(round(0.05 * width)))
    background = make_background(height + 2 * margin, width + 2 * margin, rng)
    scale = rng.uniform(0.9, 1.03)
    u_base = 0.84 * height * scale
    gain = rng.uniform(0.9, 1.1)
    noise = rng.uniform(1.5, 5.0)
    blur_prob = rng.uniform(0.0, 0.2)
    occluder = None
    if rng.random() < 0.2:
        length = max(1, int(len(states) * rng.uniform(0.2, 0.5)))
        first = int(rng.integers(0, max(1, len(states) - length + 1)))
        colour = tuple(rng.uniform(60, 180) + rng.uniform(-20, 20, size=3))
        occluder = Occluder(
            colour=colour,
            frames=range(first, first + length),
            x_start=rng.uniform(-0.2, 1.2),
            x_end=rng.uniform(-0.2, 1.2),
            half_width=rng.uniform(0.1, 0.22) * width,
            top=rng.uniform(0.0, 0.6) * height,
        )
    frames = []
    for t, state in enumerate(states):
        canvas = Canvas(background.copy())
        u = u_base * rng.uniform(0.98, 1.02)
        body_half = 0.1 * u  # the body's centre stays inside the crop; a shoulder, arm or bag may be cut off
        room = max(width - 2 * body_half, 0.0)
        centre_x = margin + body_half + state.centre * room
        foot_y = margin + height * rng.uniform(0.95, 0.985)
        draw_person(canvas, look, state, foot_y, centre_x, u)
        if occluder is not None and t in occluder.frames:
            progress = (t - occluder.frames.start) / max(len(occluder.frames) - 1, 1)
            x = margin + width * (occluder.x_start + progress * (occluder.x_end - occluder.x_start))
            canvas.rect(
                margin + occluder.top,
                margin + height,
                x - occluder.half_width,
                x + occluder.half_width,
                Fill(occluder.colour),
            )
        dy, dx = rng.integers(-margin // 2, margin // 2 + 1, size=2)  # detector box jitter
        image = canvas.image[margin + dy : margin + dy + height, margin + dx : margin + dx + width] * gain
        if rng.random() < blur_prob:
            image = horizontal_blur(image, int(rng.integers(2, 5)))
        image = image + rng.normal(0.0, noise, size=image.shape)
        frames.append(np.clip(image, 0, 255).astype(np.uint8))
    return frames
