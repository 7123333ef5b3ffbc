"""A planned video (:class:`Scene`) and the drawing of its frames (:meth:`Scene.render`).

A frame is drawn back to front: the panned background, the unannotated people far
away, the annotated people far to near (each person's parts far to near, so turning
swaps which side is in front), then the occluders; lighting flicker, sensor noise and
a light blur follow. The ground truth is measured on the same drawing: a keypoint is
the centre of the disc that ends the drawn limb at that joint, and whether it is seen,
or what hides it (``HIDDEN_BY``), is read from the part-label image
(:func:`_measure_keypoints`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageFilter

from vidpose.data.skeleton import POSETRACK
from vidpose.data.synthetic.appearance import _PART_TEXTURE, _Appearance
from vidpose.data.synthetic.body import (
    _HEAD_DEPTH,
    _HEAD_RADII,
    _NECK_DEPTH,
    _PART,
    _RADIUS,
    _REVEALS,
    _TORSO_DEPTH,
    HIDDEN_BY,
    NUM_JOINTS,
    NUM_PARTS,
    OCCLUDER_LABEL,
    _body_points,
)
from vidpose.data.synthetic.motion import _PersonTrack
from vidpose.data.synthetic.occluders import _Occluder, _occluder_shape
from vidpose.data.synthetic.raster import _Canvas, _rasterise, _Shape, _texture_window


@dataclass
class _ProjectedBody:
    """A person's points in image pixels, and the depth (towards the camera, body heights)."""

    uv: dict[str, np.ndarray]
    depth: dict[str, float]
    yaw: float
    height: float


def _project(track: _PersonTrack, t: int, offset: np.ndarray | None = None) -> _ProjectedBody:
    """The body of frame ``t`` in image pixels (``offset`` is subtracted from the root)."""
    appearance = track.appearance
    points = _body_points(track.poses[t], appearance.build, appearance.limbs)
    yaw, body = float(track.yaw[t]), float(track.height[t])
    root = track.root[t] - (offset if offset is not None else 0.0)
    cos, sin = math.cos(yaw), math.sin(yaw)
    uv, depth = {}, {}
    for name, (x, y, z) in points.items():
        # Rotation about the vertical axis: forward (z) goes to image right at yaw
        # +pi/2, and the person's left (x) faces away from the camera then.
        rotated_x, rotated_z = x * cos + z * sin, -x * sin + z * cos
        uv[name] = root + body * np.array([rotated_x, -y])
        depth[name] = rotated_z
    return _ProjectedBody(uv=uv, depth=depth, yaw=yaw, height=body)


def _body_parts(body: _ProjectedBody, build: float) -> list[tuple[float, str, _Shape]]:
    """(depth, part name, shape) of every part, unsorted."""
    uv, depth, scale = body.uv, body.depth, body.height * build

    def radius(name: str) -> float:
        return max(1.0, _RADIUS[name] * scale)

    def capsule(a: str, b: str, size: str) -> _Shape:
        return _Shape("discs", np.stack([uv[a], uv[b]]), np.array([radius(size)] * 2))

    parts = []
    for side in ("left", "right"):
        for part, a, b in (
            ("thigh", "hip", "knee"), ("shin", "knee", "ankle"), ("foot", "ankle", "toe"),
            ("upper_arm", "shoulder", "elbow"), ("forearm", "elbow", "wrist"),
            ("hand", "wrist", "hand_tip"),
        ):  # fmt: skip
            first, second = f"{side}_{a}", f"{side}_{b}"
            parts.append(
                ((depth[first] + depth[second]) / 2, f"{side}_{part}", capsule(first, second, part))
            )
    torso_points = ["left_shoulder", "right_shoulder", "left_hip", "right_hip", "chest", "belly"]
    torso_radii = [
        "torso_shoulder",
        "torso_shoulder",
        "torso_hip",
        "torso_hip",
        "torso_chest",
        "torso_belly",
    ]
    torso = _Shape(
        "discs",
        np.stack([uv[name] for name in torso_points]),
        np.array([radius(r) for r in torso_radii]),
    )
    parts.append((_TORSO_DEPTH, "torso", torso))
    parts.append((_NECK_DEPTH, "neck", capsule("neck_base", "head_bottom", "neck")))
    head_radii = np.array(_HEAD_RADII) * body.height
    parts.append((_HEAD_DEPTH, "head", _Shape("ellipse", uv["head_centre"][None], head_radii)))
    return parts


def _paint_person(
    canvas: _Canvas,
    track: _PersonTrack,
    t: int,
    person: int | None,
    offset: np.ndarray | None = None,
) -> _ProjectedBody:
    """Draw one person's parts far-to-near; ``person`` None draws an unannotated extra
    (no labels, no silhouette)."""
    body = _project(track, t, offset)
    appearance = track.appearance
    size = appearance.textures["skin"].shape[0]
    origin = body.uv["belly"] - size / 2  # the texture moves with the person
    outline = max(0.6, body.height / 120)
    for depth, name, shape in sorted(_body_parts(body, appearance.build), key=lambda part: part[0]):
        side, _, kind = (
            name.partition("_") if name.startswith(("left", "right")) else ("", "", name)
        )
        # Parts on the far side are in shadow; a per-person tint tells left from right
        # without colour-coding them.
        shade = 1.0 - 0.28 * float(np.clip(-depth / 0.12, 0.0, 1.0))
        if side:
            shade *= 1.0 + appearance.side_tint * (1 if side == "left" else -1)
        label = 1 + person * NUM_PARTS + _PART[name] if person is not None else None
        canvas.paint(
            shape, appearance.textures[_PART_TEXTURE[kind]], origin, shade, label, person, outline
        )
        if name == "head":
            _paint_face(canvas, body, shape, appearance, origin, outline)
    return body


def _paint_face(
    canvas: _Canvas,
    body: _ProjectedBody,
    head: _Shape,
    appearance: _Appearance,
    origin: np.ndarray,
    outline: float,
) -> None:
    """Hair over the back and top of the head, eyes and nose on the side facing the camera."""
    centre, (rx, ry) = head.points[0], head.radii
    facing = math.cos(body.yaw)  # 1: faces the camera, -1: shows the back of the head
    sideways = math.sin(body.yaw)  # + : faces image right
    # The hair ellipse sits up and to the back; seen from behind it covers the head.
    cover = 0.5 + 0.5 * max(0.0, -facing)
    hair_centre = centre + np.array([-sideways * 0.35 * rx, -(1.0 - cover) * 1.1 * ry])
    hair = _Shape("ellipse", hair_centre[None], np.array([rx, ry]) * (0.92 + 0.2 * cover))
    head_window = _rasterise(head, canvas.width, canvas.height)
    hair_window = _rasterise(hair, canvas.width, canvas.height)
    if head_window is not None and hair_window is not None:
        (x0, y0, x1, y1), head_mask = head_window
        (hx0, hy0, hx1, hy1), mask = hair_window
        hair_mask = np.zeros(head_mask.shape, dtype=bool)
        # the hair window, clipped to the head window
        ox0, oy0, ox1, oy1 = max(x0, hx0), max(y0, hy0), min(x1, hx1), min(y1, hy1)
        if ox1 > ox0 and oy1 > oy0:
            hair_mask[oy0 - y0 : oy1 - y0, ox0 - x0 : ox1 - x0] = (
                mask[oy0 - hy0 : oy1 - hy0, ox0 - hx0 : ox1 - hx0] > 0
            )
            hair_mask &= head_mask > 0
            pixels = _texture_window(appearance.textures["hair"], origin, (x0, y0, x1, y1))
            canvas.image[y0:y1, x0:x1][hair_mask] = pixels[hair_mask]
    dot = max(0.6, body.height * 0.009)
    for eye in ("left_eye", "right_eye"):
        if body.depth[eye] > 0.015:
            x, y = body.uv[eye]
            _dot(canvas.image, x, y, dot, appearance.eye_colour)
    if facing > -0.2:
        x, y = body.uv["nose"]
        _dot(canvas.image, x, y, max(1.0, body.height * 0.012), appearance.nose_colour)


def _dot(
    image: np.ndarray, x: float, y: float, radius: float, colour: tuple[int, int, int]
) -> None:
    """A filled disc of ``radius`` pixels centred on (x, y), drawn into the array."""
    height, width = image.shape[:2]
    x0, x1 = max(0, int(math.floor(x - radius))), min(width, int(math.ceil(x + radius)) + 1)
    y0, y1 = max(0, int(math.floor(y - radius))), min(height, int(math.ceil(y + radius)) + 1)
    if x1 <= x0 or y1 <= y0:
        return
    ys, xs = np.mgrid[y0:y1, x0:x1]
    inside = (xs - x) ** 2 + (ys - y) ** 2 <= radius**2 + 0.25
    image[y0:y1, x0:x1][inside] = colour


# A light 3x3 blur (cheaper than GaussianBlur): drawn edges are otherwise crisper than
# any camera's.
_SOFTEN = ImageFilter.Kernel((3, 3), [1, 2, 1, 2, 12, 2, 1, 2, 1], scale=24)


@dataclass
class SyntheticFrame:
    """One rendered frame and its exact ground truth (pixels of this frame).

    Attributes:
        image: [H, W, 3] uint8 RGB.
        keypoints: [P, 17, 3] x, y, v in the PoseTrack slots; v = 1 where the joint is
            seen, 0 where it is hidden (by an occluder, another person or its own
            body); (0, 0, 0) for joints outside the image and for the ear slots.
        boxes: [P, 4] x, y, w, h: tight box of the drawn person (occluded parts
            included), clipped to the image.
        head_boxes: [P, 4] x, y, w, h: box of the head ellipse.
        areas: [P] pixels covered by the person (occluded parts included).
        labels: [H, W] int32 part labels: 0 background, -1 occluder, 1 + p * NUM_PARTS
            + part index (``PARTS``) for person p.
        hidden_by: [P, 17] int cause codes (index into ``HIDDEN_BY``): 0 for seen or
            unannotated joints, else what covers the joint.
    """

    image: np.ndarray
    keypoints: np.ndarray
    boxes: np.ndarray
    head_boxes: np.ndarray
    areas: np.ndarray
    labels: np.ndarray
    hidden_by: np.ndarray


@dataclass
class Scene:
    """A planned video; :meth:`render` draws frame ``t`` (0 <= t < num_frames).

    Persons and occluders move in image pixels; the background, the unannotated
    people far away and the ignore regions over them move with a slow camera pan.
    """

    size: tuple[int, int]  # width, height
    num_frames: int
    background: np.ndarray  # [H + 2m, W + 2m, 3] uint8, wider than the view by the pan margin m
    pan: np.ndarray  # [F, 2] integer offset of the view into the background
    persons: list[_PersonTrack]
    extras: list[_PersonTrack] = field(default_factory=list)  # in background pixels
    occluders: list[_Occluder] = field(default_factory=list)
    ignore_polygons: list[np.ndarray] = field(default_factory=list)  # [N, 2] background pixels
    noise: np.ndarray | None = None  # [H + 16, W + 16, 3] int8 sensor noise, cropped per frame
    noise_offsets: np.ndarray | None = None  # [F, 2]
    brightness: np.ndarray | None = None  # [F] lighting flicker

    def ignore_regions(self, t: int) -> list[np.ndarray]:
        """Ignore polygons of frame ``t``: each [N, 2] x, y in image pixels."""
        return [polygon - self.pan[t] for polygon in self.ignore_polygons]

    def render(self, t: int) -> SyntheticFrame:
        """Draw frame ``t`` and measure its ground truth."""
        if not 0 <= t < self.num_frames:
            raise IndexError(f"frame {t} is outside the scene's {self.num_frames} frames")
        width, height = self.size
        px, py = (int(v) for v in self.pan[t])
        canvas = _Canvas(
            self.background[py : py + height, px : px + width].copy(), len(self.persons)
        )
        for extra in self.extras:
            _paint_person(canvas, extra, t, None, offset=self.pan[t])
        # Far to near: lower feet in the picture are closer to the camera.
        order = sorted(
            range(len(self.persons)),
            key=lambda p: self.persons[p].root[t, 1] + 0.49 * self.persons[p].height[t],
        )
        bodies: dict[int, _ProjectedBody] = {}
        for person in order:
            bodies[person] = _paint_person(canvas, self.persons[person], t, person)
        for occluder in self.occluders:
            centre = occluder.centre + occluder.velocity * t
            shape = _occluder_shape(occluder, centre)
            origin = centre - occluder.texture.shape[0] / 2
            canvas.paint(shape, occluder.texture, origin, 1.0, OCCLUDER_LABEL)

        image = canvas.image.astype(np.float32)
        if self.brightness is not None:
            image *= self.brightness[t]
        if self.noise is not None and self.noise_offsets is not None:
            nx, ny = self.noise_offsets[t]
            image += self.noise[ny : ny + height, nx : nx + width]
        picture = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
        picture = picture.filter(_SOFTEN)

        count = len(self.persons)
        keypoints = np.zeros((count, NUM_JOINTS, 3))
        hidden_by = np.zeros((count, NUM_JOINTS), dtype=np.int64)
        boxes, head_boxes, areas = np.zeros((count, 4)), np.zeros((count, 4)), np.zeros(count)
        for person, body in bodies.items():
            keypoints[person], hidden_by[person] = _measure_keypoints(body, canvas.labels, person)
            head = body.uv["head_centre"]
            radii = np.array(_HEAD_RADII) * body.height
            head_boxes[person] = [*(head - radii), *(2 * radii)]
            silhouette = canvas.silhouettes[person]
            areas[person] = silhouette.sum()
            if areas[person]:
                rows, columns = (
                    np.flatnonzero(silhouette.any(axis=1)),
                    np.flatnonzero(silhouette.any(axis=0)),
                )
                boxes[person] = [
                    columns[0],
                    rows[0],
                    columns[-1] - columns[0] + 1,
                    rows[-1] - rows[0] + 1,
                ]
        return SyntheticFrame(
            image=np.asarray(picture),
            keypoints=keypoints,
            boxes=boxes,
            head_boxes=head_boxes,
            areas=areas,
            labels=canvas.labels,
            hidden_by=hidden_by,
        )


def _measure_keypoints(
    body: _ProjectedBody, labels: np.ndarray, person: int
) -> tuple[np.ndarray, np.ndarray]:
    """[17, 3] x, y, v of a drawn person, read against the part-label image, and [17]
    the ``HIDDEN_BY`` code of each joint."""
    height, width = labels.shape
    keypoints = np.zeros((NUM_JOINTS, 3))
    causes = np.zeros(NUM_JOINTS, dtype=np.int64)
    for slot, name in enumerate(POSETRACK.joint_names):
        if name not in body.uv or not _REVEALS[slot].any():
            continue  # the ear slots: never annotated in PoseTrack
        x, y = body.uv[name]
        if not (0 <= x < width and 0 <= y < height):
            continue  # outside the image: not annotated, as in PoseTrack
        label = int(labels[min(height - 1, int(round(y))), min(width - 1, int(round(x)))])
        owner, part = divmod(label - 1, NUM_PARTS)
        seen = label >= 1 and owner == person and bool(_REVEALS[slot, part])
        if name == "nose" and math.cos(body.yaw) <= -0.2:
            seen = False  # the nose is only drawn on a head that does not face away
        keypoints[slot] = (x, y, 1.0 if seen else 0.0)
        if not seen:
            if label == OCCLUDER_LABEL:
                causes[slot] = HIDDEN_BY.index("occluder")
            elif label >= 1 and owner != person:
                causes[slot] = HIDDEN_BY.index("another person")
            else:
                causes[slot] = HIDDEN_BY.index("own body")
    return keypoints, causes
