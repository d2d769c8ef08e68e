"""DeSync: mean absolute audio-visual offset (seconds) predicted by Synchformer, for paired audio and video."""

from __future__ import annotations

import bisect
import os
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from torchmetrics_av.av.pairs import audio_video_pairs

# FRAME_CHUNK moved to the Synchformer video front end; re-exported for imports of the old name.
from torchmetrics_av.backbones.synchformer import FRAME_CHUNK as FRAME_CHUNK
from torchmetrics_av.backbones.synchformer import (
    VIDEO_FPS,
    VIDEO_SEGMENT_FRAMES,
    VIDEO_SEGMENT_STEP,
    WINDOW_SEGMENTS,
    Synchformer,
    synchformer_audio_mel,
    synchformer_frame_indices,
    synchformer_frames,
)
from torchmetrics_av.base import BackboneMetric, Rows
from torchmetrics_av.functional.desync import (
    NUM_OFFSET_CLASSES,
    desync_from_logits,
    exact_offset_grid,
    offset_classes,
)
from torchmetrics_av.preprocessing import (
    AudioInput,
    VideoInput,
    check_bool,
    check_frame_rate,
    check_sample_rate,
    is_silent,
)

# av-benchmark's `--audio_length` / `duration_sec` as used for MMAudio's tables (8 s VGGSound clips); the protocol
# spec (protocols.AV_BENCHMARK.duration) is what the metric uses.
AVBENCH_DURATION_S = 8.0
# Shortest clip DeSync can score: 14 segments = 13 hops + one 0.64 s window = 4.8 s.
MIN_DURATION_S = ((WINDOW_SEGMENTS - 1) * VIDEO_SEGMENT_STEP + VIDEO_SEGMENT_FRAMES) / VIDEO_FPS


class _Pair(NamedTuple):
    """A preprocessed (audio, video) pair: what the front and back windows need."""

    frames: Tensor  # (F, 3, 224, 224) frames of the needed video segments, in [-1, 1]
    segment_rows: list[int]  # row in `frames` of each needed segment's first frame
    mel: Tensor  # (n, 128, 66) log-mel of the needed audio segments
    num_segments: int  # S, equal for audio and video


def _needed_segments(num_segments: int) -> list[int]:
    """Segments that the front ``[0, 14)`` and back ``[S-14, S)`` windows use (the middle of a long clip is skipped)."""
    return sorted(set(range(WINDOW_SEGMENTS)) | set(range(num_segments - WINDOW_SEGMENTS, num_segments)))


class DeSync(BackboneMetric):
    r"""DeSync: Synchformer's predicted audio-visual offset, in seconds, averaged over the first and last 4.8 s.

    .. math::
        \mathrm{DeSync} = \frac{1}{N}\sum_{i=1}^{N}\tfrac{1}{2}\left(|\hat o^{front}_i| + |\hat o^{back}_i|\right)

    where :math:`\hat o` is the offset class (-2.0, -1.8, ..., +2.0 s) Synchformer predicts (argmax) for a clip's first
    14 and last 14 segments (0.64 s segments every 0.32 s). Lower is better; 0 means in sync. ``preds[i]`` (audio) is
    paired with ``target[i]`` (video).

    Protocols (``protocol=``):

    * ``"fastvideo"`` (default, FastVideo ``audio.desync``): video resampled to 25 fps by nearest index (``T' =
      round(T / fps * 25)``, ``idx = floor(n * fps / 25)``; at 24 fps frame 0 is duplicated first), float frames
      resized short side 224 with ``F.interpolate(bicubic, antialias)`` (``round`` sizes), centre crop
      ``(H'-224)//2``, ``(x - 0.5) / 0.5`` unclamped; the whole clip is used. Audio: channel mean,
      ``torchaudio.transforms.Resample`` to 16 kHz on the whole clip, no truncation; the 66th log-mel frame is padded
      with the clip's minimum log-mel value. FastVideo reads audio from a PCM-16 WAV: give int16 audio (or
      int16/32768 floats) to reproduce it bit for bit.
    * ``"av-benchmark"`` (hkchengrex/av-benchmark, MMAudio's tables): video at 25 fps as ffmpeg's
      ``fps=25:round=near:start_time=0`` delivers it (at 24 fps frame 11 is duplicated first), the first
      ``int(25 * duration)`` frames, uint8 ``Resize(224, bicubic)`` with torch's uint8 CPU kernel (long side floored),
      ``CenterCrop(224)``, ``/255``, ``Normalize(0.5, 0.5)``; float video is first quantised to uint8 (``round(x *
      255)``), as its rgb24 decoder would. Audio: channel mean, ``Resample`` to 16 kHz, the first
      ``int(16000 * duration)`` samples; the 66th log-mel frame is padded with 0.0. A clip shorter than ``duration``
      raises ``ValueError`` (av-benchmark's audio loader silently substitutes the next file instead).

    Both: 16 kHz segments of 10240 samples every 5120, ``MelSpectrogram(n_fft 1024, win 400, hop 160, 128 mels)``,
    ``log(x + 1e-6)``, ``(x + 4.2677393) / (2 * 4.5689974)``; video segments of 16 frames every 8. Audio and video must
    give the same number of segments ``S >= 14`` (at least 4.8 s); otherwise ``ValueError``. Only the segments the two
    windows use are encoded (for ``S > 28`` the middle is skipped, as in the references). The per-clip value is
    ``(|front| + |back|) / 2`` (FastVideo's score); the mean over clips equals av-benchmark's mean over 2N windows.

    As input to ``update``: ``preds`` audio, ``(B, T)``, ``(B, C, T)`` or a list of clips (float in [-1, 1] or int16);
    ``target`` video, ``(B, F, 3, H, W)`` uint8 in [0, 255] or float in [0, 1], or a list of ``(F, 3, H, W)``;
    ``sample_rate`` (Hz) and ``video_fps`` (frames/s), one value or one per clip, override the constructor's.

    As output of ``compute`` / ``forward``: scalar float64 mean DeSync in seconds. ``per_sample()`` (repeated
    ``ids`` counted once, sorted by id): ``ids``, ``offset`` (the clip's DeSync, seconds, from the references' float32
    grid: 0.800000011920929, so that the mean reproduces their numbers exactly), ``offset_front`` / ``offset_back``
    (signed seconds: the exact float64 value of the predicted class, -1.4 rather than -1.399999976), ``num_segments``,
    ``silent`` (the audio is all zeros); with ``keep_logits=True`` also ``logits_front`` / ``logits_back`` ``(N, 21)``.
    ``details``: those, ``n_silent`` (silent audio tracks among the scored pairs: they are scored as the references
    score them, a finite log-mel with an offset class, but that offset says nothing about sync) and the counts of
    :mod:`torchmetrics_av.base`; ``desync``, ``desync_front``, ``desync_back`` and ``sample_id`` are deprecated.

    Args:
        sample_rate: rate of the audio in Hz (one int or one per clip).
        video_fps: frame rate of the video (one number or one per clip).
        protocol: ``"fastvideo"`` or ``"av-benchmark"``.
        backbone: a :class:`~torchmetrics_av.backbones.Synchformer` to share.
        weights: local path of ``synchformer_state_dict.pth`` when ``backbone`` is not given.
        duration: av-benchmark's ``duration_sec`` / ``--audio_length`` in seconds (default 8.0, at least 4.8); an
            error under ``"fastvideo"`` (whole clips).
        keep_logits: also keep the 21 front/back logits of every clip (in ``details``).
        bf16: build the backbone with bfloat16 autocast for the encoders (opt-in, for GPUs; changes the numbers
            slightly, see the backbone).
        kwargs: forwarded to :class:`torchmetrics.Metric`.

    Raises:
        ValueError: a bad argument (named in the message).

    Example:
        >>> import torch
        >>> from torchmetrics_av import DeSync
        >>> from torchmetrics_av.backbones import Synchformer
        >>> _ = torch.manual_seed(0)
        >>> tiny = Synchformer(pretrained=False, embed_dim=16, depth=1, num_heads=2, sync_depth=1, sync_heads=2)
        >>> metric = DeSync(sample_rate=16000, video_fps=25, backbone=tiny)  # random weights: demo only
        >>> audio = torch.rand(1, 80000) - 0.5                                  # 5 s
        >>> video = torch.randint(0, 256, (1, 125, 3, 36, 64), dtype=torch.uint8)
        >>> metric.update(audio, video)
        >>> 0.0 <= float(metric.compute()) <= 2.0, metric.per_sample()["num_segments"].tolist()
        (True, [14])
    """

    higher_is_better = False
    plot_lower_bound = 0.0
    plot_upper_bound = 2.0

    def __init__(
        self,
        sample_rate: int | Sequence[int] | None = None,
        video_fps: float | Sequence[float] | None = None,
        protocol: str = "fastvideo",
        backbone: nn.Module | None = None,
        weights: str | os.PathLike | None = None,
        *,
        duration: float | None = None,
        keep_logits: bool = False,
        bf16: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(backbone=backbone, weights=weights, protocol=protocol, **kwargs)
        self.sample_rate = check_sample_rate(sample_rate, "sample_rate")
        self.video_fps = check_frame_rate(video_fps, "video_fps")
        self.duration = self.spec.resolve_duration(duration, minimum=MIN_DURATION_S)
        self.keep_logits = check_bool(keep_logits, "keep_logits")
        self.bf16 = check_bool(bf16, "bf16")
        columns = {name: ((), torch.float64) for name in ("offset", "offset_front", "offset_back")}
        columns["num_segments"] = ((), torch.int64)
        columns["silent"] = ((), torch.bool)
        if keep_logits:
            columns["logits_front"] = columns["logits_back"] = ((NUM_OFFSET_CLASSES,), torch.float32)
        self.add_rows(columns)

    def _build_backbone(self) -> nn.Module:
        return Synchformer(weights=self.weights, bf16=self.bf16)

    # ----------------------------------------------------------------------------------------------------------------
    # preprocessing

    def _audio_mel(self, clip: Tensor, rate: int, index: int) -> Tensor:
        """One ``(C, T)`` clip -> ``(S, 128, 66)`` normalised log-mel of all its segments (the backbone's front end)."""
        try:
            return synchformer_audio_mel(
                clip.to(self.device),
                rate,
                self.backbone.mel,
                pad_short=self.spec.desync_pad_short,
                pad=self.spec.desync_mel_pad,
                duration=self.duration,
            )
        except ValueError as err:
            raise ValueError(f"`preds[{index}]` {err} (protocol {self.protocol!r})") from err

    def _frame_index(self, video: Tensor, fps: float, index: int) -> Tensor:
        """Source frame of every 25 fps frame the protocol keeps (Synchformer's frame rule, ``spec.video_frames``)."""
        try:
            return synchformer_frame_indices(video.shape[0], fps, self.spec.video_frames, self.duration)
        except ValueError as err:
            raise ValueError(f"`target[{index}]` {err} (protocol {self.protocol!r})") from err

    def _frames(self, video: Tensor, frame_index: Tensor) -> Tensor:
        """Selected source frames -> ``(n, 3, 224, 224)`` float32 in about [-1, 1] on the metric's device."""
        return synchformer_frames(video, frame_index, self.spec.video_resize, self.device)

    def _prepare(self, clip: Tensor, rate: int, video: Tensor, fps: float, index: int) -> _Pair:
        """Validate and preprocess one pair, keeping only what the front and back windows use."""
        frame_index = self._frame_index(video, fps, index)
        s_v = max(0, (frame_index.shape[0] - VIDEO_SEGMENT_FRAMES) // VIDEO_SEGMENT_STEP + 1)
        mel = self._audio_mel(clip, rate, index)
        s_a = mel.shape[0]
        if min(s_v, s_a) < WINDOW_SEGMENTS:
            raise ValueError(
                f"pair {index} is too short: `target[{index}]` gives {s_v} video and `preds[{index}]` {s_a} audio "
                f"segments; DeSync needs {WINDOW_SEGMENTS} (at least {MIN_DURATION_S} s of audio and video)"
            )
        if s_v != s_a:
            raise ValueError(
                f"pair {index}: `target[{index}]` gives {s_v} video segments ({frame_index.shape[0]} frames at 25 "
                f"fps) but `preds[{index}]` gives {s_a} audio segments (16-frame / 10240-sample windows every 0.32 s); "
                "DeSync's back window needs equal counts: trim audio and video to the same duration"
            )
        needed = _needed_segments(s_v)
        # Only the frames of the needed segments are resized; each segment's 16 frames stay consecutive in this list.
        frame_rows = sorted({s * VIDEO_SEGMENT_STEP + f for s in needed for f in range(VIDEO_SEGMENT_FRAMES)})
        first_row = [bisect.bisect_left(frame_rows, s * VIDEO_SEGMENT_STEP) for s in needed]
        return _Pair(self._frames(video, frame_index[frame_rows]), first_row, mel[needed], s_v)

    # ----------------------------------------------------------------------------------------------------------------
    # update / compute

    def _video_features(self, pairs: list[_Pair]) -> list[Tensor]:
        """Encode the needed segments of every clip, batched across clips in chunks of ``backbone.segment_batch``."""
        flat = [p.frames[r : r + VIDEO_SEGMENT_FRAMES] for p in pairs for r in p.segment_rows]
        chunk = self.backbone.segment_batch
        feats = [self.backbone.video_features(torch.stack(flat[i : i + chunk])) for i in range(0, len(flat), chunk)]
        return list(torch.cat(feats).split([len(p.segment_rows) for p in pairs]))

    @torch.no_grad()
    def _score(
        self,
        preds: AudioInput,
        target: VideoInput,
        sample_rate: int | Sequence[int] | None = None,
        video_fps: float | Sequence[float] | None = None,
        ids: Sequence[int] | Tensor | None = None,
    ) -> Rows:
        clips, rates, videos, fps = audio_video_pairs(self, preds, target, sample_rate, video_fps)
        sample_id = self._ids_tensor(ids, len(clips))
        pairs = [self._prepare(c, r, v, f, i) for i, (c, r, v, f) in enumerate(zip(clips, rates, videos, fps))]
        vfeats = self._video_features(pairs)
        afeats = self.backbone.audio_features(torch.cat([p.mel for p in pairs])).split([p.mel.shape[0] for p in pairs])
        w = WINDOW_SEGMENTS
        windows_v = torch.stack([x for v in vfeats for x in (v[:w], v[-w:])])
        windows_a = torch.stack([x for a in afeats for x in (a[:w], a[-w:])])
        logits = self.backbone.sync_logits(windows_v, windows_a)
        front, back = logits[0::2], logits[1::2]
        # The score from the references' float32 grid (parity to the last digit); the reported signed offsets are
        # the exact float64 values of the same argmax classes.
        exact = exact_offset_grid().to(front.device)
        rows: Rows = {
            "ids": sample_id,
            "offset": desync_from_logits(front, back, self.backbone.grid),
            "offset_front": exact[offset_classes(front)],
            "offset_back": exact[offset_classes(back)],
            "num_segments": torch.tensor([p.num_segments for p in pairs], dtype=torch.int64),
            "silent": torch.tensor([is_silent(c) for c in clips], dtype=torch.bool),
        }
        if self.keep_logits:
            rows["logits_front"], rows["logits_back"] = front.float(), back.float()
        return rows

    def update(
        self,
        preds: AudioInput,
        target: VideoInput,
        sample_rate: int | Sequence[int] | None = None,
        video_fps: float | Sequence[float] | None = None,
        ids: Sequence[int] | Tensor | None = None,
    ) -> None:
        """Score every (audio, video) pair of the batch (nothing is added if a pair is invalid).

        ``ids`` (optional, one non-negative int per pair, e.g. dataset indices) lets ``compute`` drop the repeats
        that ``DistributedSampler`` pads ranks with; per-sample values are then sorted by id.
        """
        self._add(self._score(preds, target, sample_rate, video_fps, ids))

    def _reduce(self, rows: Rows) -> Tensor:
        return rows["offset"].mean()

    def _summary(self, rows: Rows) -> dict[str, Any]:
        # Scored as the references score them (a silent track still gives a finite log-mel and an offset class);
        # counted because such an offset says nothing about sync.
        return {"n_silent": int(rows["silent"].sum())}

    def _deprecated_details(self, rows: Rows, kept: Tensor) -> dict[str, tuple[Any, str]]:
        return {
            "desync": (rows["offset"], "per_sample()['offset']"),
            "desync_front": (rows["offset_front"].abs(), "per_sample()['offset_front'].abs()"),
            "desync_back": (rows["offset_back"].abs(), "per_sample()['offset_back'].abs()"),
        }
