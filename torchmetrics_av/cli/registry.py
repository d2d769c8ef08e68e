"""The metrics of the command line: one :class:`MetricSpec` each, in :data:`METRICS` (in output order).

A spec names the backbone (a key of :data:`~torchmetrics_av.cli.backbones.BACKBONES`, shared by every metric that
names it, so FD and KL on PaSST run one model), the :mod:`~torchmetrics_av.cli.feeds` feed (which also says which
inputs the metric needs), how to construct the metric from the parsed arguments, and which ``per_sample()`` keys
become CSV columns. The runner (:mod:`torchmetrics_av.cli.runner`) knows nothing else about any metric.

Adding a metric is one entry, e.g. FD on PANNs once that backbone has a spec::

    "fd_panns": MetricSpec("panns", Unpaired(), lambda bb, a: FrechetAudioDistance(backbone=bb, **_windowed(a))),

KL on PANNs is ``Paired()`` with columns, Inception Score ``GeneratedAudio()`` (its ``details`` carry the std),
KAD ``Unpaired()``, MS-CLAP ``WithText("prompts")`` on an ``"msclap"`` backbone.

Under ``--protocol av-benchmark`` the default set adds av-benchmark's other metrics (FD/KL on PANNs, FD on VGGish,
both Inception Scores, MS-CLAP: specs with ``protocols=("av-benchmark",)``), and each spec's ``avbench`` names the
keys of av-benchmark's ``output_metrics.json`` it gives (``--avbench-json``).

Example:
    >>> from torchmetrics_av.cli.registry import METRICS
    >>> list(METRICS)  # doctest: +NORMALIZE_WHITESPACE
    ['fd_passt', 'kl_passt', 'clap', 'wer', 'aesthetics', 'imagebind', 'desync', 'fd_vgg', 'fd_panns', 'kl_panns',
     'isc_panns', 'isc_passt', 'msclap']
    >>> METRICS["kl_passt"].backbone, type(METRICS["kl_passt"].feed).__name__
    ('passt', 'Paired')
    >>> dict(METRICS["isc_panns"].avbench)
    {'ISC-PANNS-mean': 'value', 'ISC-PANNS-std': 'inception_score_std'}
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from torchmetrics_av.cli.errors import CLIError
from torchmetrics_av.cli.estimators import keeps_rows
from torchmetrics_av.cli.feeds import (
    AudioVideo,
    Feed,
    FeedContext,
    GeneratedAudio,
    GeneratedOfPairs,
    Paired,
    PaSSTSets,
    Unpaired,
    WithText,
)

Builder = Callable[[nn.Module, argparse.Namespace], Any]


@dataclass(frozen=True)
class MetricSpec:
    """One metric of ``torchmetrics-av evaluate``.

    Attributes:
        backbone: key of the backbone it runs on, or ``args -> key`` when an option picks it (WER's
            ``--asr-backend``); read it through :meth:`backbone_key`.
        feed: how batches reach its ``update`` (and which inputs it needs).
        build: ``(backbone, args) -> metric`` (a ``ValueError`` becomes a readable error).
        columns: CSV column -> ``per_sample()`` key, for the per-file rows.
        requires: a module that must import for the metric to run (else it is left out of the default set).
        avbench: av-benchmark ``output_metrics.json`` key -> where its number is: ``"value"`` (the metric's value)
            or a ``details`` key (``--avbench-json``).
        protocols: the protocols whose default set (``--metrics auto``) includes it (``None``: every protocol);
            naming it in ``--metrics`` works under any protocol.
    """

    backbone: str | Callable[[argparse.Namespace], str]
    feed: Feed
    build: Builder
    columns: Mapping[str, str] = field(default_factory=dict)
    requires: str | None = None
    avbench: Mapping[str, str] = field(default_factory=dict)
    protocols: tuple[str, ...] | None = None

    def backbone_key(self, args: argparse.Namespace) -> str:
        """The key of :data:`~torchmetrics_av.cli.backbones.BACKBONES` this run of the metric uses."""
        return self.backbone if isinstance(self.backbone, str) else self.backbone(args)

    def in_default_set(self, protocol: str) -> bool:
        """Whether ``--metrics auto`` under ``protocol`` includes this metric (when the inputs allow it)."""
        return self.protocols is None or protocol in self.protocols

    def unavailable(self) -> str | None:
        """Why the metric cannot run in this installation (``None``: it can)."""
        if self.requires is None:
            return None
        try:
            importlib.import_module(self.requires)
        except ImportError as err:
            return f"{self.requires} cannot be imported ({err})"
        return None


def _windowed(args: argparse.Namespace) -> dict[str, Any]:
    """Protocol, batch size and av-benchmark's ``--audio_length`` window of the PaSST metrics."""
    return {"protocol": args.protocol, "batch_size": args.batch_size, **_duration(args)}


def _duration(args: argparse.Namespace) -> dict[str, Any]:
    """``duration=`` only when given: the metrics' own default is av-benchmark's 8 s."""
    return {} if args.duration is None else {"duration": args.duration}


def _fd(bb: nn.Module, args: argparse.Namespace) -> Any:
    from torchmetrics_av import FrechetAudioDistance

    fd = FrechetAudioDistance(backbone=bb, keep_rows=keeps_rows(args), **_windowed(args))
    if args.ref_stats:
        try:
            fd.load_reference_stats(args.ref_stats)
        except (ValueError, OSError) as err:
            raise CLIError(f"--ref-stats {args.ref_stats}: {err}") from err
    return fd


def _kl(bb: nn.Module, args: argparse.Namespace) -> Any:
    from torchmetrics_av import PaSSTKLDivergence

    return PaSSTKLDivergence(backbone=bb, **_windowed(args))


def _clap(bb: nn.Module, args: argparse.Namespace) -> Any:
    from torchmetrics_av import CLAPScore

    return CLAPScore(backbone=bb, protocol=args.protocol, batch_size=args.batch_size, **_duration(args))


def _fd_on(bb: nn.Module, args: argparse.Namespace) -> Any:
    """FD on the backbone it is given (PANNs, VGGish), without reference statistics."""
    from torchmetrics_av import FrechetAudioDistance

    return FrechetAudioDistance(backbone=bb, keep_rows=keeps_rows(args), **_windowed(args))


def _kl_on(bb: nn.Module, args: argparse.Namespace) -> Any:
    from torchmetrics_av import KLDivergence

    return KLDivergence(backbone=bb, **_windowed(args))


def _isc(bb: nn.Module, args: argparse.Namespace) -> Any:
    from torchmetrics_av import InceptionScore

    return InceptionScore(backbone=bb, **_windowed(args))


def _msclap(bb: nn.Module, args: argparse.Namespace) -> Any:
    from torchmetrics_av import CLAPScore

    # MS-CLAP reads whole clips (av-benchmark applies no --audio_length to it).
    return CLAPScore(model="ms-clap-2023", backbone=bb, protocol=args.protocol, batch_size=args.batch_size)


# --asr-backend -> the BACKBONES key of its backbone ("whisper" there is openai-whisper's, as before).
ASR_BACKBONE_KEYS = {
    "whisper": "hf_whisper",
    "openai-whisper": "whisper",
    "glm_asr": "glm_asr",
    "sensevoice": "sensevoice",
}


def _asr_backend(args: argparse.Namespace) -> str:
    from torchmetrics_av.backbones.asr import DEFAULT_ASR_BACKEND

    return getattr(args, "asr_backend", None) or DEFAULT_ASR_BACKEND


def _asr_backbone(args: argparse.Namespace) -> str:
    return ASR_BACKBONE_KEYS[_asr_backend(args)]


def _wer(bb: nn.Module, args: argparse.Namespace) -> Any:
    from torchmetrics_av import SpeechWordErrorRate

    return SpeechWordErrorRate(backbone=bb, asr_backend=_asr_backend(args), protocol=args.protocol)


def _aesthetics(bb: nn.Module, args: argparse.Namespace) -> Any:
    from torchmetrics_av import AudioboxAesthetics

    return AudioboxAesthetics(backbone=bb, protocol=args.protocol)


def _imagebind(bb: nn.Module, args: argparse.Namespace) -> Any:
    from torchmetrics_av import ImageBindScore

    return ImageBindScore(backbone=bb, protocol=args.protocol, duration=args.duration)


def _desync(bb: nn.Module, args: argparse.Namespace) -> Any:
    from torchmetrics_av.av.desync import DeSync

    return DeSync(backbone=bb, protocol=args.protocol, duration=args.duration)


# Protocols whose default set includes av-benchmark's own metrics (they have no FastVideo counterpart).
AVBENCH_ONLY = ("av-benchmark",)
# `--avbench-json`: a metric's value is the number of its av-benchmark key.
VALUE = "value"


def _isc_spec(backbone: str, feed: Feed, key: str) -> MetricSpec:
    """An Inception Score of av-benchmark: its ``<key>-mean`` is the value, ``<key>-std`` the details' std."""
    avbench = {f"{key}-mean": VALUE, f"{key}-std": "inception_score_std"}
    return MetricSpec(backbone, feed, _isc, avbench=avbench, protocols=AVBENCH_ONLY)


METRICS: dict[str, MetricSpec] = {
    "fd_passt": MetricSpec("passt", PaSSTSets(ref_stats=True), _fd, avbench={"FD-PASST": VALUE}),
    "kl_passt": MetricSpec(
        "passt",
        Paired(),
        _kl,
        columns={"kl_passt": "kl_softmax", "kl_passt_sigmoid": "kl_sigmoid"},
        avbench={"KL-PASST-softmax": VALUE},
    ),
    "clap": MetricSpec(
        "clap", WithText("prompts"), _clap, columns={"clap_cosine": "score"}, avbench={"LAION-CLAP-Score": VALUE}
    ),
    "wer": MetricSpec(
        _asr_backbone,
        WithText("transcripts", language=True),
        _wer,
        columns={
            "wer": "wer",
            "wer_errors": "errors",
            "wer_ref_tokens": "words",
            "wer_char_level": "char_level",
            "wer_transcript": "transcript",
        },
    ),
    "aesthetics": MetricSpec(
        "audiobox", GeneratedAudio(), _aesthetics, columns={f"aesthetics_{a}": a for a in ("CE", "CU", "PC", "PQ")}
    ),
    "imagebind": MetricSpec(
        "imagebind", AudioVideo(), _imagebind, columns={"imagebind_cosine": "score"}, avbench={"IB-Score": VALUE}
    ),
    "desync": MetricSpec(
        "synchformer",
        AudioVideo(),
        _desync,
        columns={"desync": "offset", "desync_offset_front": "offset_front", "desync_offset_back": "offset_back"},
        requires="torchmetrics_av.av.desync",
        avbench={"DeSync": VALUE},
    ),
    # av-benchmark's own metrics, with its sample sets (reference/avbench.md §0): FD on every clip of both folders,
    # KL and ISC-PASST on the pairs, ISC-PANNS on every generated clip.
    "fd_vgg": MetricSpec("vggish", Unpaired(), _fd_on, avbench={"FD-VGG": VALUE}, protocols=AVBENCH_ONLY),
    "fd_panns": MetricSpec("panns", Unpaired(), _fd_on, avbench={"FD-PANN": VALUE}, protocols=AVBENCH_ONLY),
    "kl_panns": MetricSpec(
        "panns",
        Paired(),
        _kl_on,
        columns={"kl_panns": "kl_softmax"},
        avbench={"KL-PANNS-softmax": VALUE},
        protocols=AVBENCH_ONLY,
    ),
    "isc_panns": _isc_spec("panns", GeneratedAudio(), "ISC-PANNS"),
    "isc_passt": _isc_spec("passt", GeneratedOfPairs(), "ISC-PASST"),
    "msclap": MetricSpec(
        "msclap",
        WithText("prompts"),
        _msclap,
        columns={"msclap_cosine": "score"},
        avbench={"MS-CLAP-Score": VALUE},
        protocols=AVBENCH_ONLY,
    ),
}


def select_metrics(requested: str, ctx: FeedContext) -> list[str]:
    """The metric names of a run: ``"auto"`` picks every available metric of the protocol's default set that the
    inputs allow, in :data:`METRICS` order.

    Args:
        requested: ``--metrics`` (comma-separated names, or ``"auto"``).
        ctx: the run's :class:`~torchmetrics_av.cli.feeds.FeedContext`.

    Raises:
        CLIError: an unknown name, an empty list, a metric whose inputs are missing or that cannot run here.
    """
    if requested == "auto":
        return [
            n
            for n, s in METRICS.items()
            if s.in_default_set(ctx.protocol) and s.feed.missing(ctx) is None and s.unavailable() is None
        ]
    wanted = list(dict.fromkeys(m.strip() for m in requested.split(",") if m.strip()))
    if not wanted:
        raise CLIError(f"--metrics is empty; choose from {', '.join(METRICS)}")
    for name in wanted:
        if name not in METRICS:
            raise CLIError(f"unknown metric {name!r}; choose from {', '.join(METRICS)}")
        spec = METRICS[name]
        if (need := spec.feed.missing(ctx)) is not None:
            raise CLIError(f"{name} needs {need}")
        if (why := spec.unavailable()) is not None:
            raise CLIError(f"{name} is not available: {why}")
    return wanted
