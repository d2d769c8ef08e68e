"""ImageBindScore (IB-score): cosine between the ImageBind embeddings of a video and of its soundtrack.

Example:
    >>> import torch
    >>> from torchmetrics_av import ImageBindScore
    >>> from torchmetrics_av.backbones import ImageBind
    >>> tiny = ImageBind(pretrained=False, vision_embed_dim=16, vision_num_blocks=1, vision_num_heads=2,
    ...                  audio_embed_dim=16, audio_num_blocks=1, audio_num_heads=2, out_embed_dim=8)
    >>> metric = ImageBindScore(sample_rate=16000, video_fps=8.0, backbone=tiny)
    >>> audio = torch.zeros(2, 1, 3 * 16000)
    >>> video = torch.zeros(2, 24, 3, 32, 32, dtype=torch.uint8)
    >>> metric.update(audio, video)
    >>> metric.compute().shape, metric.per_sample()["score"].shape
    (torch.Size([]), torch.Size([2]))
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from torchmetrics_av.av.pairs import audio_video_pairs
from torchmetrics_av.backbones.imagebind import (
    AUDIO_CLIP_SECONDS,
    AVBENCH_IB_FPS,
    ImageBind,
    imagebind_audio_clips,
    imagebind_video_clips,
)
from torchmetrics_av.base import BackboneMetric, Rows, require_extra
from torchmetrics_av.preprocessing import (
    AudioInput,
    VideoInput,
    check_frame_rate,
    check_positive_int,
    check_sample_rate,
    is_silent,
)
from torchmetrics_av.protocols import ProtocolName

# Vision clips per backbone forward: a 2-frame huge-ViT clip needs ~10 MB of activations, so 32 stays well under 1 GB.
DEFAULT_CLIP_BATCH_SIZE = 32
# av-benchmark pairs consecutive fps=0.5 frames: 2 frames (one pair) need int(0.5 * duration) >= 2, i.e. 4 s.
MIN_AVBENCH_DURATION_S = 2 / AVBENCH_IB_FPS
# Audio and video whose durations differ by more than one ImageBind clip (2 s) are sampled at visibly different
# moments (each side spreads its clips over its own whole stream), so the cosine compares different content.
DURATION_MISMATCH_S = float(AUDIO_CLIP_SECONDS)


class ImageBindScore(BackboneMetric):
    r"""IB-score: cosine between ImageBind-huge's vision embedding of a video and audio embedding of its soundtrack.

    Per pair, both sides are cut into clips; every clip is embedded and post-processed (vision: L2 norm; audio: L2
    norm x 20), the clip embeddings are averaged (not re-normalised) and the score is
    :math:`\cos(\bar v, \bar a)`, a plain cosine in [-1, 1] (papers often print x100), averaged over pairs.

    Audio (both protocols, ImageBind's own loader): resample to 16 kHz (``torchaudio.functional.resample``), 3 clips
    of 2 s spread over the whole file (pinned pytorchvideo rule: the last clip ends at the end, clips overlap below
    6 s), in-place DC removal, Kaldi fbank 128 x 204 of channel 0 (left), ``(x + 4.268) / 9.138``.

    Video (``../shared/golden/imagebind/README.md`` §5 lists every quirk that is reproduced):

    ==========  ===============================================  ====================================================
    step        ``"fastvideo"`` (stock ImageBind video loader)   ``"av-benchmark"`` (hkchengrex/av-benchmark)
    ==========  ===============================================  ====================================================
    frames      5 clips of 2 s over the whole video; first and   ffmpeg ``fps=0.5`` frames in the first
                last frame of each clip                          ``duration`` (t = 0.96, 2.96, ... s at 25 fps)
    resize      bilinear short side 224, float, no antialias     bicubic short side 224 on uint8, antialias
    clips       5 x 3 crops = 15                                 consecutive frame pairs x 3 crops = 9 (at 8 s)
    ==========  ===============================================  ====================================================

    Both use the CLIP mean/std and left/centre/right (portrait: top/centre/bottom) 224 crops.

    Args:
        sample_rate: rate (Hz) of the audio given to ``update``; ``update(..., sample_rate=)`` overrides it.
        video_fps: frame rate of the videos (constant rate assumed); ``update(..., video_fps=)`` overrides it.
        protocol: ``"fastvideo"`` (default) or ``"av-benchmark"``.
        backbone: a :class:`~torchmetrics_av.backbones.ImageBind` to share; built on first use otherwise.
        weights: local ``imagebind_huge.pth`` (CC-BY-NC-SA 4.0), used when ``backbone`` is not given.
        duration: av-benchmark's ``--audio_length`` in seconds (default 8.0, at least 4), as in every metric:
            ``int(0.5 * duration)`` frames are used and videos must last about that long (av-benchmark drops shorter
            files; here they raise). An error under ``"fastvideo"`` (whole clips).
        clip_batch_size: most clips per backbone forward (memory bound only; results do not depend on it beyond
            float32 noise).
        duration_sec: deprecated alias of ``duration``.
        kwargs: forwarded to :class:`torchmetrics.Metric`.

    Inputs to ``update(preds, target, sample_rate=None, video_fps=None, ids=None)``:
        - ``preds``: audio ``(B, T)`` / ``(B, C, T)`` or a list of ``(T,)`` / ``(C, T)``; float in [-1, 1] or int16.
        - ``target``: video ``(B, F, 3, H, W)`` or a list of ``(F, 3, H, W)``; uint8 or float in [0, 1].
        - ``ids``: optional non-negative int per pair (e.g. dataset indices): a pair whose id was already seen (a
          repeat that ``DistributedSampler`` pads a rank with) is counted once.

    ``compute()`` / ``forward`` return the mean cosine (float64 scalar, not x100). ``per_sample()``: ``ids`` (int64,
    -1 where no ids were given), ``score`` (float64 cosine per pair), ``silent`` (the audio is all zeros) and
    ``duration_mismatch`` (audio and video durations differ by more than ``DURATION_MISMATCH_S`` = 2 s, one ImageBind
    clip), in rank order (rank 0 first), sorted by id where ids were given. ``details``: those, ``n_silent`` and
    ``n_duration_mismatch`` (their counts over the scored pairs) and the counts of :mod:`torchmetrics_av.base`;
    ``cosine`` and ``sample_id`` are deprecated. Both kinds of pair are scored exactly as the references score them
    (a silent track still has a finite fbank and an embedding); ``update`` warns ``UserWarning`` naming the
    durations of a mismatched pair.

    Raises:
        ValueError: a bad argument (named in the message).
        ModuleNotFoundError: ``torchvision`` is missing under ``"av-benchmark"`` (its uint8 resize).

    Example:
        >>> import torch
        >>> from torchmetrics_av.backbones import ImageBind
        >>> tiny = ImageBind(pretrained=False, vision_embed_dim=16, vision_num_blocks=1, vision_num_heads=2,
        ...                  audio_embed_dim=16, audio_num_blocks=1, audio_num_heads=2, out_embed_dim=8)
        >>> metric = ImageBindScore(sample_rate=16000, video_fps=25.0, protocol="av-benchmark", backbone=tiny)
        >>> metric.update(torch.zeros(1, 8 * 16000), torch.zeros(1, 200, 3, 36, 64, dtype=torch.uint8))
        >>> metric.compute().dtype
        torch.float64
    """

    higher_is_better = True
    plot_lower_bound = -1.0
    plot_upper_bound = 1.0
    _input_hint = "audio and video pairs"

    def __init__(
        self,
        sample_rate: int | None = None,
        video_fps: float | None = None,
        protocol: ProtocolName = "fastvideo",
        backbone: nn.Module | None = None,
        weights: str | None = None,
        *,
        duration: float | None = None,
        clip_batch_size: int = DEFAULT_CLIP_BATCH_SIZE,
        duration_sec: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(backbone=backbone, weights=weights, protocol=protocol, **kwargs)
        if self.spec.imagebind_frames == "ffmpeg":
            require_extra(type(self).__name__, ["torchvision"], "video")
        self.sample_rate = check_sample_rate(sample_rate, "sample_rate")
        self.video_fps = check_frame_rate(video_fps, "video_fps")
        self.clip_batch_size = check_positive_int(clip_batch_size, "clip_batch_size")
        self.duration = self.spec.resolve_duration(
            duration, duration_sec, alias="duration_sec", minimum=MIN_AVBENCH_DURATION_S
        )
        self.add_rows({"score": ((), torch.float64), "silent": ((), torch.bool), "duration_mismatch": ((), torch.bool)})

    def _build_backbone(self) -> nn.Module:
        return ImageBind(weights=self.weights)

    def _video_clips(self, video: Tensor, fps: float, index: int) -> Tensor:
        try:
            return imagebind_video_clips(video, fps, self.spec.imagebind_frames, self.duration)
        except ValueError as err:
            raise ValueError(f"`target[{index}]`: {err}") from err

    @staticmethod
    def _audio_clips(wave: Tensor, rate: int, index: int) -> Tensor:
        try:
            return imagebind_audio_clips(wave, rate)
        except ValueError as err:
            raise ValueError(f"`preds[{index}]`: {err}") from err

    @torch.no_grad()
    def embed(
        self,
        preds: AudioInput,
        target: VideoInput,
        sample_rate: int | Sequence[int] | None = None,
        video_fps: float | Sequence[float] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Clip-averaged embeddings of a batch, without touching the metric state.

        Returns:
            ``(vision (B, D), audio (B, D))`` float32: mean of L2-normalised vision clip embeddings, and mean of audio
            clip embeddings normalised and scaled by 20.
        """
        return self._embed_clips(*self._clips(preds, target, sample_rate, video_fps))

    def _clips(
        self,
        preds: AudioInput,
        target: VideoInput,
        sample_rate: int | Sequence[int] | None,
        video_fps: float | Sequence[float] | None,
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Validate a batch and cut it into the model's audio and video clips (no model call)."""
        return self._model_clips(*audio_video_pairs(self, preds, target, sample_rate, video_fps))

    def _model_clips(
        self, audio: list[Tensor], rates: list[int], videos: list[Tensor], fps: list[float]
    ) -> tuple[list[Tensor], list[Tensor]]:
        audio_clips = [self._audio_clips(a, r, i) for i, (a, r) in enumerate(zip(audio, rates))]
        video_clips = [self._video_clips(v, f, i) for i, (v, f) in enumerate(zip(videos, fps))]
        return audio_clips, video_clips

    def _embed_clips(self, audio_clips: list[Tensor], video_clips: list[Tensor]) -> tuple[Tensor, Tensor]:
        bb = self.backbone
        a_emb = bb.embed_audio(torch.cat(audio_clips), batch_size=self.clip_batch_size)
        v_emb = bb.embed_vision(torch.cat(video_clips), batch_size=self.clip_batch_size)
        a_mean = torch.stack([e.mean(dim=0) for e in a_emb.split([c.shape[0] for c in audio_clips])])
        v_mean = torch.stack([e.mean(dim=0) for e in v_emb.split([c.shape[0] for c in video_clips])])
        return v_mean, a_mean

    @torch.no_grad()
    def _score(
        self,
        preds: AudioInput,
        target: VideoInput,
        sample_rate: int | Sequence[int] | None = None,
        video_fps: float | Sequence[float] | None = None,
        ids: Sequence[int] | Tensor | None = None,
    ) -> Rows:
        # One validation pass; ids are checked before anything is appended.
        clips, rates, videos, fps = audio_video_pairs(self, preds, target, sample_rate, video_fps)
        sample_id = self._ids_tensor(ids, len(clips))
        vision, audio = self._embed_clips(*self._model_clips(clips, rates, videos, fps))
        # The references take a float32 cosine of the float32 clip means (F.cosine_similarity, eps 1e-8).
        cos = nn.functional.cosine_similarity(vision, audio, dim=-1).to(torch.float64)
        seconds = [(c.shape[-1] / r, v.shape[0] / f) for c, r, v, f in zip(clips, rates, videos, fps)]
        mismatch = [abs(a - v) > DURATION_MISMATCH_S for a, v in seconds]
        if any(mismatch):
            i = mismatch.index(True)
            warnings.warn(
                f"ImageBindScore: {sum(mismatch)} of {len(clips)} pairs have audio and video durations more than "
                f"{DURATION_MISMATCH_S:g} s apart (pair {i}: audio {seconds[i][0]:.2f} s, video {seconds[i][1]:.2f} "
                "s); ImageBind spreads its clips over each whole stream, so the two sides show different moments. "
                "The pairs are scored unchanged and counted in details['n_duration_mismatch']; trim both sides to "
                "the same span",
                UserWarning,
                stacklevel=3,
            )
        return {
            "ids": sample_id,
            "score": cos,
            "silent": torch.tensor([is_silent(c) for c in clips], dtype=torch.bool),
            "duration_mismatch": torch.tensor(mismatch, dtype=torch.bool),
        }

    def update(
        self,
        preds: AudioInput,
        target: VideoInput,
        sample_rate: int | Sequence[int] | None = None,
        video_fps: float | Sequence[float] | None = None,
        ids: Sequence[int] | Tensor | None = None,
    ) -> None:
        """Add pairs of generated audio (``preds``) and their videos (``target``); see the class docstring."""
        self._add(self._score(preds, target, sample_rate, video_fps, ids))

    def _reduce(self, rows: Rows) -> Tensor:
        return rows["score"].mean()

    def _summary(self, rows: Rows) -> dict[str, Any]:
        return {"n_silent": int(rows["silent"].sum()), "n_duration_mismatch": int(rows["duration_mismatch"].sum())}

    def _deprecated_details(self, rows: Rows, kept: Tensor) -> dict[str, tuple[Any, str]]:
        return {"cosine": (rows["score"], "per_sample()['score']")}
