"""Public pose weights by name: ViTPose checkpoints fetched and imported on first use.

``vidpose import-weights SRC --out CKPT.safetensors`` and ``vidpose extract
--checkpoint NAME`` accept the names of :data:`POSE_WEIGHTS` (mmpose 1.x's ViTPose
checkpoints, COCO-17, 256x192, classic decoder; Apache-2.0) as well as files. A name
is fetched into the cache (``vidpose.inference.downloads``: OpenMMLab's file names
carry the first 8 hex digits of the file's SHA-256, checked on download) and imported
once by ``vidpose.models.vitpose_import`` into ``<cache>/<name>.safetensors``.
"""

from __future__ import annotations

from pathlib import Path

from vidpose.inference.downloads import RemoteFile, cache_dir, fetch
from vidpose.models.vitpose_import import ViTPoseImport, import_vitpose

_MMPOSE = "https://download.openmmlab.com/mmpose/v1/body_2d_keypoint/topdown_heatmap/coco"


def _vitpose(size: str, digits: str, note: str) -> RemoteFile:
    name = f"td-hm_ViTPose-{size}_8xb64-210e_coco-256x192-{digits}_20230314.pth"
    return RemoteFile(
        name, f"{_MMPOSE}/{name}", sha256_prefix=digits, license="Apache-2.0", note=note
    )


# COCO val2017 AP with a detector of 56.4 person AP, as mmpose reports them
# (configs/body_2d_keypoint/topdown_heatmap/coco/vitpose_coco.md).
POSE_WEIGHTS: dict[str, RemoteFile] = {
    "vitpose-s": _vitpose("small", "62d7a712", "ViTPose-S, COCO AP 73.9"),
    "vitpose-b": _vitpose("base", "216eae50", "ViTPose-B, COCO AP 75.7"),
    "vitpose-l": _vitpose("large", "53609f55", "ViTPose-L, COCO AP 78.2"),
    "vitpose-h": _vitpose("huge", "e32adcd4", "ViTPose-H, COCO AP 78.8"),
}


def import_weights(
    source: str, out: str | Path, *, num_heads: int | None = None
) -> tuple[Path, ViTPoseImport]:
    """A ViTPose checkpoint (a file, or a name of :data:`POSE_WEIGHTS`, fetched first)
    written as a vidpose checkpoint at ``out``.

    Raises:
        FileNotFoundError: neither a file nor a known name.
        vidpose.inference.downloads.DownloadError: a name that cannot be fetched.
        vidpose.models.vitpose_import.WeightsImportError: not a ViTPose checkpoint.
    """
    if source in POSE_WEIGHTS:
        path = fetch(POSE_WEIGHTS[source])
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(
                f"{source}: no such file and not a known name ({', '.join(POSE_WEIGHTS)})"
            )
    return import_vitpose(path, out, num_heads=num_heads)


def resolve_checkpoint(spec: str) -> Path:
    """A vidpose checkpoint path for ``--checkpoint SPEC``: the file itself, or for a name
    of :data:`POSE_WEIGHTS` its import in the cache (fetched and imported the first
    time)."""
    if spec not in POSE_WEIGHTS or Path(spec).exists():
        return Path(spec)
    imported = cache_dir() / f"{spec}.safetensors"
    if not imported.is_file():
        import_weights(spec, imported)
    return imported
