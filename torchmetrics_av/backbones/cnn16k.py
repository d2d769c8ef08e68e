"""What the two 16 kHz AudioSet CNNs, PANNs' Cnn14 and VGGish, share: av-benchmark's loader and their tiny builds.

av-benchmark loads both models' input with one ``AudioDataset(sr=16000)`` (:func:`audiodataset_waveform`); tests
build both at toy widths with He-normal weights (:func:`tiny_cnn`), since PyTorch's default init would make every
clip's output nearly equal at those widths.

Example:
    >>> import torch
    >>> audiodataset_waveform(torch.zeros(2, 44100), 44100, 16000, duration=0.5).shape  # stereo 1 s -> first 0.5 s
    torch.Size([8000])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

import torch
from torch import Tensor, nn

from torchmetrics_av.preprocessing import as_clip_list, pad_or_trim, remove_dc, resample, to_mono

Net = TypeVar("Net", bound=nn.Module)


def audiodataset_waveform(clip: Tensor, sample_rate: int, target_rate: int, duration: float | None) -> Tensor:
    """One clip -> the model input as av-benchmark's ``AudioDataset`` loads it.

    Channel mean, per-clip DC removal (the mean over the *whole* clip, before truncation),
    ``torchaudio.transforms.Resample`` to ``target_rate``, then the first ``duration`` seconds; never padded.

    Args:
        clip: ``(T,)`` or ``(C, T)`` float audio in [-1, 1] (or int16 PCM) at ``sample_rate``.
        sample_rate: Hz.
        target_rate: the model's rate in Hz.
        duration: seconds kept; ``None`` keeps everything.

    Returns:
        ``(T',)`` float32 with ``T' = min(ceil(target_rate·T/sample_rate), target_rate·duration)``.

    Raises:
        ValueError: ``sample_rate`` is not a positive int, ``duration`` not positive, or a bad clip.
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
        raise ValueError(f"`sample_rate` must be a positive integer in Hz, got {sample_rate!r}")
    if duration is not None and not duration > 0:
        raise ValueError(f"`duration` must be positive seconds or None, got {duration!r}")
    (x,) = as_clip_list([clip], "clip")
    x = resample(remove_dc(to_mono(x)), sample_rate, target_rate, "torchaudio")
    if duration is not None:
        x = pad_or_trim(x, min(x.shape[-1], int(target_rate * duration)))  # a cut only: nothing is padded
    return x


def tiny_cnn(
    build: Callable[..., Net], defaults: Mapping[str, object], seed: int, overrides: Mapping[str, object]
) -> Net:
    """``build(**defaults | overrides)`` under ``torch.manual_seed(seed)`` in a forked RNG, He-initialised.

    The caller's random stream is untouched. Unless a checkpoint is loaded (``weights`` or ``pretrained``), every
    conv and linear weight of ``.model`` is redrawn He-normal (ReLU gain): PyTorch's default init shrinks activations
    layer after layer at toy widths, and tiny models must still tell clips apart in tests.

    Example:
        >>> from torchmetrics_av.backbones.vggish import VGGish
        >>> tiny_cnn(VGGish, {"pretrained": False, "widths": (4, 8, 8, 16), "hidden": 32}, 0, {}).embed_dim
        128
    """
    kwargs = {**defaults, **overrides}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build(**kwargs)
        if kwargs.get("weights") is None and not kwargs.get("pretrained"):
            for module in net.model.modules():
                if isinstance(module, nn.Conv2d | nn.Linear):
                    nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        return net
