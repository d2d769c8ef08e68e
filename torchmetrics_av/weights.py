"""Checkpoint resolution: a local path, a URL or a Hugging Face hub file, cached, checksummed and offline-aware.

Every backbone names its official checkpoint with a :class:`Checkpoint` record and calls :func:`resolve_checkpoint`.
The rules are the same for all of them:

1. ``weights=`` given: that local file (or directory) is used as it is. A missing path is an error, never a download.
2. Otherwise the file is looked up in the cache directory ``$TORCHMETRICS_AV_CACHE`` (default
   ``~/.cache/torchmetrics_av``); a cached copy is verified against the record's SHA-256 when one is known.
3. Otherwise it is downloaded (URL: streamed to a temporary file in the cache folder, hashed, then renamed into place
   atomically; hub: ``huggingface_hub.hf_hub_download``). Offline (``HF_HUB_OFFLINE=1`` or
   ``TORCHMETRICS_AV_OFFLINE=1``) or on a network error, :class:`WeightsNotFoundError` names the file, its URL and
   the ``weights=`` argument.

Example:
    >>> import tempfile, torch
    >>> from torchmetrics_av.weights import Checkpoint, resolve_checkpoint
    >>> tmp = tempfile.mkdtemp()
    >>> torch.save({"w": torch.zeros(2)}, f"{tmp}/tiny.pt")
    >>> ckpt = Checkpoint(name="tiny", filename="tiny.pt", url=f"file://{tmp}/tiny.pt")
    >>> path = resolve_checkpoint(ckpt, cache_dir=f"{tmp}/cache")
    >>> path.name
    'tiny.pt'
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

# Environment variables, named in DESIGN.md.
CACHE_ENV = "TORCHMETRICS_AV_CACHE"
OFFLINE_ENVS = ("TORCHMETRICS_AV_OFFLINE", "HF_HUB_OFFLINE")
DEFAULT_CACHE = Path("~/.cache/torchmetrics_av")
# Seconds a download may wait on the network per read (not in total), so a firewalled host fails instead of hanging.
DOWNLOAD_TIMEOUT_S = 60
# 1 MiB reads keep memory flat while hashing multi-GB checkpoints (ImageBind huge is 4.5 GB).
_CHUNK_BYTES = 1 << 20


class WeightsNotFoundError(FileNotFoundError):
    """A checkpoint is neither at the given path nor in the cache, and cannot be downloaded."""


class ChecksumError(RuntimeError):
    """A downloaded or cached checkpoint does not have the expected SHA-256."""


@dataclass(frozen=True)
class Checkpoint:
    """Where an official checkpoint lives and how to check it.

    Args:
        name: short id recorded in provenance (e.g. saved FD reference statistics).
        filename: file name inside the cache directory.
        url: direct download URL (``https://`` or ``file://``), if the file has one.
        hf_repo: Hugging Face hub repository id, if the file lives on the hub.
        hf_filename: file inside ``hf_repo`` (defaults to ``filename``).
        sha256: expected hex digest; ``None`` where the publisher gives none (then the digest of the first download
            is written next to the file and later loads are checked against it).
        license: the weights' licence, shown in docs and errors.
        md5: the publisher's MD5 hex digest where that is the checksum it lists (Zenodo gives one per file); checked
            on download and on a cached copy, in addition to ``sha256``.
        sha256_prefix: leading hex digits of the SHA-256 where only those are published (torch-hub release names
            ``name-<prefix>.ext``); checked like ``md5``.
    """

    name: str
    filename: str
    url: str | None = None
    hf_repo: str | None = None
    hf_filename: str | None = None
    sha256: str | None = None
    license: str = ""
    md5: str | None = None
    sha256_prefix: str | None = None

    @property
    def source(self) -> str:
        """Human-readable origin: the URL, or ``hf://repo/file``."""
        if self.url:
            return self.url
        if self.hf_repo:
            return f"hf://{self.hf_repo}/{self.hf_filename or self.filename}"
        return "<no public source>"


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """The checkpoint cache folder: ``override``, else ``$TORCHMETRICS_AV_CACHE``, else ``~/.cache/torchmetrics_av``."""
    raw = override if override is not None else os.environ.get(CACHE_ENV, str(DEFAULT_CACHE))
    return Path(raw).expanduser()


def is_offline() -> bool:
    """Whether downloads are disabled by ``TORCHMETRICS_AV_OFFLINE`` or ``HF_HUB_OFFLINE``."""
    return any(os.environ.get(k, "").strip().lower() in {"1", "true", "yes", "on"} for k in OFFLINE_ENVS)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK_BYTES), b""):
            h.update(block)
    return h.hexdigest()


_cache_folder = cache_dir  # resolve_checkpoint's `cache_dir` argument shadows the function inside it


def _not_found(ckpt: Checkpoint, why: str) -> WeightsNotFoundError:
    return WeightsNotFoundError(
        f"checkpoint {ckpt.filename!r} ({ckpt.name}) is not available: {why}. Download it from {ckpt.source} and pass "
        f"`weights=<path to {ckpt.filename}>`, or put it in the cache folder {cache_dir()} "
        f"(set ${CACHE_ENV} to move it)."
    )


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Serialise concurrent downloads of one file (several DDP ranks on one host) when ``filelock`` exists."""
    try:
        from filelock import FileLock
    except ImportError:  # pragma: no cover - filelock ships with huggingface_hub
        yield
        return
    with FileLock(str(path) + ".lock"):
        yield


def download_url(
    url: str,
    dest: Path,
    sha256: str | None = None,
    *,
    md5: str | None = None,
    sha256_prefix: str | None = None,
) -> Path:
    """Stream ``url`` into ``dest`` atomically, verifying the digests that are given before the final rename.

    Raises:
        ChecksumError: the downloaded bytes have another digest; nothing is left at ``dest``.
        OSError: the transfer failed.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    h_md5 = hashlib.md5(usedforsecurity=False) if md5 is not None else None
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:  # noqa: S310 - URLs come from records
            for block in iter(lambda: response.read(_CHUNK_BYTES), b""):
                h.update(block)
                if h_md5 is not None:
                    h_md5.update(block)
                out.write(block)
        digest = h.hexdigest()
        if sha256 is not None and digest != sha256.lower():
            raise ChecksumError(f"{url}: SHA-256 {digest} does not match the expected {sha256}")
        _check_published(url, digest, h_md5.hexdigest() if h_md5 is not None else None, md5, sha256_prefix)
        os.replace(tmp_name, dest)
        _write_digest(dest, digest, md5=h_md5.hexdigest() if h_md5 is not None else None)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return dest


def _digest_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _check_published(
    where: object, digest: str, md5_digest: str | None, md5: str | None, sha256_prefix: str | None
) -> None:
    if md5 is not None and md5_digest != md5.lower():
        raise ChecksumError(f"{where}: MD5 {md5_digest} does not match the published {md5}")
    if sha256_prefix is not None and not digest.startswith(sha256_prefix.lower()):
        raise ChecksumError(f"{where}: SHA-256 {digest} does not start with the published prefix {sha256_prefix}")


def md5_file(path: str | os.PathLike) -> str:
    """Hex MD5 of a file, read in 1 MiB chunks (only to compare with a publisher's listed checksum)."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK_BYTES), b""):
            h.update(block)
    return h.hexdigest()


def _write_digest(path: Path, digest: str, md5: str | None = None) -> None:
    st = path.stat()
    record = {"sha256": digest, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if md5 is not None:
        record["md5"] = md5
    _digest_path(path).write_text(json.dumps(record) + "\n")


def _read_digest(path: Path) -> dict[str, Any] | None:
    recorded = _digest_path(path)
    if not recorded.exists():
        return None
    text = recorded.read_text().strip()
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        record = {"sha256": text}
    return record if isinstance(record, dict) else {"sha256": text}


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file, taken from the record a download left next to it when the file is unchanged since."""
    path = Path(path)
    record = _read_digest(path)
    st = path.stat()
    if record is not None and record.get("size") == st.st_size and record.get("mtime_ns") == st.st_mtime_ns:
        return str(record["sha256"])
    return sha256_file(path)


def _verify_published(path: Path, md5: str | None, sha256_prefix: str | None) -> None:
    record = _read_digest(path)
    st = path.stat()
    fresh = record is not None and record.get("size") == st.st_size and record.get("mtime_ns") == st.st_mtime_ns
    digest = str(record["sha256"]) if fresh and record is not None else None
    md5_digest = record.get("md5") if fresh and record is not None else None
    if digest is None and sha256_prefix is not None:
        digest = sha256_file(path)
    if md5 is not None and md5_digest is None:
        md5_digest = md5_file(path)
    try:
        _check_published(path, digest or "", md5_digest, md5, sha256_prefix)
    except ChecksumError as err:
        raise ChecksumError(f"{err}; delete the file to download it again") from None
    if not fresh or (md5 is not None and record is not None and record.get("md5") is None):
        # The publisher's digest vouches for this file: record it so later loads skip the re-hash.
        _write_digest(path, digest or sha256_file(path), md5=md5_digest)


def verify_checksum(
    path: Path, expected: str | None, *, md5: str | None = None, sha256_prefix: str | None = None
) -> None:
    """Check a cached file against ``expected``, or against the digest recorded when it was downloaded.

    ``md5`` / ``sha256_prefix`` (the publisher's digests, see :class:`Checkpoint`) are checked first when given.
    The file is re-hashed only when its size or modification time differ from those recorded with its digest
    (hashing ImageBind's 4.5 GB takes ~10 s per load otherwise).

    Raises:
        ChecksumError: the file changed or is corrupt; delete it to download again.
    """
    if md5 is not None or sha256_prefix is not None:
        _verify_published(path, md5, sha256_prefix)
    record = _read_digest(path)
    if expected is None and record is not None:
        expected = record.get("sha256")
    if expected is None:
        return
    st = path.stat()
    if (
        record is not None
        and record.get("sha256") == expected.lower()
        and record.get("size") == st.st_size
        and record.get("mtime_ns") == st.st_mtime_ns
    ):
        return
    digest = sha256_file(path)
    if digest != expected.lower():
        raise ChecksumError(f"{path}: SHA-256 {digest} != expected {expected}; delete the file to download it again")
    _write_digest(path, digest)


def resolve_checkpoint(
    ckpt: Checkpoint,
    weights: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    verify: bool = True,
) -> Path:
    """Return a local path for ``ckpt``: ``weights`` if given, else the cached copy, else a fresh download.

    Args:
        ckpt: the checkpoint record.
        weights: a local file or directory chosen by the user; used as it is (no checksum: it may be a fine-tune).
        cache_dir: cache folder override (default ``$TORCHMETRICS_AV_CACHE`` or ``~/.cache/torchmetrics_av``).
        verify: check the SHA-256 of cached and downloaded files.

    Raises:
        WeightsNotFoundError: ``weights`` does not exist, or the file is not cached and cannot be downloaded.
        ChecksumError: the cached or downloaded file has the wrong digest.
    """
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.exists():
            raise WeightsNotFoundError(
                f"`weights={str(weights)!r}` does not exist (expected {ckpt.filename} from {ckpt.source})"
            )
        return path
    folder = _cache_folder(cache_dir)
    target = folder / ckpt.filename
    with _file_lock(target):
        if target.exists():
            if verify:
                verify_checksum(target, ckpt.sha256, md5=ckpt.md5, sha256_prefix=ckpt.sha256_prefix)
            return target
        if is_offline():
            raise _not_found(ckpt, "offline mode is on (HF_HUB_OFFLINE / TORCHMETRICS_AV_OFFLINE) and it is not cached")
        if ckpt.url:
            try:
                if not verify:
                    return download_url(ckpt.url, target)
                return download_url(ckpt.url, target, ckpt.sha256, md5=ckpt.md5, sha256_prefix=ckpt.sha256_prefix)
            except (urllib.error.URLError, OSError) as err:
                raise _not_found(ckpt, f"download failed ({err})") from err
        if ckpt.hf_repo:
            return _hf_download(ckpt, folder, verify)
    raise _not_found(ckpt, "it has no download source")


def _hf_download(ckpt: Checkpoint, folder: Path, verify: bool) -> Path:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as err:  # pragma: no cover - declared dependency
        raise _not_found(ckpt, "huggingface_hub is not installed") from err
    try:
        path = Path(hf_hub_download(ckpt.hf_repo, ckpt.hf_filename or ckpt.filename, cache_dir=folder / "hub"))
    except Exception as err:  # noqa: BLE001 - hub errors have many types; all mean "not available"
        raise _not_found(ckpt, f"hub download failed ({type(err).__name__}: {err})") from err
    if verify and ckpt.sha256 is not None:
        verify_checksum(path, ckpt.sha256)
    return path


def load_state_dict(path: str | os.PathLike, key: str | None = None) -> dict[str, Any]:
    """Load a checkpoint file (``.pt``/``.pth`` via ``torch.load(weights_only=True)`` or ``.safetensors``) on CPU.

    Args:
        path: the file.
        key: optional entry to descend into (e.g. ``"model"`` for Lightning-style ``{"model": state_dict}`` files).
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state: dict[str, Any] = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if key is not None:
        if key not in state:
            raise KeyError(f"{path}: expected a top-level {key!r} entry, found {sorted(state)[:8]}")
        state = state[key]
    return state
