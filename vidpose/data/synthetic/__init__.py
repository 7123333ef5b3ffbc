"""Procedural PoseTrack21-format videos with exact ground truth.

A scene is planned once (:func:`make_scene`: background, people's motion, occluders,
ignore regions) and rendered frame by frame (:meth:`Scene.render`), so videos of any
length stream through memory. :func:`generate_dataset` writes a whole dataset:

    images/{train,val}/<video>/<6-digit frame>.jpg
    posetrack_data/{train,val}/<video>.json     PoseTrack21 layout, every field
    videos/{train,val}/<video>.mp4              the same frames as H.264
    coco/{train,val}.json                       the labeled frames in COCO keypoint format
    hidden_by/{train,val}.json                  why each hidden joint is hidden (see below)

People are articulated 2D projections of a small 3D stick body (x to the person's
left, y up, z forward, in body heights), rotated about the vertical axis by their
heading and drawn as textured capsules far-to-near, so turning swaps which side is in
front. Walkers follow a gait cycle (hip/knee angles, arm swing opposite to the legs,
pelvis bob), stand-ers turn and gesture; everyone's scale follows a ground plane
(lower in the picture = closer = larger). Occluders cross people and people cross
each other, so some joints are hidden in one frame and visible in its neighbours.

Ground truth is exact: every keypoint is the centre of the disc that ends the drawn
limb at that joint (nose: the centre of the nose dot; head top / bottom: just inside
the head). A part-label image rendered alongside the picture decides visibility: a
joint has flag 1 when the pixel under it belongs to one of the person's parts that
meet at that joint, else 0 (still annotated, as in PoseTrack). Joints outside the
image are unannotated (0, 0, 0); the ear slots are always (0, 0, 0).

What hides a joint is known too, which PoseTrack's flag cannot say: the part label
under it is an occluder, another person, or the person's own body (a far-side limb
behind the torso, a nose facing away). ``hidden_by/<split>.json`` lists, for every
labeled person, the cause code of each joint (``HIDDEN_BY``), keyed by image id and
track id; benchmarks score occluded joints by cause with it (:func:`read_hidden_by`).

Everything random comes from one numpy Generator per video, seeded by
(seed, split, video index): the same seed gives the same bytes.

The package, one reason to change per module (a module imports only those above it)::

    body.py        the stick body: parts, labels, which parts reveal a joint, HIDDEN_BY
    appearance.py  textures and colours: clothes, skin, hair; the background
    motion.py      a person's trajectory: gait, turns, gestures on a ground plane
    raster.py      shapes to pixels; the canvas with its part labels and silhouettes
    occluders.py   occluders: when and where one crosses a person, its shape
    render.py      Scene and its frames; the ground truth measured on the drawing
    scene.py       make_scene: sampling a video's plan
    export.py      the dataset on disk: generate_dataset, read_hidden_by

Names with a leading underscore are shared between these modules, not part of the API
below.
"""

from vidpose.data.synthetic.body import HIDDEN_BY, NUM_JOINTS, NUM_PARTS, OCCLUDER_LABEL, PARTS
from vidpose.data.synthetic.export import (
    FPS,
    SPLITS,
    generate_dataset,
    read_hidden_by,
    validation_labeled,
    video_name,
)
from vidpose.data.synthetic.render import Scene, SyntheticFrame
from vidpose.data.synthetic.scene import make_scene

__all__ = [
    "FPS",
    "HIDDEN_BY",
    "NUM_JOINTS",
    "NUM_PARTS",
    "OCCLUDER_LABEL",
    "PARTS",
    "SPLITS",
    "Scene",
    "SyntheticFrame",
    "generate_dataset",
    "make_scene",
    "read_hidden_by",
    "validation_labeled",
    "video_name",
]
