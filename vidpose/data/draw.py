"""Drawing poses on images with PIL; limbs and colours come from the Skeleton.

Joints that are present and confident are filled discs; present but unconfident ones
(ground truth annotated as occluded, predictions under the threshold) are rings, and
their limbs are drawn thin. Track ids get a colour of their own for the box and label.

It sits beside the skeleton it draws so that everything above can use it: the
extraction overlay (``vidpose.inference.outputs``) as well as the visualisations.
"""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vidpose.data.records import PersonAnnotation
from vidpose.data.skeleton import Skeleton


def track_colour(track_id: int) -> tuple[int, int, int]:
    """A saturated RGB colour for a track id; neighbouring ids get distant hues (golden
    ratio steps around the hue circle)."""
    hue = (track_id * 0.618033988749895) % 1.0
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(red * 255), int(green * 255), int(blue * 255)


def draw_pose(
    image: np.ndarray,
    keypoints: np.ndarray,
    scores: np.ndarray,
    skeleton: Skeleton,
    track_id: int | None = None,
    *,
    threshold: float = 0.5,
    present: np.ndarray | None = None,
    box: np.ndarray | None = None,
    radius: float | None = None,
    line_width: int | None = None,
) -> np.ndarray:
    """Draw one person's pose.

    Args:
        image: [H, W, 3] uint8 RGB (not modified).
        keypoints: [K, 2] x, y in pixels of ``image``.
        scores: [K] confidences or visibility flags; ``>= threshold`` is confident.
        skeleton: joint count, limbs and colours.
        track_id: if given, the box (or the pose's extent) gets a label in the track colour.
        threshold: confidence threshold.
        present: [K] bool, joints that exist at all (e.g. ``PersonAnnotation.annotated``);
            default: the confident ones. Present, unconfident joints are drawn as rings.
        box: [4] x, y, w, h to outline in the track colour (or white without a track id).
        radius, line_width: joint radius and limb width in pixels; default from the
            image size.

    Returns:
        [H, W, 3] uint8 RGB, a drawn copy.
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    num_joints = skeleton.num_joints
    if keypoints.shape != (num_joints, 2) or scores.shape != (num_joints,):
        raise ValueError(
            f"draw_pose: expected keypoints [{num_joints}, 2] and scores [{num_joints}] for "
            f"skeleton {skeleton.name!r}, got {keypoints.shape} and {scores.shape}"
        )
    confident = (scores >= threshold) & np.all(np.isfinite(keypoints), axis=1)
    present = confident if present is None else np.asarray(present, dtype=bool) | confident
    canvas = Image.fromarray(np.asarray(image, dtype=np.uint8).copy())
    draw = ImageDraw.Draw(canvas)
    size = min(canvas.size)
    radius = radius if radius is not None else max(2.0, size / 110)
    line_width = line_width if line_width is not None else max(1, round(radius * 0.8))
    label_colour = track_colour(track_id) if track_id is not None else (255, 255, 255)

    if box is not None:
        x, y, w, h = np.asarray(box, dtype=np.float64)
        draw.rectangle((x, y, x + w, y + h), outline=label_colour, width=max(1, line_width // 2))

    for (a, b), colour in zip(skeleton.limbs, skeleton.limb_colors, strict=True):
        if present[a] and present[b]:
            width = line_width if confident[a] and confident[b] else max(1, line_width // 2)
            draw.line([tuple(keypoints[a]), tuple(keypoints[b])], fill=colour, width=width)

    for joint in np.flatnonzero(present):
        x, y = keypoints[joint]
        circle = (x - radius, y - radius, x + radius, y + radius)
        colour = skeleton.joint_colors[joint]
        if confident[joint]:
            draw.ellipse(circle, fill=colour, outline=(0, 0, 0), width=1)
        else:
            draw.ellipse(circle, outline=colour, width=max(1, line_width // 2 + 1))

    if track_id is not None and (box is not None or present.any()):
        if box is not None:
            anchor = (box[0], box[1])
        else:
            anchor = (keypoints[present, 0].min(), keypoints[present, 1].min() - radius)
        font = ImageFont.load_default(size=max(10, round(size / 24)))
        text = str(track_id)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        x, y = anchor[0], anchor[1] - (bottom - top) - 4
        draw.rectangle((x, y, x + right - left + 4, y + bottom - top + 4), fill=label_colour)
        draw.text((x + 2 - left, y + 2 - top), text, fill=(0, 0, 0), font=font)
    return np.asarray(canvas)


def draw_person(
    image: np.ndarray,
    person: PersonAnnotation,
    skeleton: Skeleton,
    *,
    show_box: bool = True,
    radius: float | None = None,
    line_width: int | None = None,
) -> np.ndarray:
    """Draw a ground-truth person: annotated joints, visibility flag >= 1 filled, flag 0
    (occluded) as rings, its box and track id (track ids < 0 are not labelled)."""
    track_id = person.track_id if person.track_id >= 0 else None
    return draw_pose(
        image,
        person.keypoints[:, :2],
        person.keypoints[:, 2],
        skeleton,
        track_id,
        threshold=0.5,
        present=person.annotated,
        box=person.bbox if show_box else None,
        radius=radius,
        line_width=line_width,
    )


def draw_people(
    image: np.ndarray,
    persons: list[PersonAnnotation],
    skeleton: Skeleton,
    *,
    scale: float = 1.0,
    show_box: bool = True,
    radius: float | None = None,
    line_width: int | None = None,
) -> np.ndarray:
    """Draw every person of a frame with :func:`draw_person`.

    Args:
        image: [H, W, 3] uint8 RGB; when it is the original frame resized by ``scale``,
            keypoints and boxes (pixels of the original frame) are scaled to match.
        persons: the frame's people.
        scale: drawing-image pixels per original-frame pixel.

    Returns:
        [H, W, 3] uint8 RGB, a drawn copy.
    """
    out = np.asarray(image, dtype=np.uint8)
    for person in persons:
        scaled = PersonAnnotation(
            track_id=person.track_id,
            bbox=np.asarray(person.bbox, dtype=np.float64) * scale,
            keypoints=np.concatenate([person.keypoints[:, :2] * scale, person.keypoints[:, 2:]], 1),
            head_box=person.head_box,
        )
        out = draw_person(
            out, scaled, skeleton, show_box=show_box, radius=radius, line_width=line_width
        )
    return out
