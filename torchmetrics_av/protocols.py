"""Evaluation protocols: one frozen :class:`ProtocolSpec` per reference harness.

A *protocol* is everything a reference harness does between "file decoded" and "number printed" that changes the
result: which resampler, whether the clip's DC offset is removed, peak normalisation, truncation, the FD covariance
regulariser policy, KL windowing, CLAP's checkpoint and tokenisation, Synchformer's frame choice and resize, ImageBind's
frame choice. Metrics, backbones and preprocessing ask the spec (``spec.resampler``, ``spec.duration``,
``spec.eps_policy`` ...); this module is the only place that knows a protocol by its name.

* ``"fastvideo"`` (default): FastVideo's eval (``fastvideo/eval/audio``, reference/fastvideo.md).
* ``"av-benchmark"``: hkchengrex/av-benchmark, the harness behind MMAudio's Table 1 (reference/avbench.md).

Example:
    >>> from torchmetrics_av.protocols import get_protocol
    >>> spec = get_protocol("av-benchmark")
    >>> spec.resampler, spec.remove_dc, spec.duration, spec.eps_policy
    ('torchaudio', True, 8.0, 'on_failure')
    >>> get_protocol("fastvideo").skips_silent
    True
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Literal

Resampler = Literal["soxr_hq", "torchaudio", "torchaudio_functional"]
RESAMPLERS: tuple[str, ...] = ("soxr_hq", "torchaudio", "torchaudio_functional")
EpsPolicy = Literal["always", "on_failure", "never"]
ProtocolName = Literal["fastvideo", "av-benchmark"]

# av-benchmark's `--audio_length` default (MMAudio's tables on 8 s VGGSound clips): the first 8 s of every clip.
AVBENCH_DURATION_S = 8.0
# FastVideo peak-normalises every clip to -1 dBFS (`pyloudnorm.normalize.peak(x, -1.0)`) for CLAP and PaSST.
FASTVIDEO_PEAK_DBFS = -1.0
# laion_clap's text tokenisation (av-benchmark): `padding="max_length", truncation=True, max_length=77`.
LAION_TEXT_MAX_LENGTH = 77
# laion_clap's RoBERTa LayerNorm eps (the hub conversions keep transformers' 1e-12).
LAION_TEXT_LAYER_NORM_EPS = 1e-5


@dataclass(frozen=True)
class ProtocolSpec:
    """Every rule a protocol changes, as data. Fields are grouped by the code that reads them.

    Attributes:
        name: the protocol's name (``"fastvideo"`` or ``"av-benchmark"``).
        resampler: waveform resampler of the FD / KL / CLAP loaders (see
            :func:`torchmetrics_av.preprocessing.resample`).
        remove_dc: subtract each clip's mean before resampling (av-benchmark's ``wave - wave.mean()``).
        peak_dbfs: peak-normalise to this level after resampling (``None``: no normalisation). An all-zero clip cannot
            be normalised: such clips are skipped and counted (:attr:`skips_silent`).
        duration: default truncation in seconds (av-benchmark's ``--audio_length``), or ``None``: whole clips. Only a
            protocol with a duration accepts a metric's ``duration=`` argument (:meth:`resolve_duration`).
        eps_policy: when FD adds ``eps * I`` to both covariances (``"always"``: FastVideo; ``"on_failure"``: only when
            ``sqrtm`` fails, av-benchmark).
        kl_windows: KL_PaSST windows: ``"sliding"`` (stable-audio-metrics 10 s windows every 5 s, logits averaged) or
            ``"single"`` (the FD window: one forward per clip).
        clap_fusion: CLAP checkpoint: ``True`` = ``laion/clap-htsat-fused`` (HTSAT-tiny with feature fusion,
            FastVideo); ``False`` = laion_clap HTSAT-base ``music_speech_audioset_epoch_15_esc_89.98.pt``.
        clap_float64_waveform: hand CLAP's feature extractor the float64 peak-normalised waveform (FastVideo does)
            instead of rounding it to float32.
        clap_text_max_length: pad/truncate prompts to this many tokens (``None``: pad to the batch's longest prompt,
            never truncate).
        clap_text_layer_norm_eps: LayerNorm eps of the CLAP text tower (``None``: the checkpoint's own).
        video_frames: Synchformer frame choice at 25 fps: ``"nearest"`` (FastVideo's nearest-index conversion) or
            ``"ffmpeg"`` (``fps=25:round=near`` filter, av-benchmark).
        video_resize: Synchformer short-side resize: ``"interpolate"`` (float ``F.interpolate``) or ``"torchvision"``
            (uint8 ``v2.Resize`` kernel).
        desync_mel_pad: value of Synchformer's 66th log-mel frame: ``"min"`` (the clip's minimum) or ``"zero"``.
        desync_pad_short: zero-pad audio shorter than one Synchformer segment instead of raising.
        imagebind_frames: ImageBind video frames: ``"clips"`` (stock loader: 5 clips of 2 s, first and last frame) or
            ``"ffmpeg"`` (av-benchmark: ``fps=0.5`` frames in the first ``duration``).
        passt_pairs_only: a harness feeding a folder to FD_PaSST uses only the generated clips that have a reference,
            with those references (av-benchmark's ``evaluate()`` pairs its PaSST features by name; FD_PANNs / FD_VGG
            there use every clip). The metrics themselves take whatever they are given; the CLI reads this.
        asr_force_language: WER conditions the ASR on each clip's language hint (``force_language=True`` of
            :class:`~torchmetrics_av.backbones.asr.ASRBackbone`). ``False``: FastVideo's ``audio.wer`` never passes a
            language (Whisper detects it, SenseVoice gets ``"auto"``); the hint only picks character-level scoring.
    """

    name: str
    resampler: Resampler
    remove_dc: bool
    peak_dbfs: float | None
    duration: float | None
    eps_policy: EpsPolicy
    kl_windows: Literal["sliding", "single"]
    clap_fusion: bool
    clap_float64_waveform: bool
    clap_text_max_length: int | None
    clap_text_layer_norm_eps: float | None
    video_frames: Literal["nearest", "ffmpeg"]
    video_resize: Literal["interpolate", "torchvision"]
    desync_mel_pad: Literal["min", "zero"]
    desync_pad_short: bool
    imagebind_frames: Literal["clips", "ffmpeg"]
    passt_pairs_only: bool = False
    asr_force_language: bool = False

    @property
    def skips_silent(self) -> bool:
        """Whether all-zero clips are skipped (peak normalisation is undefined for them; the reference gives NaN)."""
        return self.peak_dbfs is not None

    def resolve_duration(
        self,
        duration: float | None = None,
        audio_length: float | None = None,
        *,
        alias: str = "audio_length",
        minimum: float = 0.0,
    ) -> float | None:
        """The truncation (seconds) a metric uses: ``duration``, else the deprecated alias, else the protocol default.

        The same rule for every metric that truncates: ``duration`` is only accepted by a protocol that truncates
        (av-benchmark's ``--audio_length``); under ``"fastvideo"`` whole clips are scored and giving it is an error.

        Args:
            duration: seconds, or ``None`` for the protocol's default.
            audio_length: the deprecated spelling (warns ``FutureWarning``).
            alias: the deprecated argument's name, for the messages (``"audio_length"``, ``"duration_sec"``).
            minimum: the shortest duration the metric's model accepts, in seconds.

        Raises:
            ValueError: both spellings given, a duration under a protocol without truncation, a value that is not a
                finite number of seconds, or one below ``minimum``.

        Example:
            >>> AV_BENCHMARK.resolve_duration(), AV_BENCHMARK.resolve_duration(5), FASTVIDEO.resolve_duration()
            (8.0, 5.0, None)
        """
        if audio_length is not None:
            warnings.warn(
                f"`{alias}` is deprecated and will be removed; use `duration` (seconds)", FutureWarning, stacklevel=3
            )
            if duration is not None:
                raise ValueError(f"give `duration` or its deprecated alias `{alias}`, not both")
            duration = audio_length
        if duration is None:
            return self.duration
        if self.duration is None:
            raise ValueError(
                f"`duration` applies to protocol='av-benchmark' only; protocol={self.name!r} scores the whole clip"
            )
        if isinstance(duration, bool) or not isinstance(duration, int | float) or not math.isfinite(duration):
            raise ValueError(f"`duration` must be a finite number of seconds, got {duration!r}")
        if duration <= 0:
            raise ValueError(f"`duration` must be positive seconds, got {duration!r}")
        if duration < minimum:
            raise ValueError(f"`duration` must be at least {minimum:g} s for this metric, got {duration!r}")
        return float(duration)


FASTVIDEO = ProtocolSpec(
    name="fastvideo",
    resampler="soxr_hq",  # librosa.load(sr=...) resamples with soxr HQ
    remove_dc=False,
    peak_dbfs=FASTVIDEO_PEAK_DBFS,
    duration=None,
    eps_policy="always",
    kl_windows="sliding",
    clap_fusion=True,
    clap_float64_waveform=True,
    clap_text_max_length=None,
    clap_text_layer_norm_eps=None,
    video_frames="nearest",
    video_resize="interpolate",
    desync_mel_pad="min",
    desync_pad_short=True,
    imagebind_frames="clips",
    asr_force_language=False,  # audio.wer: generate(input_features, max_new_tokens=256), no language= / task=
)

AV_BENCHMARK = ProtocolSpec(
    name="av-benchmark",
    resampler="torchaudio",  # AudioDataset: torchaudio.transforms.Resample
    remove_dc=True,
    peak_dbfs=None,
    duration=AVBENCH_DURATION_S,
    eps_policy="on_failure",
    kl_windows="single",
    clap_fusion=False,
    clap_float64_waveform=False,
    clap_text_max_length=LAION_TEXT_MAX_LENGTH,
    clap_text_layer_norm_eps=LAION_TEXT_LAYER_NORM_EPS,
    video_frames="ffmpeg",
    video_resize="torchvision",
    desync_mel_pad="zero",
    desync_pad_short=False,
    imagebind_frames="ffmpeg",
    passt_pairs_only=True,  # evaluate.py: unroll_paired_dict(gt_passt_features, pred_passt_features)
    asr_force_language=False,  # av-benchmark has no WER: FastVideo's pipeline, unchanged
)

_SPECS: dict[str, ProtocolSpec] = {spec.name: spec for spec in (FASTVIDEO, AV_BENCHMARK)}
PROTOCOLS: tuple[str, ...] = tuple(_SPECS)
DEFAULT_PROTOCOL = FASTVIDEO.name


def get_protocol(protocol: str | ProtocolSpec) -> ProtocolSpec:
    """The spec of a protocol name (a spec is returned as is).

    Raises:
        ValueError: an unknown name; the message lists the choices.

    Example:
        >>> get_protocol("fastvideo").kl_windows
        'sliding'
    """
    if isinstance(protocol, ProtocolSpec):
        return protocol
    if not isinstance(protocol, str) or protocol not in _SPECS:
        raise ValueError(f"`protocol` must be one of {PROTOCOLS}, got {protocol!r}")
    return _SPECS[protocol]


def same_protocol(a: str | ProtocolSpec, b: str | ProtocolSpec) -> bool:
    """Whether two protocol names/specs are the same protocol (e.g. a shared backbone's and a metric's).

    Example:
        >>> same_protocol("fastvideo", FASTVIDEO)
        True
    """
    return get_protocol(a).name == get_protocol(b).name
