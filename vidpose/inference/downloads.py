"""Public model files fetched on first use into a cache folder, with checksums.

A :class:`RemoteFile` names a public file (a detector's ONNX, a ViTPose checkpoint),
where it comes from and what it must hash to. :func:`fetch` returns its path in the
cache, downloading it the first time:

- the cache folder is ``$VIDPOSE_CACHE``, else ``$XDG_CACHE_HOME/vidpose``, else
  ``~/.cache/vidpose``;
- the download goes to a temporary file in that folder and is renamed into place only
  once complete and verified, so an interrupted download never leaves a file that
  looks finished;
- checksums: a file with a known SHA-256 is verified against it. Where none is known
  (vidpose could not verify one offline when the registry was written; none is ever
  made up), the first download's SHA-256 is recorded beside the file
  (``<file>.sha256``, trust on first use) and every later use is verified against the
  record, so a file that changed on disk is caught. OpenMMLab names its checkpoints
  with the first 8 hex digits of their SHA-256 (``...-216eae50_20230314.pth``): that
  prefix is checked on the first download too;
- a file inside a zip archive (mmdeploy's ``end2end.onnx``) is extracted from it;
- without a network (or with ``VIDPOSE_OFFLINE=1``) the error names the URL and the
  path to put the file at, so it can be copied in by hand.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from vidpose.runtime import InputError

CHUNK = 1 << 20


class DownloadError(InputError):
    """A model file could not be fetched or failed its checksum (the message names the
    URL and the path to put the file at)."""


@dataclass(frozen=True)
class RemoteFile:
    """A public file and what it must be.

    Attributes:
        name: the file's name in the cache.
        url: where it is downloaded from (``file://`` works, for tests and mirrors).
        sha256: its SHA-256 (of the cached file itself), when known; None: recorded on
            the first download and checked from then on.
        sha256_prefix: leading hex digits of the downloaded file's SHA-256 that its
            publisher states (OpenMMLab's file names), checked on download.
        member_suffix: the file is the archive member whose name ends with this (the
            download is a zip); None: the download is the file.
        license: the licence of the file, shown in listings.
        note: one line about it (what it detects, its input size).
    """

    name: str
    url: str
    sha256: str | None = None
    sha256_prefix: str | None = None
    member_suffix: str | None = None
    license: str = ""
    note: str = ""


def cache_dir() -> Path:
    """Where fetched files live: ``$VIDPOSE_CACHE``, ``$XDG_CACHE_HOME/vidpose`` or
    ``~/.cache/vidpose``."""
    if os.environ.get("VIDPOSE_CACHE"):
        return Path(os.environ["VIDPOSE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vidpose"


def offline() -> bool:
    """``VIDPOSE_OFFLINE`` or ``HF_HUB_OFFLINE`` set to 1: no network downloads."""
    return any(
        os.environ.get(name, "") in ("1", "true", "yes")
        for name in ("VIDPOSE_OFFLINE", "HF_HUB_OFFLINE")
    )


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(remote: RemoteFile, *, cache: str | os.PathLike | None = None) -> Path:
    """The cached path of ``remote``, downloaded (and verified) on first use.

    Raises:
        DownloadError: no network or the server refused (the message names the URL and
            where to put the file), a checksum mismatch, or an archive without the
            expected member.
    """
    folder = Path(cache) if cache is not None else cache_dir()
    target = folder / remote.name
    record = target.with_name(target.name + ".sha256")
    if target.is_file():
        # downloaded before, or put there by hand (the offline route)
        expected = remote.sha256 or (record.read_text().split()[0] if record.is_file() else None)
        actual = sha256_of(target)
        if expected is not None and actual != expected:
            raise DownloadError(
                f"{target}: SHA-256 {actual} differs from the expected {expected} "
                f"(changed or corrupt); delete it to download {remote.url} again"
            )
        if expected is None:
            if remote.member_suffix is None and remote.sha256_prefix:
                _check_prefix(remote, actual, str(target))
            record.write_text(f"{actual}  {remote.name}  (first seen in the cache)\n")
        return target
    if offline() and not remote.url.startswith("file:"):
        raise DownloadError(
            _manual(remote, target, "downloads are off (VIDPOSE_OFFLINE / HF_HUB_OFFLINE)")
        )
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{remote.name}.", suffix=".part")
    os.close(handle)
    try:
        downloaded = _download(remote, Path(temporary), target)
        if remote.sha256_prefix:
            _check_prefix(remote, downloaded, remote.url)
        if remote.member_suffix is not None:
            _extract(remote, Path(temporary), target)
        else:
            os.replace(temporary, target)
        actual = sha256_of(target)
        if remote.sha256 is not None and actual != remote.sha256:
            target.unlink()
            raise DownloadError(
                f"{remote.url}: SHA-256 {actual}, expected {remote.sha256} (corrupt download?)"
            )
        # trust on first use: later uses check the file against this record
        record.write_text(f"{actual}  {remote.name}  (from {remote.url})\n")
    finally:
        Path(temporary).unlink(missing_ok=True)
    return target


def _check_prefix(remote: RemoteFile, actual: str, where: str) -> None:
    if not actual.startswith(remote.sha256_prefix or ""):
        raise DownloadError(
            f"{where}: SHA-256 {actual} does not start with {remote.sha256_prefix} as its "
            "publisher's file name says (corrupt or another file?)"
        )


def _download(remote: RemoteFile, temporary: Path, target: Path) -> str:
    """Stream ``remote.url`` into ``temporary``; returns the download's SHA-256."""
    digest = hashlib.sha256()
    try:
        request = urllib.request.Request(remote.url, headers={"User-Agent": "vidpose"})
        with urllib.request.urlopen(request, timeout=60) as response, open(temporary, "wb") as out:
            for chunk in iter(lambda: response.read(CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        raise DownloadError(_manual(remote, target, str(getattr(error, "reason", error)))) from None
    return digest.hexdigest()


def _extract(remote: RemoteFile, archive: Path, target: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = [name for name in bundle.namelist() if name.endswith(remote.member_suffix)]
            if not members:
                raise DownloadError(
                    f"{remote.url}: the archive holds no file ending in {remote.member_suffix!r} "
                    f"(it holds {', '.join(bundle.namelist()[:6])})"
                )
            part = target.with_name(f".{target.name}.member")
            with bundle.open(sorted(members)[0]) as source, open(part, "wb") as out:
                shutil.copyfileobj(source, out, CHUNK)
            os.replace(part, target)
    except zipfile.BadZipFile:
        raise DownloadError(f"{remote.url}: not a zip archive (corrupt download?)") from None


def _manual(remote: RemoteFile, target: Path, reason: str) -> str:
    what = (
        f"download {remote.url}, take the file ending in {remote.member_suffix!r} out of "
        f"the archive and put it at {target}"
        if remote.member_suffix
        else f"download {remote.url} and put it at {target}"
    )
    return f"cannot fetch {remote.name}: {reason}. Without a network, {what}"
