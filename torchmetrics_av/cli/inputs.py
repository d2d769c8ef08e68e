"""Inputs of ``torchmetrics-av evaluate``: listing the folders, pairing by stem, decoding, prompts/transcripts files.

Files are paired by stem (``gen/x.mp4`` <-> ``ref/x.flac``). Every file is decoded with :mod:`torchmetrics_av.io`
(soundfile for audio, PyAV for videos) on a few threads, a bounded number ahead of the metrics (one batch plus a file
per thread), in :func:`by_length` order (longest first) unless ``--batch-order name``. A file that cannot be decoded,
or is truncated (its header promises more than it holds), is listed as broken and never scored.

Example:
    >>> import tempfile, numpy as np, soundfile as sf
    >>> from pathlib import Path
    >>> from torchmetrics_av.cli.inputs import Inventory, list_files
    >>> gen, ref = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
    >>> for folder, stem in ((gen, "a"), (gen, "b"), (ref, "a")):
    ...     sf.write(folder / f"{stem}.wav", np.zeros(160), 16000)
    >>> inv = Inventory(gen=list_files(gen, "--gen"), ref=list_files(ref, "--ref"))
    >>> inv.paired, inv.unmatched_gen, inv.order
    (['a'], ['b'], ['a', 'b'])
"""

from __future__ import annotations

import csv
import json
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from torchmetrics_av.cli.errors import CLIError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".mov", ".avi")
MEDIA_EXTENSIONS = AUDIO_EXTENSIONS + VIDEO_EXTENSIONS
# Files decoded ahead of the consumer per decoder thread: enough to keep the model busy, bounded so that a folder of
# long videos is never held in memory at once.
PREFETCH_PER_WORKER = 2
# Column names accepted in --prompts / --transcripts CSV files (av-benchmark writes `name,caption`).
KEY_COLUMNS = ("name", "stem", "id", "file", "filename", "video", "audio")
TEXT_COLUMNS = ("caption", "prompt", "text", "transcript", "label")
LANGUAGE_COLUMN = "language"

Texts = dict[str, tuple[str, str | None]]  # stem -> (text, language or None)


@dataclass
class Clip:
    """One decoded file: audio ``(C, T)`` float32 and, for a video, uint8 frames ``(F, 3, H, W)`` and their rate."""

    stem: str
    path: Path
    audio: Tensor
    sample_rate: int
    frames: Tensor | None = None
    fps: float | None = None


@dataclass
class Item:
    """A generated clip, its id (position in :attr:`Inventory.order`) and, where paired and needed, its reference."""

    stem: str
    gen: Clip
    ref: Clip | None = None
    id: int = -1


@dataclass
class Inventory:
    """Files found in the folders, their pairing and what could not be used."""

    gen: dict[str, Path]
    ref: dict[str, Path]
    broken: list[dict[str, str]] = field(default_factory=list)

    @property
    def paired(self) -> list[str]:
        """Stems present in both folders."""
        return sorted(set(self.gen) & set(self.ref))

    @property
    def unmatched_gen(self) -> list[str]:
        """Generated stems without a reference."""
        return sorted(set(self.gen) - set(self.ref))

    @property
    def unmatched_ref(self) -> list[str]:
        """Reference stems without a generated file."""
        return sorted(set(self.ref) - set(self.gen))

    @property
    def order(self) -> list[str]:
        """Generated stems in the order they are fed: paired ones first (KL needs both sides), then the others."""
        return [*self.paired, *self.unmatched_gen]

    @property
    def gen_videos(self) -> list[str]:
        """Generated stems whose file is a video."""
        return sorted(s for s, p in self.gen.items() if is_video(p))

    def fail(self, path: Path, err: BaseException) -> None:
        """Record a file that could not be used, with the decoder's message."""
        self.broken.append({"file": str(path), "error": f"{type(err).__name__}: {err}"})


def is_video(path: Path) -> bool:
    """Whether ``path`` has a video extension."""
    return path.suffix.lower() in VIDEO_EXTENSIONS


def list_files(folder: str | Path | None, option: str) -> dict[str, Path]:
    """Map stem -> path for the media files directly inside ``folder`` (the command-line ``option`` names it).

    Raises:
        CLIError: not a folder, no media file in it, or two files with one stem.
    """
    if folder is None:
        return {}
    root = Path(folder)
    if not root.is_dir():
        raise CLIError(f"{option} {root} is not a folder")
    out: dict[str, Path] = {}
    for path in sorted(root.iterdir()):
        if path.suffix.lower() in MEDIA_EXTENSIONS and path.is_file():
            if path.stem in out:
                raise CLIError(f"two files share the stem {path.stem!r} in {root}: {out[path.stem].name}, {path.name}")
            out[path.stem] = path
    if not out:
        raise CLIError(f"{option}: no audio or video files ({', '.join(MEDIA_EXTENSIONS)}) in {root}")
    return out


def read_clip(stem: str, path: Path, frames: bool) -> Clip:
    """Decode one file with :mod:`torchmetrics_av.io` (soundfile for audio, PyAV for videos).

    Args:
        stem: the file's stem.
        path: the file.
        frames: keep a video's frames (only the video metrics need them).

    Raises:
        ValueError: a video without an audio stream, a file without samples, a truncated file
            (:class:`~torchmetrics_av.io.TruncatedFileError`); the decoders' own errors for undecodable files.
    """
    from torchmetrics_av.io import read_audio, read_video

    if is_video(path):
        video = read_video(path)
        if video.audio is None or video.sample_rate is None:
            raise ValueError("the video has no audio stream")
        clip = Clip(stem, path, video.audio, video.sample_rate, video.frames if frames else None, video.fps)
    else:
        audio, sr = read_audio(path)
        clip = Clip(stem, path, audio, sr)
    if clip.audio.shape[-1] == 0:
        raise ValueError("no audio samples")
    return clip


def duration_of(path: Path) -> float | None:
    """The length in seconds a file's header declares (audio: libsndfile; video: its audio stream, else the
    container); ``None`` when it cannot be read (the decoder then reports the file). Nothing is decoded.
    """
    try:
        if not is_video(path):
            import soundfile

            info = soundfile.info(str(path))
            return info.frames / info.samplerate if info.samplerate > 0 else None
        import av

        with av.open(str(path)) as container:
            for stream in container.streams.audio:
                if stream.duration is not None and stream.time_base is not None:
                    return float(stream.duration * stream.time_base)
            return None if container.duration is None else container.duration / av.time_base
    except Exception:  # noqa: BLE001 - an unreadable header only loses the file its place in the order
        return None


def by_length(stems: Sequence[str], paths: dict[str, Path], workers: int = 1) -> list[str]:
    """``stems`` longest first by declared duration (:func:`duration_of`; ties and unknown lengths by stem, unknown
    last), so that a batch holds clips of similar lengths: equal-length clips share a forward where a backbone
    batches by length (PANNs), and the longest batch, the memory peak, comes first. Headers are read on ``workers``
    threads.

    Example:
        >>> import tempfile, numpy as np, soundfile as sf
        >>> from pathlib import Path
        >>> folder = Path(tempfile.mkdtemp())
        >>> for stem, seconds in (("a", 1), ("b", 3), ("c", 2)):
        ...     sf.write(folder / f"{stem}.wav", np.zeros(8000 * seconds), 8000)
        >>> paths = {s: folder / f"{s}.wav" for s in ("a", "b", "c", "missing")}  # missing.wav does not exist
        >>> by_length(["a", "b", "c", "missing"], paths)
        ['b', 'c', 'a', 'missing']
    """
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:  # a video header is a few ms to open
        lengths = dict(zip(stems, pool.map(duration_of, [paths[s] for s in stems])))
    return sorted(stems, key=lambda s: (lengths[s] is None, -(lengths[s] or 0.0), s))


# Scheduling niceness of the decoder threads (Linux; 0..19, higher yields more): the model's threads come first, so a
# decoder busy resampling never stalls a forward's parallel region on a machine with few cores. 10 is nice(1)'s default.
DECODER_NICENESS = 10


def lower_thread_priority() -> None:
    """Make the calling thread yield the CPU to the model's (``DECODER_NICENESS``); a no-op where unsupported."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), DECODER_NICENESS)
    except (AttributeError, OSError):  # not Linux, or not permitted: decoding simply competes as before
        pass


def bounded_map(fn: Callable[[str], Any], stems: Sequence[str], workers: int, ahead: int = 0) -> Iterator[Any]:
    """``map(fn, stems)`` on ``workers`` threads, in order, with at most ``max(ahead, workers * PREFETCH_PER_WORKER)``
    results ahead of the consumer (``ahead`` = one batch plus a file per thread lets the threads load the next batch
    while the model runs on this one).
    """
    workers = max(1, workers)
    limit = max(ahead, workers * PREFETCH_PER_WORKER)
    with ThreadPoolExecutor(max_workers=workers, initializer=lower_thread_priority) as pool:
        todo = iter(stems)
        pending: deque[Future] = deque()
        for stem in todo:
            pending.append(pool.submit(fn, stem))
            if len(pending) >= limit:
                break
        while pending:
            result = pending.popleft().result()
            for stem in todo:
                pending.append(pool.submit(fn, stem))
                break
            yield result


def batches(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    """Group an iterator into lists of ``size`` (the last one shorter)."""
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class Progress:
    """A per-file progress bar on stderr (tqdm when installed; it ships with huggingface_hub).

    A file counts once it has been fed to every metric or found broken, so the bar never runs ahead of the work.
    """

    def __init__(self, total: int, desc: str) -> None:
        try:
            from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover - tqdm comes with huggingface_hub
            self._bar = None
            return
        self._bar = tqdm(total=total, desc=desc, unit="file", file=sys.stderr, leave=False, dynamic_ncols=True)

    def grow(self, files: int) -> None:
        """Add ``files`` to the total (files found to need reading during the run)."""
        if self._bar is not None and files:
            self._bar.total += files
            self._bar.refresh()

    def advance(self, files: int = 1) -> None:
        """Count ``files`` more files as done."""
        if self._bar is not None and files:
            self._bar.update(files)

    def close(self) -> None:
        """Remove the bar."""
        if self._bar is not None:
            self._bar.close()


def read_texts(path: str | Path, what: str) -> Texts:
    """Read a prompts / transcripts file: stem -> ``(text, language or None)``.

    CSV with a header: a key column (``name``, ``stem``, ``id``, ``file``, ...; an extension is dropped), a text
    column (``caption``, ``prompt``, ``text``, ``transcript``, ...) and an optional ``language`` column. JSON: an
    object ``{stem: text}`` or ``{stem: {"text": ..., "language": ...}}``.

    Raises:
        CLIError: unreadable file, unknown columns, duplicate stems, non-string text.
    """
    file = Path(path)
    if not file.is_file():
        raise CLIError(f"--{what} {file} is not a file")
    out: Texts = {}

    def add(key: Any, text: Any, language: Any = None) -> None:
        key = str(key).strip()
        stem = Path(key).stem if Path(key).suffix.lower() in MEDIA_EXTENSIONS else key
        if not isinstance(text, str):
            raise CLIError(f"--{what} {file}: the text of {key!r} is not a string ({text!r})")
        if stem in out:
            raise CLIError(f"--{what} {file}: {stem!r} appears twice")
        lang = language.strip() if isinstance(language, str) and language.strip() else None
        out[stem] = (text, lang)

    if file.suffix.lower() == ".json":
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise CLIError(f"--{what} {file} is not valid JSON: {err}") from err
        if not isinstance(data, dict):
            raise CLIError(f"--{what} {file}: expected a JSON object {{stem: text}}, got {type(data).__name__}")
        for key, value in data.items():
            if isinstance(value, dict):
                add(key, next((value[c] for c in TEXT_COLUMNS if c in value), None), value.get(LANGUAGE_COLUMN))
            else:
                add(key, value)
        return out
    try:
        with open(file, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = [c.strip().lower() for c in reader.fieldnames or []]
            key_col = next((c for c in KEY_COLUMNS if c in columns), None)
            text_col = next((c for c in TEXT_COLUMNS if c in columns), None)
            if key_col is None or text_col is None:
                raise CLIError(
                    f"--{what} {file}: a CSV needs a header with a key column ({', '.join(KEY_COLUMNS)}) and a text "
                    f"column ({', '.join(TEXT_COLUMNS)}); found {columns}"
                )
            for row in reader:
                row = {(k or "").strip().lower(): v for k, v in row.items()}
                add(row[key_col], row[text_col], row.get(LANGUAGE_COLUMN))
    except UnicodeDecodeError as err:
        raise CLIError(f"--{what} {file} is not UTF-8 text: {err}") from err
    return out
