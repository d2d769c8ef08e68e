"""The input rule of the paired audio-video metrics (DeSync, ImageBindScore): ``preds[i]`` is the soundtrack of
``target[i]``.

Example:
    >>> import torch
    >>> from torchmetrics_av import DeSync
    >>> metric = DeSync(sample_rate=16000, video_fps=25)  # the model is built on first use only
    >>> clips, rates, videos, fps = audio_video_pairs(metric, torch.zeros(2, 16000), torch.zeros(2, 25, 3, 8, 8))
    >>> len(clips), rates, fps
    (2, [16000, 16000], [25.0, 25.0])
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from torchmetrics_av.base import BackboneMetric
from torchmetrics_av.preprocessing import (
    AudioInput,
    VideoInput,
    as_clip_list,
    as_video_list,
    frame_rates,
    sample_rates,
)


def audio_video_pairs(
    metric: BackboneMetric,
    preds: AudioInput,
    target: VideoInput,
    sample_rate: int | Sequence[int] | None = None,
    video_fps: float | Sequence[float] | None = None,
) -> tuple[list[Tensor], list[int], list[Tensor], list[float]]:
    """Validate a batch of pairs: ``(audio clips (C, T), their rates in Hz, videos (F, C, H, W), their frame rates)``.

    Args:
        metric: the metric; its ``sample_rate`` / ``video_fps`` are the defaults, its class names it in the messages.
        preds: audio, ``(B, T)`` / ``(B, C, T)`` or a list of clips.
        target: videos, ``(B, F, C, H, W)`` or a list of ``(F, C, H, W)``.
        sample_rate: rate(s) of ``preds`` in Hz; ``None`` for the metric's.
        video_fps: frame rate(s) of ``target``; ``None`` for the metric's.

    Raises:
        ValueError: bad audio or video, a missing or bad rate, or unequal counts of clips and videos.
    """
    clips = as_clip_list(preds, "preds")
    videos = as_video_list(target, "target")
    if len(clips) != len(videos):
        raise ValueError(
            f"`preds` has {len(clips)} audio clips but `target` has {len(videos)} videos; pair them 1:1 "
            f"({type(metric).__name__} scores paired clips)"
        )
    rate = sample_rate if sample_rate is not None else metric.sample_rate
    fps = video_fps if video_fps is not None else metric.video_fps
    return clips, sample_rates(rate, len(clips), "sample_rate"), videos, frame_rates(fps, len(videos), "video_fps")
