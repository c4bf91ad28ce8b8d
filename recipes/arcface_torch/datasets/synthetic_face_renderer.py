"""Procedural renderer of aligned, face-like 112x112 RGB images for synthetic identities.

An identity is a fixed set of appearance parameters (head and jaw shape, skin tone, hair style and
colour, eye spacing/size/colour, brows, nose, mouth, ears, beard, glasses, moles) drawn from
(seed, identity). A sample of an identity redraws only nuisance factors from (seed, identity, sample):
imperfect alignment (rotation, scale, shift), expression (smile, open mouth, raised brows, blink,
gaze), background and clothes, lighting (brightness, contrast, gamma, colour cast, shading gradient),
low resolution, blur, sensor noise, an occluding patch and JPEG artefacts.

Two presets. "classic" is the renderer above, image for image. "hard" is closer to real data: on top of
the classic sample it turns the head (yaw up to `max_yaw` degrees, pitch up to half of it, projected as
a tilted plane, so one side of the face shrinks and the features shift), adds occluders that hide
identity cues (a face mask over nose and mouth, sunglasses, a hand-sized blob) and lights the face
harshly (one side down to 15% brightness, under- and over-exposure). These extra draws come from their
own random stream, so a "hard" sample is the "classic" sample of the same (seed, identity, sample) seen
under a new pose, light and occlusion.

Landmarks sit near insightface's 112x112 alignment template (eyes ~(38, 52) and (74, 52), nose tip
~(56, 72), mouth ~y 92), so the images look like aligned crops to a face-recognition backbone.
Everything is plain numpy + OpenCV drawing; one image takes well under a millisecond on one core.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

FACE_SIZE = 112
_SHIFT = 4  # sub-pixel bits for cv2 drawing
_ONE = 1 << _SHIFT
_AA = cv2.LINE_AA

# Seed-stream tags keep the random streams of different purposes independent.
_IDENTITY_STREAM = 1
_SAMPLE_STREAM = 2
_NOISE_STREAM = 3
_HARD_STREAM = 4

PRESETS = ("classic", "hard")

_SKIN_LIGHT = np.array([238.0, 205.0, 180.0])
_SKIN_DARK = np.array([88.0, 56.0, 38.0])
_HAIR_PALETTE = np.array(
    [[25, 20, 18], [70, 45, 28], [120, 80, 45], [200, 165, 100], [150, 60, 30], [170, 170, 170], [60, 55, 55]],
    dtype=np.float64,
)
_EYE_PALETTE = np.array(
    [[70, 40, 20], [110, 70, 35], [60, 100, 150], [80, 120, 80], [110, 110, 120], [40, 28, 20]], dtype=np.float64
)

_NOISE_BANK_SIZE = 8
_NOISE_TILE = 128


def _pt(x: float, y: float) -> tuple[int, int]:
    """Float pixel coordinates -> fixed-point coordinates for cv2 drawing with `_SHIFT` bits."""
    return int(round(x * _ONE)), int(round(y * _ONE))


def _colour(rgb: np.ndarray) -> tuple[int, int, int]:
    r, g, b = rgb.tolist()
    return int(min(max(r, 0.0), 255.0)), int(min(max(g, 0.0), 255.0)), int(min(max(b, 0.0), 255.0))


def _ellipse(img, cx, cy, ax, ay, angle, colour, thickness=-1, start=0, end=360) -> None:
    cv2.ellipse(img, _pt(cx, cy), _pt(max(ax, 0.5), max(ay, 0.5)), angle, start, end, colour, thickness, _AA, _SHIFT)


class _Uniforms:
    """Hands out uniform draws from one pre-drawn vector: u(lo, hi) -> float, flag(p) -> bool."""

    def __init__(self, values: np.ndarray) -> None:
        self._values = values
        self._next = 0

    def u(self, lo: float = 0.0, hi: float = 1.0) -> float:
        v = self._values[self._next]
        self._next += 1
        return lo + (hi - lo) * float(v)

    def flag(self, p: float) -> bool:
        return self.u() < p

    def pick(self, n: int) -> int:
        return min(int(self.u() * n), n - 1)


class SyntheticFaceRenderer:
    """Renders `render(identity, sample) -> uint8 (112, 112, 3) RGB`, deterministic in (seed, identity, sample).

    Args:
        seed: world seed; the same seed gives the same identities and the same samples byte for byte.
        preset: "classic" or "hard" (pose, occlusion and harsh light on top of classic; see the module doc).
        max_yaw: largest head turn in degrees for the "hard" preset (pitch up to half of it); 0 keeps faces frontal.
    """

    def __init__(self, seed: int = 0, preset: str = "classic", max_yaw: float = 40.0) -> None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}; pass e.g. seed=0")
        if preset not in PRESETS:
            raise ValueError(f"synthetic preset {preset!r} is unknown; use one of {', '.join(PRESETS)}")
        if isinstance(max_yaw, bool) or not isinstance(max_yaw, (int, float, np.floating)) or not 0 <= max_yaw <= 80:
            raise ValueError(f"max_yaw={max_yaw!r} must be a number of degrees in [0, 80], e.g. 40")
        self.seed = int(seed)
        self.preset = preset
        self.max_yaw = float(max_yaw)
        rng = np.random.default_rng((self.seed, _NOISE_STREAM))
        # A small bank of noise tiles; each sample takes a random window of one, cheaper than fresh noise.
        self._noise_bank = rng.standard_normal((_NOISE_BANK_SIZE, _NOISE_TILE, _NOISE_TILE, 3)).astype(np.float32)
        self._identity_cache: dict[int, dict] = {}

    # ------------------------------------------------------------------ identity
    def identity_params(self, identity: int) -> dict:
        """The fixed appearance parameters of one identity (a dict of floats, flags and RGB arrays)."""
        identity = int(identity)
        if identity < 0:
            raise ValueError(f"identity must be a non-negative integer, got {identity}; use identity >= 0")
        cached = self._identity_cache.get(identity)
        if cached is not None:
            return cached
        r = _Uniforms(np.random.default_rng((self.seed, _IDENTITY_STREAM, identity)).random(80))
        p: dict = {}
        p["cx"] = 56.0 + r.u(-2.5, 2.5)
        p["cy"] = 60.0 + r.u(-3.0, 3.0)
        p["face_w"] = r.u(35.0, 48.0)
        p["face_h"] = r.u(48.0, 62.0)
        p["jaw_w"] = r.u(0.62, 0.98)
        p["jaw_drop"] = r.u(4.0, 14.0)
        t = r.u() ** 1.2
        p["skin"] = (1 - t) * _SKIN_LIGHT + t * _SKIN_DARK + np.array([r.u(-12, 12), r.u(-10, 10), r.u(-12, 12)])
        hair_a, hair_b, hair_t = r.pick(len(_HAIR_PALETTE)), r.pick(len(_HAIR_PALETTE)), r.u(0.0, 0.35)
        p["hair"] = (1 - hair_t) * _HAIR_PALETTE[hair_a] + hair_t * _HAIR_PALETTE[hair_b] + r.u(-15, 15)
        p["bald"] = r.flag(0.1)
        p["hairline"] = r.u(14.0, 36.0)
        p["hair_dx"] = r.u(-9.0, 9.0)
        p["hair_w"] = r.u(1.0, 1.3)
        p["hair_h"] = r.u(18.0, 40.0)
        p["hair_angle"] = r.u(-12.0, 12.0)
        p["long_hair"] = r.flag(0.35)
        p["long_hair_len"] = r.u(80.0, 118.0)
        p["long_hair_w"] = r.u(4.0, 12.0)
        p["eye_y"] = 51.5 + r.u(-4.0, 4.0)
        p["eye_dx"] = r.u(14.5, 21.0)
        p["eye_w"] = r.u(5.5, 9.0)
        p["eye_h"] = r.u(0.38, 0.7)
        p["eye_tilt"] = r.u(-9.0, 9.0)
        p["iris_r"] = r.u(0.45, 0.68)
        eye_a, eye_t = r.pick(len(_EYE_PALETTE)), r.u(-20, 20)
        p["iris"] = _EYE_PALETTE[eye_a] + eye_t
        p["lid"] = r.u(0.8, 2.2)
        p["brow_gap"] = r.u(5.0, 11.0)
        p["brow_len"] = r.u(1.0, 1.6)
        p["brow_thick"] = r.u(1.2, 4.2)
        p["brow_angle"] = r.u(-14.0, 14.0)
        p["brow_arch"] = r.u(-1.0, 3.5)
        p["brow_dark"] = r.u(0.5, 1.0)
        p["nose_y"] = 71.5 + r.u(-4.0, 4.0)
        p["nose_w"] = r.u(4.5, 10.5)
        p["nose_len"] = r.u(10.0, 20.0)
        p["nostril"] = r.u(1.2, 2.8)
        p["nose_shade"] = r.u(0.6, 0.85)
        p["mouth_y"] = 92.0 + r.u(-5.0, 4.0)
        p["mouth_w"] = r.u(9.5, 18.0)
        p["lip"] = r.u(1.4, 4.5)
        p["lip_red"] = r.u(0.0, 0.6)
        p["mouth_curve"] = r.u(-2.0, 3.0)
        p["ear_y"] = r.u(0.0, 10.0)
        p["ear_w"] = r.u(4.0, 8.0)
        p["ear_h"] = r.u(8.0, 14.0)
        p["beard"] = r.flag(0.18)
        p["beard_h"] = r.u(0.4, 0.9)
        p["moustache"] = r.flag(0.22)
        p["glasses"] = r.flag(0.12)
        p["glasses_r"] = r.u(8.0, 12.0)
        p["glasses_dark"] = r.u(0.0, 0.6)
        p["marks"] = [(r.u(-30.0, 30.0), r.u(-20.0, 40.0), r.u(0.8, 2.4), r.u(0.35, 0.8)) for _ in range(r.pick(5))]
        if len(self._identity_cache) >= 4096:
            self._identity_cache.clear()
        self._identity_cache[identity] = p
        return p

    # ------------------------------------------------------------------ render
    def render(self, identity: int, sample: int) -> np.ndarray:
        """One sample of one identity: uint8 (112, 112, 3) RGB."""
        if isinstance(sample, bool) or int(sample) < 0:
            raise ValueError(f"sample must be a non-negative integer, got {sample!r}; use sample >= 0")
        p = self.identity_params(identity)
        r = _Uniforms(np.random.default_rng((self.seed, _SAMPLE_STREAM, int(identity), int(sample))).random(64))
        img = np.empty((FACE_SIZE, FACE_SIZE, 3), np.uint8)
        img[:] = _colour(np.array([r.u(20, 235), r.u(20, 235), r.u(20, 235)]))
        self._draw_head(img, p, r)
        self._draw_features(img, p, r)
        if self.preset == "classic":
            return self._degrade(img, r)
        h = _Uniforms(np.random.default_rng((self.seed, _HARD_STREAM, int(identity), int(sample))).random(32))
        self._occlude(img, p, h)
        img = self._turn_head(img, p, h)
        return self._harsh_light(self._degrade(img, r), h)

    def _occlude(self, img: np.ndarray, p: dict, h: _Uniforms) -> None:
        """Face mask over nose and mouth (20%), sunglasses (12%), a hand-sized blob anywhere on the face (15%)."""
        cx, fw = p["cx"], p["face_w"]
        if h.flag(0.2):
            colour = _colour(np.array([h.u(150, 250), h.u(150, 250), h.u(150, 250)]))
            top, bottom = p["nose_y"] - h.u(2.0, 8.0), p["mouth_y"] + h.u(10.0, 18.0)
            pts = [
                _pt(cx - fw * 0.95, top + 3),
                _pt(cx + fw * 0.95, top + 3),
                _pt(cx + fw * 0.7, bottom),
                _pt(cx - fw * 0.7, bottom),
            ]
            cv2.fillPoly(img, [np.array(pts, np.int32)], colour, _AA, _SHIFT)
        else:
            h.u(), h.u(), h.u(), h.u(), h.u()
        if h.flag(0.12):
            for side in (-1.0, 1.0):
                _ellipse(img, cx + side * p["eye_dx"], p["eye_y"], h.u(9.0, 13.0), h.u(6.0, 9.0), 0, (20, 20, 25))
        else:
            h.u(), h.u(), h.u(), h.u()
        if h.flag(0.15):
            blob = _colour(p["skin"] * h.u(0.6, 1.2))
            _ellipse(img, cx + h.u(-fw, fw), h.u(35.0, 100.0), h.u(10.0, 22.0), h.u(8.0, 18.0), h.u(0, 180), blob)

    def _turn_head(self, img: np.ndarray, p: dict, h: _Uniforms) -> np.ndarray:
        """Rotate the face plane by yaw in [-max_yaw, max_yaw] and pitch in [-max_yaw/2, max_yaw/2] and project it."""
        yaw = math.radians(self.max_yaw * h.u(-1.0, 1.0))
        pitch = math.radians(0.5 * self.max_yaw * h.u(-1.0, 1.0))
        if yaw == 0.0 and pitch == 0.0:
            return img
        cx, cy, focal = p["cx"], p["cy"], 160.0
        src = np.array([[0, 0], [FACE_SIZE, 0], [FACE_SIZE, FACE_SIZE], [0, FACE_SIZE]], np.float32)
        dst = []
        for x, y in src:
            px, py, pz = x - cx, y - cy, 0.0
            px, pz = px * math.cos(yaw) + pz * math.sin(yaw), -px * math.sin(yaw) + pz * math.cos(yaw)
            py, pz = py * math.cos(pitch) - pz * math.sin(pitch), py * math.sin(pitch) + pz * math.cos(pitch)
            depth = focal / (focal + pz)
            dst.append([cx + px * depth, cy + py * depth])
        matrix = cv2.getPerspectiveTransform(src, np.array(dst, np.float32))
        return cv2.warpPerspective(
            img, matrix, (FACE_SIZE, FACE_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )

    def _harsh_light(self, img: np.ndarray, h: _Uniforms) -> np.ndarray:
        """Side light (60%: one side down to 15-60% brightness) and exposure from 0.55x to 1.4x."""
        side = h.flag(0.6)
        low, theta, exposure = h.u(0.15, 0.6), h.u(0.0, 2 * math.pi), h.u(0.55, 1.4)
        ramp = np.linspace(-1.0, 1.0, FACE_SIZE, dtype=np.float32)
        along = math.cos(theta) * ramp[None, :] + math.sin(theta) * ramp[:, None]
        gain = (low + (1.0 - low) * np.clip(0.5 + 0.5 * along, 0.0, 1.0)) if side else np.ones_like(along)
        return np.clip(img.astype(np.float32) * (gain * exposure)[:, :, None], 0, 255).astype(np.uint8)

    def _draw_head(self, img: np.ndarray, p: dict, r: _Uniforms) -> None:
        cx, cy, fw, fh = p["cx"], p["cy"], p["face_w"], p["face_h"]
        skin, hair = _colour(p["skin"]), _colour(p["hair"])
        # clothes and neck
        shirt = _colour(np.array([r.u(10, 240), r.u(10, 240), r.u(10, 240)]))
        cv2.rectangle(img, _pt(0, 104), _pt(FACE_SIZE, FACE_SIZE + 4), shirt, -1, _AA, _SHIFT)
        neck = _colour(p["skin"] * 0.85)
        cv2.rectangle(img, _pt(cx - fw * 0.45, cy + fh * 0.5), _pt(cx + fw * 0.45, 112), neck, -1, _AA, _SHIFT)
        tousle = r.u(-2.5, 2.5)
        if p["long_hair"] and not p["bald"]:
            half = fw + p["long_hair_w"]
            top = cy - fh * 0.4
            bottom = p["long_hair_len"] + tousle
            cv2.rectangle(img, _pt(cx - half, top), _pt(cx + half, bottom), hair, -1, _AA, _SHIFT)
        # ears
        ear = _colour(p["skin"] * 0.9)
        for side in (-1.0, 1.0):
            _ellipse(img, cx + side * fw * 0.97, p["eye_y"] + p["ear_y"], p["ear_w"], p["ear_h"], 0, ear)
        # face: cranium ellipse plus a narrower, lower jaw ellipse
        _ellipse(img, cx, cy, fw, fh * 0.8, 0, skin)
        _ellipse(img, cx, cy + p["jaw_drop"], fw * p["jaw_w"], fh * 0.85, 0, skin)
        # hair cap, its lower edge at the hairline
        if not p["bald"]:
            ry = p["hair_h"]
            cap_y = p["hairline"] + tousle - ry
            _ellipse(img, cx + p["hair_dx"], cap_y, fw * p["hair_w"], ry + 6, p["hair_angle"], hair)
            _ellipse(img, cx, cy - fh * 0.55 + tousle, fw * 1.02, fh * 0.45, 0, hair, -1, 180, 360)
        for mx, my, mr, dark in p["marks"]:
            _ellipse(img, cx + mx, cy + my, mr, mr, 0, _colour(p["skin"] * dark))
        if p["beard"]:
            beard = _colour(p["hair"] * 0.9 + p["skin"] * 0.1)
            beard_y, beard_w = cy + p["jaw_drop"] + fh * 0.2, fw * p["jaw_w"] * 0.95
            _ellipse(img, cx, beard_y, beard_w, fh * 0.65 * p["beard_h"], 0, beard, -1, 0, 180)

    def _draw_features(self, img: np.ndarray, p: dict, r: _Uniforms) -> None:
        cx = p["cx"]
        ey, edx, ew = p["eye_y"], p["eye_dx"], p["eye_w"]
        blink = r.u(0.35, 1.15) if r.flag(0.3) else 1.0
        gaze_x, gaze_y = r.u(-1.8, 1.8), r.u(-0.8, 0.8)
        brow_raise = r.u(-2.5, 2.5)
        smile = r.u(-3.0, 3.5)
        mouth_open = r.u(1.0, 5.0) if r.flag(0.25) else 0.0
        iris = _colour(p["iris"])
        lid = _colour(p["skin"] * 0.55)
        brow = _colour(p["hair"] * p["brow_dark"] + p["skin"] * (1 - p["brow_dark"]) * 0.5)
        for side in (-1.0, 1.0):
            ex = cx + side * edx
            eh = ew * p["eye_h"] * blink
            tilt = side * p["eye_tilt"]
            _ellipse(img, ex, ey, ew, eh, tilt, (235, 232, 225))
            ir = ew * p["iris_r"]
            if eh > 1.2:
                _ellipse(img, ex + gaze_x, ey + gaze_y, ir, min(ir, eh), 0, iris)
                _ellipse(img, ex + gaze_x, ey + gaze_y, ir * 0.45, min(ir * 0.45, eh * 0.6), 0, (15, 12, 12))
            _ellipse(img, ex, ey, ew, eh, tilt, lid, max(1, int(round(p["lid"]))), 180, 360)
            # brow: three-point polyline, rotated and arched
            by = ey - p["brow_gap"] - ew * p["eye_h"]
            half = ew * p["brow_len"]
            a = math.radians(p["brow_angle"]) * side
            pts = []
            for t in (-1.0, 0.0, 1.0):
                x = t * half
                y = -p["brow_arch"] * (1 - t * t) - brow_raise
                pts.append(_pt(ex + x * math.cos(a) - y * math.sin(a), by + x * math.sin(a) + y * math.cos(a)))
            cv2.polylines(img, [np.array(pts, np.int32)], False, brow, max(1, int(round(p["brow_thick"]))), _AA, _SHIFT)
        # nose: bridge shade and nostrils
        shade = _colour(p["skin"] * p["nose_shade"])
        ny, nw = p["nose_y"], p["nose_w"]
        cv2.line(img, _pt(cx + 1.5, ny - p["nose_len"]), _pt(cx + nw * 0.35, ny - 1), shade, 1, _AA, _SHIFT)
        _ellipse(img, cx, ny + 1, nw, p["nostril"] + 1, 0, shade, 1, 0, 180)
        nostril = _colour(p["skin"] * 0.4)
        for side in (-1.0, 1.0):
            _ellipse(img, cx + side * nw * 0.45, ny + 1.2, p["nostril"], p["nostril"] * 0.6, 0, nostril)
        if p["moustache"]:
            half, y = p["mouth_w"] * 0.9, p["mouth_y"] - 4
            cv2.line(img, _pt(cx - half, y), _pt(cx + half, y), _colour(p["hair"]), 3, _AA, _SHIFT)
        # mouth: a curved polyline; an open mouth adds a dark ellipse
        my, mw = p["mouth_y"], p["mouth_w"]
        curve = p["mouth_curve"] + smile
        red = p["lip_red"]
        lip = _colour(p["skin"] * (0.75 - 0.25 * red) + np.array([255.0, 40.0, 50.0]) * 0.25 * red)
        if mouth_open > 0:
            _ellipse(img, cx, my + mouth_open * 0.5, mw * 0.8, mouth_open, 0, (60, 20, 25))
        pts = [_pt(cx + t * mw, my - curve * (1 - t * t) + curve * 0.3) for t in (-1.0, -0.5, 0.0, 0.5, 1.0)]
        cv2.polylines(img, [np.array(pts, np.int32)], False, lip, max(1, int(round(p["lip"]))), _AA, _SHIFT)
        if p["glasses"]:
            frame = (30, 30, 35)
            gr = p["glasses_r"]
            for side in (-1.0, 1.0):
                if p["glasses_dark"] > 0.45:
                    _ellipse(img, cx + side * edx, ey, gr, gr * 0.8, 0, (40, 40, 50))
                _ellipse(img, cx + side * edx, ey, gr, gr * 0.8, 0, frame, 2)
            cv2.line(img, _pt(cx - edx + gr, ey), _pt(cx + edx - gr, ey), frame, 2, _AA, _SHIFT)

    def _degrade(self, img: np.ndarray, r: _Uniforms) -> np.ndarray:
        size = FACE_SIZE
        # imperfect alignment
        angle, scale = r.u(-6.0, 6.0), r.u(0.94, 1.06)
        m = cv2.getRotationMatrix2D((size / 2 + r.u(-1, 1), size / 2 + r.u(-1, 1)), angle, scale)
        m[0, 2] += r.u(-3.0, 3.0)
        m[1, 2] += r.u(-3.0, 3.0)
        img = cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        # occluding patch (hand, microphone, caption)
        if r.flag(0.15):
            w, h = r.u(18, 50), r.u(14, 40)
            x0, y0 = r.u(-10, size - 10), r.u(30, size - 5)
            patch = _colour(np.array([r.u(0, 255), r.u(0, 255), r.u(0, 255)]))
            cv2.rectangle(img, _pt(x0, y0), _pt(x0 + w, y0 + h), patch, -1, _AA, _SHIFT)
        # low resolution
        if r.flag(0.3):
            low = int(r.u(28, 72))
            small = cv2.resize(img, (low, low), interpolation=cv2.INTER_AREA)
            img = cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)
        # photometric: one LUT per channel for gain (colour cast), gamma, contrast and brightness
        gamma, contrast, bright = r.u(0.75, 1.35), r.u(0.75, 1.25), r.u(-25, 25)
        gains = np.array([r.u(0.86, 1.14), r.u(0.9, 1.1), r.u(0.86, 1.14)])
        x = np.arange(256, dtype=np.float64)[:, None] / 255.0
        lut = ((x**gamma) * gains[None, :] * 255.0 - 127.5) * contrast + 127.5 + bright
        img = cv2.LUT(img, np.clip(lut, 0, 255).astype(np.uint8).reshape(256, 1, 3))
        # directional shading, sensor noise and blur in float
        strength = r.u(0.0, 0.45)
        theta = r.u(0.0, 2 * math.pi)
        gx, gy = math.cos(theta) * strength, math.sin(theta) * strength
        corners = np.array([[1 - gx - gy, 1 + gx - gy], [1 - gx + gy, 1 + gx + gy]], np.float32) * 0.5 + 0.5
        shading = cv2.resize(corners, (size, size), interpolation=cv2.INTER_LINEAR)
        out = img.astype(np.float32) * shading[:, :, None]
        if r.flag(0.5):
            sigma = r.u(0.3, 1.6)
            out = cv2.GaussianBlur(out, (0, 0), sigma)
        noise_sigma = r.u(0.0, 9.0)
        tile = self._noise_bank[r.pick(_NOISE_BANK_SIZE)]
        ox, oy = r.pick(_NOISE_TILE - size + 1), r.pick(_NOISE_TILE - size + 1)
        out += tile[oy : oy + size, ox : ox + size] * noise_sigma
        img = np.clip(out, 0, 255).astype(np.uint8)
        if r.flag(0.2):
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(r.u(15, 70))])
            if ok:
                img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        return img
