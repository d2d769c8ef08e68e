r"""Fetch every checkpoint once (on a login node with internet) and check a weights folder offline (on compute nodes).

:func:`download` fills a folder with the files of :data:`torchmetrics_av.weights.CHECKPOINTS` that the named
metrics, protocols or backbones need (default: every default configuration), verifying each against its published
size and digest (or recording its SHA-256 where none is published), resuming interrupted transfers, and collecting
failures instead of stopping at the first. :func:`check` verifies a folder without any network access: every file
re-hashed, reported ``ok`` / ``missing`` / ``corrupt``.

Layout of the folder (what ``download`` writes, and exactly what the cache ``$TORCHMETRICS_AV_CACHE`` and the CLI's
``--weights-dir`` read; the ``file in the weights folder`` column of the README table)::

    passt-s-f128-p16-s10-ap.476-swa.pt             PaSST (FD / KL)
    music_speech_audioset_epoch_15_esc_89.98.pt    CLAP, av-benchmark protocol
    roberta-base/                                  its tokenizer (config.json, vocab.json, merges.txt, tokenizer.json)
    clap-htsat-fused/                              CLAP, fastvideo protocol (a from_pretrained folder)
    whisper-base.pt                                openai-whisper (whisper-<size>.pt for the other sizes)
    whisper-base/                                  HF Whisper (from_pretrained folder)
    audiobox-aesthetics/                           config.json + model.safetensors
    imagebind_huge.pth, synchformer_state_dict.pth, Cnn14_16k_mAP=0.438.pth, vggish-10086976.pth,
    CLAP_weights_2023.pth, r50k_base.tiktoken (MS-CLAP), GLM-ASR-Nano-2512/, SenseVoiceSmall/, fsmn-vad/
    <file>.sha256                                  the digests recorded at download (JSON), next to every file

Shell (``torchmetrics-av download`` / ``torchmetrics-av weights --check``; ``python -m torchmetrics_av.downloads
download`` / ``check`` do the same)::

    torchmetrics-av download --weights-dir ~/ckpt av-benchmark wer                        # login node
    torchmetrics-av weights --check --weights-dir ~/ckpt                                  # compute node
    TORCHMETRICS_AV_OFFLINE=1 TORCHMETRICS_AV_CACHE=~/ckpt python train.py                # or --weights-dir ~/ckpt

Wiring into an ``argparse`` CLI::

    p = sub.add_parser("download", help="fetch and verify checkpoints")
    downloads.add_download_arguments(p)
    p.set_defaults(func=downloads.run_download)      # returns the exit code (1 when anything failed)
    p = sub.add_parser("check", help="verify a weights folder offline")
    downloads.add_check_arguments(p)
    p.set_defaults(func=downloads.run_check)

Example:
    >>> import tempfile
    >>> rows = check(tempfile.mkdtemp(), ["desync"])
    >>> [(r.name, r.status) for r in rows]
    [('synchformer_24-01-04T16-39-21', 'missing')]
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import json
import os
import sys
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from torchmetrics_av.weights import (
    DOWNLOAD_TIMEOUT_S,
    MIRROR_ENV,
    SNAPSHOT_MANIFEST,
    Checkpoint,
    ChecksumError,
    _file_lock,
    _open_url,
    _read_digest,
    _write_digest,
    cache_dir,
    download_url,
    hash_file,
    hf_endpoint,
    select_checkpoints,
    verify_file,
)

# Row statuses. OK_STATUSES end a command with exit code 0.
OK, DOWNLOADED, UNVERIFIED = "ok", "downloaded", "unverified"
MISSING, CORRUPT, FAILED = "missing", "corrupt", "failed"
OK_STATUSES = frozenset({OK, DOWNLOADED, UNVERIFIED})
# Hub files a snapshot folder does not need (model cards, git metadata, demo media).
SNAPSHOT_IGNORE = (".gitattributes", "*.md", "*.png", "*.jpg", "*.jpeg", "*.gif", "*.wav", "*.mp3", "*.mp4")


@dataclass(frozen=True)
class Row:
    """The outcome for one file.

    Attributes:
        name: checkpoint name (``<snapshot name>/<file>`` for a file of a snapshot folder).
        path: the file in the weights folder.
        status: ``ok`` (present and verified), ``downloaded``, ``unverified`` (present; no digest published or
            recorded to check it against), ``missing``, ``corrupt`` (wrong size or digest) or ``failed``.
        digest: what was checked (e.g. ``"md5 ok (publisher)"``, ``"sha256 matches the download record"``).
        size: bytes on disk, ``None`` when absent.
        error: why it is missing, corrupt or failed.
    """

    name: str
    path: Path
    status: str
    digest: str = ""
    size: int | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        """Whether the file is usable (``ok``, ``downloaded`` or ``unverified``)."""
        return self.status in OK_STATUSES


def _row(ckpt: Checkpoint, path: Path, status: str, digest: str = "", error: str = "") -> Row:
    size = path.stat().st_size if path.is_file() else None
    return Row(ckpt.name, path, status, digest, size, error)


def _fetch(ckpt: Checkpoint, path: Path, url: str | None, progress: bool, timeout: float) -> Row:
    """Make ``path`` a verified copy of ``ckpt``: keep a good copy, else (re)download it."""
    replaced = ""
    with _file_lock(path):
        if path.is_file():
            try:
                # Re-hashed, not trusted from the record: a file `check` calls corrupt is never kept as ok.
                digest = verify_file(path, ckpt, rehash=True)
            except ChecksumError as err:
                replaced = f"replaced a corrupt copy ({err}); "
                path.unlink()
            else:
                if digest == "no digest to check":
                    _write_digest(path, hash_file(path))
                    return _row(ckpt, path, UNVERIFIED, "present, no published digest: SHA-256 recorded now")
                return _row(ckpt, path, OK, digest)
        if url is None:
            return _row(ckpt, path, FAILED, error="no download source")
        try:
            download_url(url, path, ckpt.sha256, md5=ckpt.md5, size=ckpt.size, progress=progress, timeout=timeout)
            digest = verify_file(path, ckpt)
        except (OSError, ChecksumError, ValueError) as err:
            return _row(ckpt, path, FAILED, error=f"{replaced}{type(err).__name__}: {err} ({url})")
    if digest == "sha256 matches the download record":
        digest = "none published: SHA-256 recorded"
    return _row(ckpt, path, DOWNLOADED, replaced + digest)


def _hub_listing(ckpt: Checkpoint, timeout: float) -> list[dict]:
    """Files of ``ckpt.hf_repo@revision`` from the hub API: ``[{"path", "size", "sha256" (LFS files) or None}]``."""
    url: str | None = (
        f"{hf_endpoint()}/api/models/{ckpt.hf_repo}/tree/{urllib.parse.quote(ckpt.revision or 'main', safe='')}"
        "?recursive=true"
    )
    entries: list[dict] = []
    while url:
        stream, _, _ = _open_url(url, 0, timeout)
        with stream:
            entries += json.loads(stream.read().decode())
            headers = getattr(stream, "headers", None)
            link = str(headers.get("Link", "")) if headers is not None else ""
        # The hub paginates long listings with an RFC 8288 `Link: <...>; rel="next"` header.
        url = next((p.split(";")[0].strip(" <>") for p in link.split(",") if 'rel="next"' in p), None)
    return [
        {"path": e["path"], "size": e.get("size"), "sha256": (e.get("lfs") or {}).get("oid")}
        for e in entries
        if e.get("type") == "file"
    ]


def _snapshot_files(ckpt: Checkpoint, mirror: str | None, timeout: float) -> list[Checkpoint]:
    """One record per file of a snapshot folder, from the mirror's manifest or the hub's listing."""
    if mirror:
        stream, _, _ = _open_url(
            f"{mirror.rstrip('/')}/{urllib.parse.quote(ckpt.filename)}/{SNAPSHOT_MANIFEST}", 0, timeout
        )
        with stream:
            files = json.loads(stream.read().decode())["files"]
    else:
        files = _hub_listing(ckpt, timeout)
    out = []
    for f in files:
        rel = f["path"]
        if any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(rel.rsplit("/", 1)[-1], p) for p in SNAPSHOT_IGNORE):
            continue
        out.append(
            dataclasses.replace(
                ckpt,
                name=f"{ckpt.name}/{rel}",
                filename=f"{ckpt.filename}/{rel}",
                url=None,
                hf_filename=rel,
                sha256=f.get("sha256"),
                size=f.get("size"),
                snapshot=False,
            )
        )
    return out


def download_snapshot(
    ckpt: Checkpoint,
    root: str | os.PathLike,
    mirror: str | None = None,
    progress: bool = False,
    timeout: float = DOWNLOAD_TIMEOUT_S,
) -> list[Row]:
    """Fill ``<root>/<ckpt.filename>/`` with every file of a ``snapshot`` entry; its manifest once all verified.

    The file list comes from ``<mirror>/<folder>/`` + the manifest there (``mirror`` default
    ``$TORCHMETRICS_AV_MIRROR``), else from the hub's listing of ``hf_repo@revision`` with each LFS SHA-256.

    Returns:
        one :class:`Row` per file (one ``failed`` row when the listing itself failed).
    """
    root = Path(root)
    mirror = mirror if mirror is not None else os.environ.get(MIRROR_ENV) or None
    folder = root / ckpt.filename
    try:
        files = _snapshot_files(ckpt, mirror, timeout)
    except (OSError, ValueError, KeyError) as err:
        return [_row(ckpt, folder, FAILED, error=f"file listing failed: {type(err).__name__}: {err}")]
    rows = [_fetch(f, root / f.filename, f.download_url(mirror), progress, timeout) for f in files]
    if rows and all(r.ok for r in rows):
        manifest = {
            "repo": ckpt.hf_repo,
            "revision": ckpt.revision or "main",
            "files": [
                {"path": f.hf_filename, "size": r.size, "sha256": (_read_digest(r.path) or {}).get("sha256")}
                for f, r in zip(files, rows)
            ],
        }
        (folder / SNAPSHOT_MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return rows


def download(
    names: Iterable[str] | None = None,
    weights_dir: str | os.PathLike | None = None,
    *,
    mirror: str | None = None,
    progress: bool = True,
    timeout: float = DOWNLOAD_TIMEOUT_S,
    table: dict[str, Checkpoint] | None = None,
) -> list[Row]:
    """Fetch and verify every checkpoint ``names`` need into ``weights_dir``; failures are rows, not exceptions.

    A file already there is re-hashed and kept when it verifies (a corrupt one is replaced; one with no digest
    published or recorded gets its SHA-256 recorded, status ``unverified``); a partial ``<file>.part`` is resumed;
    nothing reaches its final name before it verifies. Offline (``HF_HUB_OFFLINE`` / ``TORCHMETRICS_AV_OFFLINE``)
    every file that would need the network fails without a connection being attempted.

    Args:
        names: checkpoint, backbone, metric or protocol names, or ``"all"`` (see
            :func:`torchmetrics_av.weights.select_checkpoints`); ``None`` = every default entry.
        weights_dir: target folder (default: the cache folder, ``$TORCHMETRICS_AV_CACHE``).
        mirror: base URL (``https://`` or ``file://``) of a copy of a filled weights folder; every file is read from
            ``<mirror>/<filename>`` (default ``$TORCHMETRICS_AV_MIRROR``).
        progress: progress bars on stderr.
        timeout: seconds each network read may wait (a stalled host fails instead of hanging).
        table: the checkpoint table (default :data:`torchmetrics_av.weights.CHECKPOINTS`).

    Returns:
        one :class:`Row` per file, in table order.

    Raises:
        ValueError: an unknown name.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> src = Path(tempfile.mkdtemp()); (src / "synchformer_state_dict.pth").write_bytes(b"weights")
        7
        >>> rows = download(["desync"], tempfile.mkdtemp(), mirror=src.as_uri(), progress=False)
        >>> rows[0].status, rows[0].error.split(":")[0]   # the real table's MD5 does not match these 7 bytes
        ('failed', 'ChecksumError')
    """
    root = cache_dir(weights_dir)
    mirror = mirror if mirror is not None else os.environ.get(MIRROR_ENV) or None
    rows: list[Row] = []
    for ckpt in select_checkpoints(names, table):
        if ckpt.snapshot:
            rows += download_snapshot(ckpt, root, mirror, progress, timeout)
        else:
            rows.append(_fetch(ckpt, root / ckpt.filename, ckpt.download_url(mirror), progress, timeout))
    return rows


def _check_one(ckpt: Checkpoint, path: Path) -> Row:
    if not path.is_file():
        return _row(ckpt, path, MISSING, error="not in the folder")
    record = _read_digest(path)
    if not (ckpt.sha256 or ckpt.md5) and not (record and record.get("sha256")):
        return _row(ckpt, path, UNVERIFIED, "no digest published or recorded")
    try:
        return _row(ckpt, path, OK, verify_file(path, ckpt, rehash=True))
    except ChecksumError as err:
        return _row(ckpt, path, CORRUPT, error=str(err))


def check(
    weights_dir: str | os.PathLike | None = None,
    names: Iterable[str] | None = None,
    *,
    table: dict[str, Checkpoint] | None = None,
) -> list[Row]:
    """Verify a weights folder offline: every file of ``names`` re-hashed against its published or recorded digest.

    Args:
        weights_dir: the folder (default: the cache folder).
        names: as :func:`download` (``None`` = every default entry).
        table: the checkpoint table (default :data:`torchmetrics_av.weights.CHECKPOINTS`).

    Returns:
        one :class:`Row` per file: ``ok``, ``unverified``, ``missing`` or ``corrupt`` (a snapshot folder without
        its manifest is one ``missing`` row).
    """
    root = cache_dir(weights_dir)
    rows = []
    for ckpt in select_checkpoints(names, table):
        if not ckpt.snapshot:
            rows.append(_check_one(ckpt, root / ckpt.filename))
            continue
        manifest = root / ckpt.filename / SNAPSHOT_MANIFEST
        if not manifest.is_file():
            rows.append(_row(ckpt, manifest.parent, MISSING, error=f"no {SNAPSHOT_MANIFEST} (not downloaded)"))
            continue
        for f in json.loads(manifest.read_text())["files"]:
            sub = dataclasses.replace(
                ckpt,
                name=f"{ckpt.name}/{f['path']}",
                filename=f"{ckpt.filename}/{f['path']}",
                sha256=f.get("sha256"),
                size=f.get("size"),
                digest_by="manifest",
                snapshot=False,
            )
            rows.append(_check_one(sub, root / sub.filename))
    return rows


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return ""  # pragma: no cover


def format_rows(rows: Sequence[Row]) -> str:
    """A plain-text table (name, size, status, digest, path), then one line per problem.

    Example:
        >>> print(format_rows([Row("m", Path("/w/m.pt"), "missing", error="not in the folder")]))
        name  size  status   digest  path
        m     -     missing          /w/m.pt
        <BLANKLINE>
        1 problem:
          m: missing: not in the folder
    """
    table = [("name", "size", "status", "digest", "path")]
    table += [(r.name, _size(r.size), r.status, r.digest, str(r.path)) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(line[:4], widths)) + "  " + line[4] for line in table]
    bad = [r for r in rows if not r.ok]
    if bad:
        lines += ["", f"{len(bad)} problem{'s' if len(bad) > 1 else ''}:"]
        lines += [f"  {r.name}: {r.status}: {r.error}" for r in bad]
    return "\n".join(line.rstrip() for line in lines)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "names",
        nargs="*",
        help="checkpoint, backbone, metric or protocol names (fastvideo, av-benchmark, wer, passt, ...); "
        "none = every default checkpoint",
    )
    parser.add_argument("--all", action="store_true", help="every table entry (all Whisper sizes too)")
    parser.add_argument(
        "--weights-dir", help="the folder (default: $TORCHMETRICS_AV_CACHE or ~/.cache/torchmetrics_av)"
    )


def add_download_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``download``: ``names...``, ``--all``, ``--weights-dir``, ``--mirror``, ``--timeout``, ``--quiet``."""
    _add_common(parser)
    parser.add_argument("--mirror", help=f"read <mirror>/<file> instead of the publishers (default ${MIRROR_ENV})")
    parser.add_argument("--timeout", type=float, default=DOWNLOAD_TIMEOUT_S, help="seconds per network read")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def add_check_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``check``: ``names...``, ``--all``, ``--weights-dir``."""
    _add_common(parser)


def names_from_args(args: argparse.Namespace) -> list[str] | None:
    """The names a ``download`` / ``check`` command line selects (``--all`` adds ``"all"``; none = the defaults)."""
    names = list(args.names or [])
    if args.all:
        names.append("all")
    return names or None


def _report(rows: Sequence[Row]) -> int:
    print(format_rows(rows))
    return 0 if all(r.ok for r in rows) else 1


def run_download(args: argparse.Namespace) -> int:
    """``download`` on parsed arguments: prints the table; exit code 1 when any file failed (all are listed)."""
    names = names_from_args(args)
    rows = download(names, args.weights_dir, mirror=args.mirror, progress=not args.quiet, timeout=args.timeout)
    return _report(rows)


def run_check(args: argparse.Namespace) -> int:
    """``check`` on parsed arguments: prints the table; exit code 1 when any file is missing or corrupt."""
    return _report(check(args.weights_dir, names_from_args(args)))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m torchmetrics_av.downloads {download,check} ...``; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m torchmetrics_av.downloads", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    add_download_arguments(sub.add_parser("download", help="fetch and verify checkpoints into a weights folder"))
    add_check_arguments(sub.add_parser("check", help="verify a weights folder offline"))
    args = parser.parse_args(argv)
    try:
        return run_download(args) if args.command == "download" else run_check(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
