r"""The ``torchmetrics-av`` command: evaluate a folder of generated audio or videos, with or without references.

Commands:

* ``torchmetrics-av evaluate --gen DIR [--ref DIR | --ref-stats stats.pt] [--prompts FILE] [--transcripts FILE]
  [--metrics LIST] ...`` writes a JSON file (corpus values, details and provenance: counts, protocol, backbone
  checkpoints, sample rates, video frame rates, library version) and, with ``--csv``, one CSV row per generated file
  with its per-sample values (KL, CLAP cosine, WER + transcript, aesthetics axes, IB cosine, DeSync offsets).
* ``torchmetrics-av reference --ref DIR --out stats.pt`` writes FD reference statistics that
  ``evaluate --ref-stats`` reuses without re-embedding the references.

Inputs. ``--gen`` holds audio files (``.wav .flac .ogg .mp3 .aiff``, read with soundfile) and/or videos (``.mp4 .mkv
.webm .mov .avi``: frames and the first audio stream decoded with PyAV); ``--ref`` the same (only the audio of
reference videos is used). Files are paired by stem (``gen/x.mp4`` <-> ``ref/x.flac``). ``--prompts`` (CLAP) and
``--transcripts`` (WER) are a CSV with a header (av-benchmark's ``name,caption``; a ``language`` column is read for
WER) or a JSON object ``{stem: text}`` / ``{stem: {"text": ..., "language": ...}}``; ``name`` may carry an
extension. Unmatched files and texts, undecodable files and samples a metric rejects are reported in the JSON and on
stderr, never dropped silently.

Metrics (``--metrics``, comma-separated; default: every metric the inputs allow):

==============  =======================================  ====================================================
name            needs                                    backbone (``--weights-dir`` file or folder)
==============  =======================================  ====================================================
``fd_passt``    ``--ref`` or ``--ref-stats``             PaSST ``passt-s-f128-p16-s10-ap.476-swa.pt``
``kl_passt``    ``--ref`` files paired by stem           PaSST (the same model and forward pass as FD)
``clap``        ``--prompts``                            CLAP: folder ``clap-htsat-fused`` ("fastvideo") or
                                                         ``music_speech_audioset_epoch_15_esc_89.98.pt``
                                                         (+ optional tokenizer folder ``roberta-base``)
``wer``         ``--transcripts``                        Whisper ``base.pt`` (``--whisper-model``)
``aesthetics``  generated audio                          Audiobox: folder ``audiobox-aesthetics``
``imagebind``   generated videos with audio              ImageBind ``imagebind_huge.pth``
``desync``      generated videos with audio (>= 4.8 s)   Synchformer ``synchformer_state_dict.pth``
==============  =======================================  ====================================================

Without ``--weights-dir`` the checkpoints come from the cache (``$TORCHMETRICS_AV_CACHE``) or are downloaded; offline,
a missing one is named with its URL. The numbers are those of the Python API on the same data with the same batching
(``--batch-size`` files per ``update`` call; tested). Every file is processed in sorted order: generated files with a
reference first, then the other generated files, then the other references (FD only).

Rejected samples: when a metric raises ``ValueError`` on a batch (e.g. a video shorter than DeSync's 4.8 s, a
transcript with no words), its state is restored and the batch is fed one file at a time; the files it still rejects
are listed under ``files.skipped`` and in the CSV column ``<metric>_error``. A metric picked by default that ends with
no scored sample is reported as ``null`` with its reason (asked for with ``--metrics``, that is an error, exit 2).
``--protocol av-benchmark --duration S`` sets av-benchmark's ``--audio_length`` (FD/KL/CLAP/ImageBind/DeSync window,
default 8 s).

Examples (shell)::

    torchmetrics-av evaluate --gen samples/ --ref vggsound_test/ --prompts captions.csv --out results.json \
        --csv per_sample.csv --protocol av-benchmark --weights-dir ~/checkpoints
    torchmetrics-av evaluate --gen speech/ --transcripts transcripts.json --metrics wer,aesthetics
    torchmetrics-av reference --ref vggsound_test/ --out vggsound_fd.pt
    torchmetrics-av evaluate --gen samples/ --ref-stats vggsound_fd.pt --metrics fd_passt

Example:
    >>> from torchmetrics_av.cli import build_parser
    >>> args = build_parser().parse_args(["evaluate", "--gen", "g", "--ref", "r", "--metrics", "fd_passt,clap"])
    >>> args.metrics, args.protocol
    ('fd_passt,clap', 'fastvideo')
"""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import sys
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from torchmetrics_av.protocols import PROTOCOLS, get_protocol
from torchmetrics_av.testing import TINY_CONFIGS as TINY_CONFIGS
from torchmetrics_av.testing import TINY_SEED, ToyTokenizer, tiny_backbone

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".mov", ".avi")
MEDIA_EXTENSIONS = AUDIO_EXTENSIONS + VIDEO_EXTENSIONS
# Metrics on the generated audio alone (with references or texts), then those that also need the generated frames.
AUDIO_METRICS = ("fd_passt", "kl_passt", "clap", "wer", "aesthetics")
VIDEO_METRICS = ("imagebind", "desync")
ALL_METRICS = AUDIO_METRICS + VIDEO_METRICS
# Files decoded ahead of the consumer per decoder thread: enough to keep the model busy, bounded so that a folder of
# long videos is never held in memory at once.
PREFETCH_PER_WORKER = 2

# Column names accepted in --prompts / --transcripts CSV files (av-benchmark writes `name,caption`).
KEY_COLUMNS = ("name", "stem", "id", "file", "filename", "video", "audio")
TEXT_COLUMNS = ("caption", "prompt", "text", "transcript", "label")
LANGUAGE_COLUMN = "language"

# `--random-weights tiny`: the small configs of torchmetrics_av.testing (same architectures, random init); the toy
# tokenizer and the seed live there too (re-exported here for existing imports).
RANDOM_WEIGHTS_SEED = TINY_SEED


class CLIError(Exception):
    """A user-facing error: printed without a traceback, exit code 2."""


# ---------------------------------------------------------------------------------------------------------------------
# Files


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
    """A generated clip and, when the stem is paired and a metric needs it, its reference."""

    stem: str
    gen: Clip
    ref: Clip | None = None


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
    def gen_videos(self) -> list[str]:
        """Generated stems whose file is a video."""
        return sorted(s for s, p in self.gen.items() if is_video(p))


def is_video(path: Path) -> bool:
    """Whether ``path`` has a video extension."""
    return path.suffix.lower() in VIDEO_EXTENSIONS


def list_files(folder: str | Path | None, extensions: Sequence[str] = MEDIA_EXTENSIONS) -> dict[str, Path]:
    """Map stem -> path for the media files directly inside ``folder`` (raises on duplicate stems or none)."""
    if folder is None:
        return {}
    root = Path(folder)
    if not root.is_dir():
        raise CLIError(f"{root} is not a folder")
    out: dict[str, Path] = {}
    for path in sorted(root.iterdir()):
        if path.suffix.lower() in extensions and path.is_file():
            if path.stem in out:
                raise CLIError(f"two files share the stem {path.stem!r} in {root}: {out[path.stem].name}, {path.name}")
            out[path.stem] = path
    if not out:
        raise CLIError(f"no audio or video files ({', '.join(extensions)}) in {root}")
    return out


def read_clip(stem: str, path: Path, frames: bool) -> Clip:
    """Decode one file with :mod:`torchmetrics_av.io` (soundfile for audio, PyAV for videos).

    Args:
        stem: the file's stem.
        path: the file.
        frames: keep a video's frames (only the video metrics need them).

    Raises:
        ValueError: a video without an audio stream, or a file without samples.
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


def _bounded_map(fn: Callable[[str], Any], stems: Sequence[str], workers: int) -> Iterator[Any]:
    """``map(fn, stems)`` on ``workers`` threads, in order, with at most ``workers * PREFETCH_PER_WORKER`` ahead."""
    workers = max(1, workers)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        todo = iter(stems)
        pending: deque[Future] = deque()
        for stem in todo:
            pending.append(pool.submit(fn, stem))
            if len(pending) >= workers * PREFETCH_PER_WORKER:
                break
        while pending:
            result = pending.popleft().result()
            for stem in todo:
                pending.append(pool.submit(fn, stem))
                break
            yield result


def _progress(total: int, desc: str) -> Callable[[int], None]:
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with transformers/huggingface_hub
        return lambda n: None
    bar = tqdm(total=total, desc=desc, unit="file", file=sys.stderr, leave=False)
    return bar.update


def _tick(bar: Callable[[int], Any]) -> Callable[[Any], Any]:
    """Identity that advances ``bar`` by one file."""

    def tick(x: Any) -> Any:
        bar(1)
        return x

    return tick


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


def read_texts(path: str | Path, what: str) -> dict[str, tuple[str, str | None]]:
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
    out: dict[str, tuple[str, str | None]] = {}

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
                text = next((value[c] for c in TEXT_COLUMNS if c in value), None)
                add(key, text, value.get(LANGUAGE_COLUMN))
            else:
                add(key, value)
        return out
    with open(file, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip().lower() for c in reader.fieldnames or []]
        key_col = next((c for c in KEY_COLUMNS if c in columns), None)
        text_col = next((c for c in TEXT_COLUMNS if c in columns), None)
        if key_col is None or text_col is None:
            raise CLIError(
                f"--{what} {file}: a CSV needs a header with a key column ({', '.join(KEY_COLUMNS)}) and a text column "
                f"({', '.join(TEXT_COLUMNS)}); found {columns}"
            )
        for row in reader:
            row = {(k or "").strip().lower(): v for k, v in row.items()}
            add(row[key_col], row[text_col], row.get(LANGUAGE_COLUMN))
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Backbones


def _find_weights(weights_dir: str, candidates: Sequence[str], url: str) -> str:
    """The first of ``candidates`` (file or folder names) inside ``weights_dir``; a readable error otherwise."""
    root = Path(weights_dir).expanduser()
    for name in candidates:
        if (root / name).exists():
            return str(root / name)
    raise CLIError(
        f"{candidates[0]} is not in --weights-dir {weights_dir} (looked for {', '.join(candidates)}); "
        f"download it from {url}"
    )


def random_backbone(kind: str, size: str, protocol: str) -> nn.Module:
    """A randomly initialised backbone (``size`` ``"tiny"``: :func:`torchmetrics_av.testing.tiny_backbone`;
    ``"full"``: official shapes). Seeded with :data:`RANDOM_WEIGHTS_SEED`, so that the same call gives the same
    weights. For tests only.
    """
    if size == "tiny":
        return tiny_backbone(kind, protocol=protocol) if kind == "clap" else tiny_backbone(kind)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_WEIGHTS_SEED)
        if kind == "passt":
            from torchmetrics_av.backbones.passt import PaSST

            return PaSST(pretrained=False)
        if kind == "clap":
            from torchmetrics_av.backbones.clap import CLAP

            return CLAP(pretrained=False, protocol=protocol, tokenizer=ToyTokenizer())
        if kind == "whisper":
            from torchmetrics_av.backbones.whisper import Whisper

            return Whisper(pretrained=False)
        if kind == "audiobox":
            from torchmetrics_av.backbones.audiobox import Audiobox

            return Audiobox(pretrained=False)
        if kind == "imagebind":
            from torchmetrics_av.backbones.imagebind import ImageBind

            return ImageBind(pretrained=False)
        from torchmetrics_av.backbones.synchformer import Synchformer

        return Synchformer(pretrained=False)


def _pretrained_backbone(kind: str, args: argparse.Namespace) -> nn.Module:
    """The official checkpoint of ``kind``: from ``--weights-dir`` when given, else the cache or a download."""
    wd = args.weights_dir
    if kind == "passt":
        from torchmetrics_av.backbones.passt import PASST_CHECKPOINT, PaSST

        return PaSST(weights=wd and _find_weights(wd, [PASST_CHECKPOINT.filename], PASST_CHECKPOINT.source))
    if kind == "clap":
        from torchmetrics_av.backbones.clap import AVBENCH_CHECKPOINT, CLAP, FASTVIDEO_REPO, LAION_TOKENIZER_REPO

        if wd is None:
            return CLAP(protocol=args.protocol)
        if get_protocol(args.protocol).clap_fusion:
            name = FASTVIDEO_REPO.split("/")[-1]
            url = f"https://huggingface.co/{FASTVIDEO_REPO}"
            return CLAP(weights=_find_weights(wd, [name, FASTVIDEO_REPO], url), protocol=args.protocol)
        weights = _find_weights(wd, [AVBENCH_CHECKPOINT.filename], AVBENCH_CHECKPOINT.source)
        tokenizer = None
        tok_name = LAION_TOKENIZER_REPO.split("/")[-1]
        for folder in (Path(wd) / tok_name, Path(wd) / LAION_TOKENIZER_REPO):
            if folder.is_dir():
                from transformers import AutoTokenizer

                tokenizer = AutoTokenizer.from_pretrained(str(folder))
                break
        return CLAP(weights=weights, protocol=args.protocol, tokenizer=tokenizer)
    if kind == "whisper":
        from torchmetrics_av.backbones.whisper import Whisper, whisper_checkpoint

        try:
            ckpt = whisper_checkpoint(args.whisper_model)
        except ValueError as err:
            raise CLIError(f"--whisper-model: {err}") from err
        names = [ckpt.filename, Path(str(ckpt.url)).name]
        return Whisper(weights=wd and _find_weights(wd, names, ckpt.source), name=args.whisper_model)
    if kind == "audiobox":
        from torchmetrics_av.backbones.audiobox import AUDIOBOX_HUB_REPO, AUDIOBOX_WEIGHTS, Audiobox

        folder = AUDIOBOX_WEIGHTS.filename.split("/")[0]
        url = f"https://huggingface.co/{AUDIOBOX_HUB_REPO}"
        return Audiobox(weights=wd and _find_weights(wd, [folder, AUDIOBOX_HUB_REPO], url))
    if kind == "imagebind":
        from torchmetrics_av.backbones.imagebind import IMAGEBIND_CHECKPOINT, ImageBind

        return ImageBind(weights=wd and _find_weights(wd, [IMAGEBIND_CHECKPOINT.filename], IMAGEBIND_CHECKPOINT.source))
    from torchmetrics_av.backbones.synchformer import SYNCHFORMER_CHECKPOINT, Synchformer

    return Synchformer(
        weights=wd and _find_weights(wd, [SYNCHFORMER_CHECKPOINT.filename], SYNCHFORMER_CHECKPOINT.source)
    )


# Which backbone each metric runs on (FD and KL share one PaSST and its forward passes).
METRIC_BACKBONE = {
    "fd_passt": "passt",
    "kl_passt": "passt",
    "clap": "clap",
    "wer": "whisper",
    "aesthetics": "audiobox",
    "imagebind": "imagebind",
    "desync": "synchformer",
}


def _weights_hint(kind: str, args: argparse.Namespace) -> str:
    """What ``--weights-dir`` must hold for backbone ``kind`` (for error messages)."""
    if kind == "clap":
        if get_protocol(args.protocol).clap_fusion:
            return "the folder clap-htsat-fused/ (config.json, model.safetensors, tokenizer files)"
        return "music_speech_audioset_epoch_15_esc_89.98.pt (and the tokenizer folder roberta-base/)"
    if kind == "whisper":
        return f"{args.whisper_model}.pt"
    return {
        "passt": "passt-s-f128-p16-s10-ap.476-swa.pt",
        "audiobox": "the folder audiobox-aesthetics/ (config.json, model.safetensors)",
        "imagebind": "imagebind_huge.pth",
        "synchformer": "synchformer_state_dict.pth",
    }[kind]


def build_backbone(kind: str, args: argparse.Namespace) -> nn.Module:
    """One backbone (``"passt"``, ``"clap"``, ``"whisper"``, ``"audiobox"``, ``"imagebind"``, ``"synchformer"``)
    on ``--device``: random with ``--random-weights``, else the official checkpoint.
    """
    from torchmetrics_av.weights import WeightsNotFoundError

    if args.random_weights:
        return random_backbone(kind, args.random_weights, args.protocol).to(args.device)
    try:
        return _pretrained_backbone(kind, args).to(args.device)
    except WeightsNotFoundError as err:
        raise CLIError(f"{err}\nOr pass --weights-dir DIR with {_weights_hint(kind, args)} inside.") from err


def build_passt(args: argparse.Namespace) -> Any:
    """The PaSST backbone: official weights (``--weights-dir``, cache or download), or random ones when asked."""
    return build_backbone("passt", args)


def desync_available() -> bool:
    """Whether the DeSync metric (``torchmetrics_av.av.desync``) can be imported."""
    try:
        importlib.import_module("torchmetrics_av.av.desync")
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------------------------------------------------------------
# evaluate


def _json_value(v: Any) -> Any:
    if isinstance(v, Tensor):
        return v.item() if v.numel() == 1 and v.ndim == 0 else v.tolist()
    return v


def _is_per_sample(v: Any) -> bool:
    return (isinstance(v, Tensor) and v.ndim > 0) or isinstance(v, list)


def _select_metrics(args: argparse.Namespace, inv: Inventory, has_prompts: bool, has_transcripts: bool) -> list[str]:
    needs = {
        "fd_passt": (bool(inv.ref or args.ref_stats), "--ref DIR or --ref-stats FILE"),
        "kl_passt": (bool(inv.paired), "--ref DIR with files paired by stem"),
        "clap": (has_prompts, "--prompts FILE (CSV name,caption or JSON {stem: text})"),
        "wer": (has_transcripts, "--transcripts FILE (CSV name,text[,language] or JSON {stem: text})"),
        "aesthetics": (True, ""),
        "imagebind": (bool(inv.gen_videos), "generated videos (.mp4/.mkv/.webm/.mov/.avi) in --gen"),
        "desync": (bool(inv.gen_videos), "generated videos (.mp4/.mkv/.webm/.mov/.avi) in --gen"),
    }
    has_desync = desync_available()
    if args.metrics == "auto":
        return [m for m in ALL_METRICS if needs[m][0] and (m != "desync" or has_desync)]
    wanted = list(dict.fromkeys(m.strip() for m in args.metrics.split(",") if m.strip()))
    if not wanted:
        raise CLIError(f"--metrics is empty; choose from {', '.join(ALL_METRICS)}")
    for m in wanted:
        if m not in ALL_METRICS:
            raise CLIError(f"unknown metric {m!r}; choose from {', '.join(ALL_METRICS)}")
        if not needs[m][0]:
            raise CLIError(f"{m} needs {needs[m][1]}")
        if m == "desync" and not has_desync:
            raise CLIError("desync is not available: torchmetrics_av.av.desync cannot be imported")
    return wanted


# Per-sample CSV columns of each metric: CSV column -> per_sample() key (FD has no per-sample values).
CSV_COLUMNS: dict[str, dict[str, str]] = {
    "kl_passt": {"kl_passt": "kl_softmax", "kl_passt_sigmoid": "kl_sigmoid"},
    "clap": {"clap_cosine": "score"},
    "wer": {
        "wer": "wer",
        "wer_errors": "errors",
        "wer_ref_tokens": "words",
        "wer_char_level": "char_level",
        "wer_transcript": "transcript",
    },
    "aesthetics": {f"aesthetics_{axis}": axis for axis in ("CE", "CU", "PC", "PQ")},
    "imagebind": {"imagebind_cosine": "score"},
    "desync": {"desync": "offset", "desync_offset_front": "offset_front", "desync_offset_back": "offset_back"},
}


class Evaluation:
    """State of one ``evaluate`` run: the metrics, which stems each has scored, and what each rejected."""

    def __init__(self, args: argparse.Namespace, wanted: list[str]) -> None:
        self.args = args
        # One backbone per model, shared by the metrics that use it (FD and KL: one PaSST and one forward per clip).
        self.backbones: dict[str, nn.Module] = {}
        for kind in dict.fromkeys(METRIC_BACKBONE[m] for m in wanted):
            self.backbones[kind] = build_backbone(kind, args)
        self.metrics: dict[str, Any] = {}
        for name in wanted:
            try:
                self.metrics[name] = self._metric(name, self.backbones[METRIC_BACKBONE[name]]).to(args.device)
            except ValueError as err:
                raise CLIError(f"{name}: {err}") from err
        self.fed: dict[str, list[str]] = {name: [] for name in wanted}
        self.skipped: dict[str, list[dict[str, str]]] = {name: [] for name in wanted}
        # Every generated stem gets one id, given to the metrics with its sample so that per_sample() rows map back.
        self.stem_ids: dict[str, int] = {}

    def _metric(self, name: str, bb: nn.Module) -> Any:
        """The metric ``name`` on backbone ``bb``, configured from the command line."""
        from torchmetrics_av import (
            AudioboxAesthetics,
            CLAPScore,
            FrechetAudioDistance,
            ImageBindScore,
            PaSSTKLDivergence,
            SpeechWordErrorRate,
        )

        args = self.args
        # --duration is av-benchmark's --audio_length: every metric that truncates takes it (main() rejects it under
        # a protocol without truncation).
        pt = {"protocol": args.protocol, "backbone": bb}
        if name == "fd_passt":
            fd = FrechetAudioDistance(**pt, batch_size=args.batch_size, duration=args.duration)
            if args.ref_stats:
                try:
                    fd.load_reference_stats(args.ref_stats)
                except (ValueError, OSError) as err:
                    raise CLIError(f"--ref-stats {args.ref_stats}: {err}") from err
            return fd
        if name == "kl_passt":
            return PaSSTKLDivergence(**pt, batch_size=args.batch_size, duration=args.duration)
        if name == "clap":
            return CLAPScore(**pt, batch_size=args.batch_size, duration=args.duration)
        if name == "wer":
            return SpeechWordErrorRate(**pt)
        if name == "aesthetics":
            return AudioboxAesthetics(**pt)
        if name == "imagebind":
            return ImageBindScore(**pt, duration=args.duration)
        from torchmetrics_av.av.desync import DeSync

        return DeSync(**pt, duration=args.duration)

    def ids(self, stems: Sequence[str]) -> list[int]:
        """The id of each stem (assigned on first sight)."""
        return [self.stem_ids.setdefault(s, len(self.stem_ids)) for s in stems]

    def update(self, name: str, stems: Sequence[str], call: Callable[[list[int]], None]) -> None:
        """``call(indices)`` updates metric ``name`` with those samples of ``stems``.

        The batch goes in one call (as the Python API would); if the metric rejects it with a ``ValueError`` (its
        state is then unchanged), the samples go in one by one, so that only the offending ones are skipped (and
        reported) while the others are scored.
        """
        if not stems:
            return
        try:
            call(list(range(len(stems))))
            self.fed[name].extend(stems)
            return
        except ValueError as err:
            if len(stems) == 1:
                self.skipped[name].append({"stem": stems[0], "error": str(err)})
                return
        for i, stem in enumerate(stems):
            try:
                call([i])
                self.fed[name].append(stem)
            except ValueError as err:
                self.skipped[name].append({"stem": stem, "error": str(err)})

    def add_batch(
        self,
        batch: list[Item],
        prompts: dict[str, tuple[str, str | None]],
        transcripts: dict[str, tuple[str, str | None]],
    ) -> None:
        """Feed one batch of generated clips (with their references, where paired) to every metric."""
        stems = [it.stem for it in batch]
        gen = [it.gen for it in batch]

        def pick(idx: list[int], clips: Sequence[Clip | None]) -> list[Clip]:
            return [c for c in (clips[i] for i in idx) if c is not None]

        if "fd_passt" in self.metrics:
            refs = [None if self.args.ref_stats else it.ref for it in batch]

            def fd(idx: list[int]) -> None:
                g, r = pick(idx, gen), pick(idx, refs)
                self.metrics["fd_passt"].update(
                    preds=[c.audio for c in g],
                    target=[c.audio for c in r] or None,
                    sample_rate=[c.sample_rate for c in g],
                    target_sample_rate=[c.sample_rate for c in r] or None,
                )

            self.update("fd_passt", stems, fd)
        if "kl_passt" in self.metrics:
            pairs = [it for it in batch if it.ref is not None]

            def kl(idx: list[int]) -> None:
                p = [pairs[i] for i in idx]
                self.metrics["kl_passt"].update(
                    [it.gen.audio for it in p],
                    [it.ref.audio for it in p],  # type: ignore[union-attr]
                    sample_rate=[it.gen.sample_rate for it in p],
                    target_sample_rate=[it.ref.sample_rate for it in p],  # type: ignore[union-attr]
                    ids=self.ids([it.stem for it in p]),
                )

            self.update("kl_passt", [it.stem for it in pairs], kl)
        for name, texts in (("clap", prompts), ("wer", transcripts)):
            if name not in self.metrics:
                continue
            sub = [c for c in gen if c.stem in texts]

            def text_metric(idx: list[int], name: str = name, sub: list[Clip] = sub, texts: dict = texts) -> None:
                clips = [sub[i] for i in idx]
                kw: dict[str, Any] = {
                    "sample_rate": [c.sample_rate for c in clips],
                    "ids": self.ids([c.stem for c in clips]),
                }
                if name == "wer":
                    kw["language"] = [texts[c.stem][1] for c in clips]
                self.metrics[name].update([c.audio for c in clips], [texts[c.stem][0] for c in clips], **kw)

            self.update(name, [c.stem for c in sub], text_metric)
        if "aesthetics" in self.metrics:

            def aes(idx: list[int]) -> None:
                clips = [gen[i] for i in idx]
                self.metrics["aesthetics"].update(
                    [c.audio for c in clips],
                    sample_rate=[c.sample_rate for c in clips],
                    ids=self.ids([c.stem for c in clips]),
                )

            self.update("aesthetics", stems, aes)
        videos = [c for c in gen if c.frames is not None]
        for name in VIDEO_METRICS:
            if name not in self.metrics:
                continue

            def av_metric(idx: list[int], name: str = name) -> None:
                clips = [videos[i] for i in idx]
                self.metrics[name].update(
                    [c.audio for c in clips],
                    [c.frames for c in clips],
                    sample_rate=[c.sample_rate for c in clips],
                    video_fps=[c.fps for c in clips],
                    ids=self.ids([c.stem for c in clips]),
                )

            self.update(name, [c.stem for c in videos], av_metric)

    def compute(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, dict[str, Any]]]:
        """Corpus values, non-per-sample details, and per-sample values keyed by stem."""
        values: dict[str, Any] = {}
        details: dict[str, Any] = {}
        per: dict[str, dict[str, Any]] = {}
        for name, metric in self.metrics.items():
            try:
                value = metric.compute()
            except ValueError as err:
                if self.args.metrics != "auto":
                    raise CLIError(f"{name}: {err}") from err
                # A metric picked by default that no sample could feed (e.g. DeSync on clips < 4.8 s) is reported as
                # null with its reason instead of failing the others.
                values[name] = None
                reason = str(err)
                if self.skipped[name]:
                    first = self.skipped[name][0]
                    reason += f" ({len(self.skipped[name])} rejected, e.g. {first['stem']}: {first['error']})"
                details[name] = {"error": reason, "n_skipped_by_cli": len(self.skipped[name])}
                for skip in self.skipped[name]:
                    per.setdefault(skip["stem"], {})[f"{name}_error"] = skip["error"]
                continue
            values[name] = {k: float(v) for k, v in value.items()} if isinstance(value, dict) else float(value)
            d = metric.details
            current = {k: v for k, v in d.items() if k not in d.deprecated_keys}
            details[name] = {k: _json_value(v) for k, v in current.items() if not _is_per_sample(v)}
            details[name]["n_skipped_by_cli"] = len(self.skipped[name])
            if name in CSV_COLUMNS:
                stems = {i: s for s, i in self.stem_ids.items()}
                rows = metric.per_sample()
                for j, sample_id in enumerate(rows["ids"].tolist()):
                    row = per.setdefault(stems[sample_id], {})
                    for column, key in CSV_COLUMNS[name].items():
                        value = rows[key][j]
                        row[column] = value.item() if isinstance(value, Tensor) else value
                for sample_id in d["skipped_ids"].tolist():
                    per.setdefault(stems[sample_id], {})[f"{name}_skipped"] = "silent"
            for skip in self.skipped[name]:
                per.setdefault(skip["stem"], {})[f"{name}_error"] = skip["error"]
        return values, details, per


def run_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Compute the requested metrics; return the JSON document (also written to ``--out``)."""
    from torchmetrics_av import __version__

    inv = Inventory(gen=list_files(args.gen), ref=list_files(args.ref) if args.ref else {})
    prompts = read_texts(args.prompts, "prompts") if args.prompts else {}
    transcripts = read_texts(args.transcripts, "transcripts") if args.transcripts else {}
    wanted = _select_metrics(args, inv, bool(prompts), bool(transcripts))
    ev = Evaluation(args, wanted)
    need_ref = ("fd_passt" in wanted and not args.ref_stats) or "kl_passt" in wanted
    need_frames = any(m in wanted for m in VIDEO_METRICS)
    rates: dict[str, set[int]] = {"gen": set(), "ref": set()}
    fps: set[float] = set()
    orphan_refs: list[str] = []  # paired references whose generated file is broken: still FD references

    def fail(path: Path, err: Exception) -> None:
        inv.broken.append({"file": str(path), "error": f"{type(err).__name__}: {err}"})

    def load_item(stem: str) -> Item | None:
        try:
            gen = read_clip(stem, inv.gen[stem], frames=need_frames)
        except Exception as err:  # noqa: BLE001 - any decoder failure is reported per file
            fail(inv.gen[stem], err)
            if need_ref and stem in inv.ref:
                orphan_refs.append(stem)
            return None
        ref = None
        if need_ref and stem in inv.ref:
            try:
                ref = read_clip(stem, inv.ref[stem], frames=False)
            except Exception as err:  # noqa: BLE001
                fail(inv.ref[stem], err)
        return Item(stem, gen, ref)

    def load_ref(stem: str) -> Clip | None:
        try:
            return read_clip(stem, inv.ref[stem], frames=False)
        except Exception as err:  # noqa: BLE001
            fail(inv.ref[stem], err)
            return None

    # Paired stems first (KL needs both sides in one call), then the other generated files, each in sorted order.
    bar = _progress(len(inv.gen), "evaluate")
    for group in (inv.paired, inv.unmatched_gen):
        items = (it for it in map(_tick(bar), _bounded_map(load_item, group, args.num_workers)) if it is not None)
        for batch in batches(items, args.batch_size):
            rates["gen"].update(it.gen.sample_rate for it in batch)
            rates["ref"].update(it.ref.sample_rate for it in batch if it.ref is not None)
            fps.update(it.gen.fps for it in batch if it.gen.fps is not None)
            ev.add_batch(batch, prompts, transcripts)
    if "fd_passt" in wanted and not args.ref_stats:
        rest = sorted([*inv.unmatched_ref, *orphan_refs])
        loaded = (c for c in _bounded_map(load_ref, rest, args.num_workers) if c is not None)
        for batch in batches(loaded, args.batch_size):
            rates["ref"].update(c.sample_rate for c in batch)
            ev.update(
                "fd_passt",
                [c.stem for c in batch],
                lambda idx, b=batch: ev.metrics["fd_passt"].update(
                    target=[b[i].audio for i in idx], target_sample_rate=[b[i].sample_rate for i in idx]
                ),
            )
    values, details, per_sample = ev.compute()
    inv.broken.sort(key=lambda b: b["file"])
    broken_files = {b["file"]: b["error"] for b in inv.broken}
    rows: dict[str, dict[str, Any]] = {}
    for stem in sorted(inv.gen):
        row: dict[str, Any] = {"file": inv.gen[stem].name}
        if str(inv.gen[stem]) in broken_files:
            row["error"] = broken_files[str(inv.gen[stem])]
        row.update(per_sample.get(stem, {}))
        rows[stem] = row
    return {
        "metrics": values,
        "details": details,
        "provenance": {
            "library_version": __version__,
            "torch_version": torch.__version__,
            "protocol": args.protocol,
            "duration_s": args.duration,
            "backbones": {type(bb).__name__: getattr(bb, "checkpoint_id", "unknown") for bb in ev.backbones.values()},
            "random_weights": args.random_weights or False,
            "sample_rates": {k: sorted(v) for k, v in rates.items()},
            "video_fps": sorted(fps),
            "device": str(args.device),
            "batch_size": args.batch_size,
            "whisper_model": args.whisper_model if "wer" in wanted else None,
            "gen_dir": str(args.gen),
            "ref_dir": str(args.ref) if args.ref else None,
            "ref_stats": str(args.ref_stats) if args.ref_stats else None,
            "prompts": str(args.prompts) if args.prompts else None,
            "transcripts": str(args.transcripts) if args.transcripts else None,
        },
        "files": {
            "n_gen": len(inv.gen),
            "n_gen_videos": len(inv.gen_videos),
            "n_ref": len(inv.ref),
            "n_paired": len(inv.paired),
            "n_scored": {name: len(ev.fed[name]) for name in wanted if name != "fd_passt"},
            "unmatched_gen": inv.unmatched_gen if inv.ref else [],
            "unmatched_ref": inv.unmatched_ref,
            "without_prompt": sorted(set(inv.gen) - set(prompts)) if "clap" in wanted else [],
            "unused_prompts": sorted(set(prompts) - set(inv.gen)),
            "without_transcript": sorted(set(inv.gen) - set(transcripts)) if "wer" in wanted else [],
            "unused_transcripts": sorted(set(transcripts) - set(inv.gen)),
            "audio_only_gen": sorted(set(inv.gen) - set(inv.gen_videos)) if need_frames else [],
            "broken": inv.broken,
            "skipped": {name: s for name, s in ev.skipped.items() if s},
        },
        "per_sample": rows,
    }


def write_outputs(doc: dict[str, Any], out: Path, csv_path: Path | None) -> None:
    """Write the JSON document and the per-sample CSV (one row per generated stem)."""
    out.write_text(json.dumps(doc, indent=2, ensure_ascii=False, default=str))
    if csv_path is not None:
        columns = ["file", *sorted({k for row in doc["per_sample"].values() for k in row} - {"file"})]
        with open(csv_path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["stem", *columns])
            for stem, row in doc["per_sample"].items():
                writer.writerow([stem, *[row.get(c, "") for c in columns]])


# ---------------------------------------------------------------------------------------------------------------------
# reference


def run_reference(args: argparse.Namespace) -> dict[str, Any]:
    """Embed a reference folder and write FD statistics to ``--out``."""
    from torchmetrics_av import FrechetAudioDistance

    files = list_files(args.ref)
    broken: list[dict[str, str]] = []
    fd = FrechetAudioDistance(
        protocol=args.protocol, backbone=build_passt(args), batch_size=args.batch_size, duration=args.duration
    ).to(args.device)

    def load(stem: str) -> Clip | None:
        try:
            return read_clip(stem, files[stem], frames=False)
        except Exception as err:  # noqa: BLE001 - any decoder failure is reported per file
            broken.append({"file": str(files[stem]), "error": f"{type(err).__name__}: {err}"})
            return None

    bar = _progress(len(files), "reference")
    loaded = (c for c in map(_tick(bar), _bounded_map(load, sorted(files), args.num_workers)) if c is not None)
    for batch in batches(loaded, args.batch_size):
        fd.update(target=[c.audio for c in batch], target_sample_rate=[c.sample_rate for c in batch])
    try:
        fd.save_reference_stats(args.out)
    except ValueError as err:
        raise CLIError(str(err)) from err
    return {"n_ref": len(files) - len(broken), "broken": sorted(broken, key=lambda b: b["file"]), "out": str(args.out)}


# ---------------------------------------------------------------------------------------------------------------------
# entry point


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``torchmetrics-av``."""
    parser = argparse.ArgumentParser(prog="torchmetrics-av", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--protocol", default="fastvideo", choices=list(PROTOCOLS))
        p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
        p.add_argument("--batch-size", type=int, default=8, help="files per metric update (default 8)")
        p.add_argument("--num-workers", type=int, default=2, help="decoder threads (default 2)")
        p.add_argument("--weights-dir", help="folder holding the official checkpoint files/folders (no download)")
        p.add_argument(
            "--duration",
            type=float,
            help="av-benchmark --audio_length in seconds (FD/KL/CLAP/IB/DeSync window; default 8); av-benchmark only",
        )
        p.add_argument("--random-weights", choices=["full", "tiny"], help=argparse.SUPPRESS)

    ev = sub.add_parser("evaluate", help="score a folder of generated audio or videos")
    ev.add_argument("--gen", required=True, help="folder of generated audio files or videos")
    ev.add_argument("--ref", help="folder of reference audio files or videos (paired by stem)")
    ev.add_argument("--ref-stats", help="FD reference statistics from `torchmetrics-av reference`")
    ev.add_argument("--prompts", help="CLAP prompts: CSV (name,caption) or JSON {stem: text}")
    ev.add_argument("--transcripts", help="WER references: CSV (name,text[,language]) or JSON {stem: text}")
    ev.add_argument(
        "--metrics", default="auto", help=f"comma-separated: {', '.join(ALL_METRICS)} (default: all the inputs allow)"
    )
    ev.add_argument("--whisper-model", default="base", help="official Whisper model for WER (default: base)")
    ev.add_argument("--out", default="results.json", help="JSON output path")
    ev.add_argument("--csv", help="per-sample CSV output path")
    common(ev)
    ref = sub.add_parser("reference", help="write FD reference statistics of a folder")
    ref.add_argument("--ref", required=True, help="folder of reference audio files or videos")
    ref.add_argument("--out", required=True, help="statistics file to write (.pt)")
    common(ref)
    return parser


def _warn(files: dict[str, Any]) -> None:
    labels = {
        "unmatched_gen": "generated file(s) without a reference",
        "unmatched_ref": "reference file(s) without a generated file",
        "without_prompt": "generated file(s) without a prompt (not in CLAP)",
        "unused_prompts": "prompt(s) without a generated file",
        "without_transcript": "generated file(s) without a transcript (not in WER)",
        "unused_transcripts": "transcript(s) without a generated file",
        "audio_only_gen": "generated audio file(s) without video (not in ImageBind/DeSync)",
    }
    for key, label in labels.items():
        if files.get(key):
            shown = ", ".join(files[key][:10]) + (", ..." if len(files[key]) > 10 else "")
            print(f"warning: {len(files[key])} {label}: {shown}", file=sys.stderr)
    for b in files.get("broken", []):
        print(f"warning: could not use {b['file']}: {b['error']}", file=sys.stderr)
    for name, skips in files.get("skipped", {}).items():
        for s in skips:
            print(f"warning: {name} skipped {s['stem']}: {s['error']}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``torchmetrics-av`` console script; returns the exit code."""
    from torchmetrics_av.weights import WeightsNotFoundError

    args = build_parser().parse_args(argv)
    try:
        if args.batch_size < 1:
            raise CLIError("--batch-size must be >= 1")
        if args.duration is not None and get_protocol(args.protocol).duration is None:
            raise CLIError(f"--duration applies to --protocol av-benchmark only ({args.protocol!r} uses whole clips)")
        if args.command == "evaluate":
            doc = run_evaluate(args)
            write_outputs(doc, Path(args.out), Path(args.csv) if args.csv else None)
            summary = doc["metrics"]
            files = doc["files"]
        else:
            summary = run_reference(args)
            files = summary
    except CLIError as err:
        print(f"torchmetrics-av: error: {err}", file=sys.stderr)
        return 2
    except WeightsNotFoundError as err:  # e.g. a tokenizer loaded on first use
        print(f"torchmetrics-av: error: {err}\nWith the CLI, put the files in --weights-dir DIR.", file=sys.stderr)
        return 2
    if args.random_weights:
        print("!! RANDOM WEIGHTS: these numbers are not the metrics", file=sys.stderr)
    _warn(files)
    if args.command == "evaluate":
        for name, value in summary.items():
            if value is None:
                print(f"warning: {name} could not be computed: {doc['details'][name]['error']}", file=sys.stderr)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
