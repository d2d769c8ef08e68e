r"""The ``torchmetrics-av`` command: evaluate a folder of generated audio or videos, with or without references.

Commands:

* ``torchmetrics-av evaluate --gen DIR [--ref DIR | --ref-stats stats.pt] [--prompts FILE] [--transcripts FILE]
  [--metrics LIST] ...`` writes a JSON file (corpus values, details and provenance: counts, protocol, backbone
  checkpoints, sample rates, video frame rates, library version) and, with ``--csv``, one CSV row per generated file
  with its per-sample values (KL, CLAP cosine, WER + transcript, aesthetics axes, IB cosine, DeSync offsets).
* ``torchmetrics-av reference --ref DIR --out stats.pt`` writes FD reference statistics that
  ``evaluate --ref-stats`` reuses without re-embedding the references.
* ``torchmetrics-av download [NAMES...|--all] [--weights-dir DIR]`` fetches and verifies the official checkpoints into
  a weights folder (names: checkpoints, backbones, metrics or protocols, e.g. ``av-benchmark wer``; none = every
  default one); ``torchmetrics-av weights --check [--weights-dir DIR]`` re-hashes that folder offline (``ok`` /
  ``missing`` / ``corrupt``); ``torchmetrics-av weights`` lists the checkpoint table.

Inputs. ``--gen`` holds audio files (``.wav .flac .ogg .mp3 .aiff``, read with soundfile) and/or videos (``.mp4 .mkv
.webm .mov .avi``: frames and the first audio stream decoded with PyAV); ``--ref`` the same (only the audio of
reference videos is used). Files are paired by stem (``gen/x.mp4`` <-> ``ref/x.flac``). ``--prompts`` (CLAP) and
``--transcripts`` (WER) are a CSV with a header (av-benchmark's ``name,caption``; a ``language`` column is read for
WER) or a JSON object ``{stem: text}`` / ``{stem: {"text": ..., "language": ...}}``; ``name`` may carry an
extension. Unmatched files and texts, undecodable or truncated files (a header promising more than the file holds) and
samples a metric rejects are reported in the JSON and on stderr, never dropped silently or scored short.

Metrics (``--metrics``, comma-separated; default: every metric the inputs allow):

==============  =======================================  ====================================================
name            needs                                    backbone (``--weights-dir`` file or folder)
==============  =======================================  ====================================================
``fd_passt``    ``--ref`` or ``--ref-stats``             PaSST ``passt-s-f128-p16-s10-ap.476-swa.pt``
``kl_passt``    ``--ref`` files paired by stem           PaSST (the same model and forward pass as FD)
``clap``        ``--prompts``                            CLAP: folder ``clap-htsat-fused`` ("fastvideo") or
                                                         ``music_speech_audioset_epoch_15_esc_89.98.pt``
                                                         (+ its tokenizer folder ``roberta-base``)
``wer``         ``--transcripts``                        ``--asr-backend``: whisper (folder ``whisper-base``
                                                         or ``base.pt``), openai-whisper (``whisper-base.pt``
                                                         or ``base.pt``, ``--whisper-model``), glm_asr
                                                         (``GLM-ASR-Nano-2512``), sensevoice
                                                         (``SenseVoiceSmall`` + ``fsmn-vad``)
``aesthetics``  generated audio                          Audiobox: folder ``audiobox-aesthetics``
``imagebind``   generated videos with audio              ImageBind ``imagebind_huge.pth``
``desync``      generated videos with audio (>= 4.8 s)   Synchformer ``synchformer_state_dict.pth``
==============  =======================================  ====================================================

``--weights-dir`` is a weights folder as ``download`` writes it (every file verified against the checkpoint table;
nothing downloaded for it). Without it the checkpoints come from the cache (``$TORCHMETRICS_AV_CACHE``, same layout)
or are downloaded. With ``--weights-dir`` or offline, one run lists every missing file of every backbone it needs,
each with its URL, and the ``torchmetrics-av download`` command that fetches them. ``--random-weights {tiny,full}``
runs random models offline, to try the command (the numbers are not the metrics; a RANDOM WEIGHTS banner says so).
``--device cuda`` without a GPU and a ``--weights-dir`` that does not exist are one-line errors. The numbers are those
of the Python API on the same data with the same batching (``--batch-size`` files per ``update`` call; tested); a
progress bar on stderr advances as files are scored. Every file is processed in sorted order: generated files with a
reference first, then the other generated files, then the other references (FD only).

Rejected samples: when a metric raises on a batch (e.g. a video shorter than DeSync's 4.8 s, a transcript with no
words), its state is restored and the batch is fed one file at a time; the files it still rejects are listed under
``files.skipped`` and in the CSV column ``<metric>_error``, and every other metric still reports. A metric that ends
with no scored sample is ``null`` with its reason (asked for with ``--metrics``, the run also exits with 2).
``--protocol av-benchmark --duration S`` sets av-benchmark's ``--audio_length`` (FD/KL/CLAP/ImageBind/DeSync window,
default 8 s).

Examples (shell)::

    torchmetrics-av evaluate --gen samples/ --ref vggsound_test/ --prompts captions.csv --out results.json \
        --csv per_sample.csv --protocol av-benchmark --weights-dir ~/checkpoints
    torchmetrics-av evaluate --gen speech/ --transcripts transcripts.json --metrics wer,aesthetics
    torchmetrics-av reference --ref vggsound_test/ --out vggsound_fd.pt
    torchmetrics-av evaluate --gen samples/ --ref-stats vggsound_fd.pt --metrics fd_passt

Layout: :mod:`~torchmetrics_av.cli.parser` (options), :mod:`~torchmetrics_av.cli.inputs` (listing, pairing,
decoding), :mod:`~torchmetrics_av.cli.backbones` and :mod:`~torchmetrics_av.cli.registry` (one spec per backbone and
per metric), :mod:`~torchmetrics_av.cli.feeds` (how a batch reaches ``update``), :mod:`~torchmetrics_av.cli.runner`
(the loop), :mod:`~torchmetrics_av.cli.estimators` (``--bootstrap``, ``--fd-inf``), :mod:`~torchmetrics_av.cli.outputs`
(JSON, CSV, warnings), :mod:`~torchmetrics_av.cli.commands`.

Example:
    >>> from torchmetrics_av.cli import build_parser
    >>> args = build_parser().parse_args(["evaluate", "--gen", "g", "--ref", "r", "--metrics", "fd_passt,clap"])
    >>> args.metrics, args.protocol
    ('fd_passt,clap', 'fastvideo')
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from torchmetrics_av.cli.errors import CLIError
from torchmetrics_av.cli.parser import build_parser
from torchmetrics_av.cli.registry import METRICS

__all__ = ["CLIError", "METRICS", "build_parser", "console_main", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``torchmetrics-av`` console script; returns the exit code (2: a user error)."""
    from torchmetrics_av.weights import WeightsNotFoundError

    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except CLIError as err:
        print(f"torchmetrics-av: error: {err}", file=sys.stderr)
    except WeightsNotFoundError as err:  # a file loaded on first use, after the backbones were built
        print(f"torchmetrics-av: error: {err}\nWith the CLI, put the files in --weights-dir DIR.", file=sys.stderr)
    return 2


def console_main(argv: Sequence[str] | None = None) -> int:
    """The ``torchmetrics-av`` console script (and ``python -m torchmetrics_av.cli``): :func:`main` in a process whose
    CPU allocator keeps freed memory (:func:`torchmetrics_av.allocator.tune_cpu_allocator`: the same numbers, batched
    CPU forwards up to ~2x faster; ``TORCHMETRICS_AV_CPU_ALLOCATOR=default`` opts out). :func:`main` itself, called
    from Python, leaves the caller's process as it is.
    """
    from torchmetrics_av.allocator import tune_cpu_allocator

    tune_cpu_allocator()
    return main(argv)
