"""Small random backbones for fast, offline tests of code that uses torchmetrics-av (yours and ours).

``tiny_backbone(name)`` builds any backbone of :mod:`torchmetrics_av.backbones` with the same architecture and
parameter names as the official model, but a few layers and a few channels wide, randomly initialised from a fixed
seed (the caller's random stream is left untouched). Nothing is downloaded; a forward takes milliseconds. The numbers
are meaningless: use it to check shapes, plumbing, DDP, checkpoints and error paths, never to report a metric.

Registry: :data:`TINY_BACKBONES` maps a name to a builder ``(**overrides) -> nn.Module``; add an entry for a new
backbone. :data:`TINY_CONFIGS` holds the constructor arguments the builders use.

Example:
    >>> import torch
    >>> from torchmetrics_av import FrechetAudioDistance
    >>> from torchmetrics_av.testing import tiny_backbone
    >>> fd = FrechetAudioDistance(sample_rate=16000, backbone=tiny_backbone("passt"))
    >>> fd.update(preds=torch.rand(3, 8000) - 0.5, target=torch.rand(3, 8000) - 0.5)
    >>> bool(fd.compute() >= 0)
    True
    >>> sorted(TINY_BACKBONES)
    ['audiobox', 'clap', 'imagebind', 'passt', 'synchformer', 'whisper']
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from torchmetrics_av.protocols import get_protocol

# Seed of every tiny backbone (so that two calls give the same weights, in any process).
TINY_SEED = 0
# Constructor arguments of each tiny backbone: the official architectures at 1-2 layers and 8-64 channels.
TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "passt": {"embed_dim": 32, "depth": 1, "num_heads": 2},
    "whisper": {
        "name": "tiny",
        "dims": {
            "n_audio_state": 64,
            "n_audio_head": 2,
            "n_audio_layer": 1,
            "n_text_state": 64,
            "n_text_head": 2,
            "n_text_layer": 1,
        },
        "sample_len": 4,
    },
    "audiobox": {
        "encoder_config": {
            "encoder_layers": 1,
            "encoder_embed_dim": 32,
            "encoder_ffn_embed_dim": 32,
            "encoder_attention_heads": 2,
            "conv_feature_layers": "[(16,10,5)] + [(16,3,2)] * 4 + [(16,2,2)] * 2",
            "conv_pos": 4,
            "conv_pos_groups": 2,
        },
        "model_config": {"nth_layer": 2},
    },
    "imagebind": {
        "vision_embed_dim": 16,
        "vision_num_blocks": 1,
        "vision_num_heads": 2,
        "audio_embed_dim": 16,
        "audio_num_blocks": 1,
        "audio_num_heads": 2,
        "out_embed_dim": 8,
    },
    "synchformer": {"embed_dim": 16, "depth": 1, "num_heads": 2, "sync_depth": 1, "sync_heads": 2},
}
# RoBERTa's vocabulary size and special ids (<s> 0, <pad> 1, </s> 2), for the offline stand-in tokenizer.
ROBERTA_VOCAB, ROBERTA_BOS, ROBERTA_PAD, ROBERTA_EOS = 50265, 0, 1, 2


class ToyTokenizer:
    """Deterministic offline stand-in for CLAP's RoBERTa tokenizer (tests and ``--random-weights`` only).

    Each whitespace-separated lower-cased word becomes one id ``3 + crc32(word) % (50265 - 3)`` between ``<s>`` and
    ``</s>``; padding, truncation and ``max_length`` behave as in transformers tokenizers. Numbers made with it are
    meaningless (as are those of random weights).

    Example:
        >>> ToyTokenizer()(["a dog"], padding=True)["input_ids"].shape
        torch.Size([1, 4])
    """

    pad_token_id = ROBERTA_PAD

    def __call__(
        self,
        texts: Sequence[str],
        padding: bool | str = False,
        truncation: bool = False,
        max_length: int | None = None,
        **_: Any,
    ) -> dict[str, Tensor]:
        """Token ids and attention mask, ``(N, L)`` int64."""
        first_id = ROBERTA_EOS + 1
        rows = [
            [ROBERTA_BOS, *(first_id + zlib.crc32(w.encode()) % (ROBERTA_VOCAB - first_id) for w in t.lower().split())]
            for t in texts
        ]
        rows = [r + [ROBERTA_EOS] for r in rows]
        if truncation and max_length is not None:
            rows = [r if len(r) <= max_length else r[: max_length - 1] + [ROBERTA_EOS] for r in rows]
        width = max_length if padding == "max_length" and max_length is not None else max(len(r) for r in rows)
        ids = torch.full((len(rows), width), ROBERTA_PAD, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        return {"input_ids": ids, "attention_mask": mask}


def _config(name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    return {**TINY_CONFIGS.get(name, {}), **overrides}


def _passt(**overrides: Any) -> nn.Module:
    from torchmetrics_av.backbones.passt import PaSST

    return PaSST(pretrained=False, **_config("passt", overrides))


def _clap(protocol: str = "fastvideo", **overrides: Any) -> nn.Module:
    from torchmetrics_av.backbones.clap import CLAP, small_clap_config

    spec = get_protocol(protocol)
    overrides.setdefault("config", small_clap_config(fusion=spec.clap_fusion))
    overrides.setdefault("tokenizer", ToyTokenizer())
    return CLAP(pretrained=False, protocol=spec.name, **overrides)


def _whisper(**overrides: Any) -> nn.Module:
    from torchmetrics_av.backbones.whisper import Whisper

    return Whisper(pretrained=False, **_config("whisper", overrides))


def _audiobox(**overrides: Any) -> nn.Module:
    from torchmetrics_av.backbones.audiobox import Audiobox

    return Audiobox(pretrained=False, **_config("audiobox", overrides))


def _imagebind(**overrides: Any) -> nn.Module:
    from torchmetrics_av.backbones.imagebind import ImageBind

    return ImageBind(pretrained=False, **_config("imagebind", overrides))


def _synchformer(**overrides: Any) -> nn.Module:
    from torchmetrics_av.backbones.synchformer import Synchformer

    return Synchformer(pretrained=False, **_config("synchformer", overrides))


# name -> builder(**overrides): add an entry here for a new backbone.
TINY_BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "passt": _passt,
    "clap": _clap,
    "whisper": _whisper,
    "audiobox": _audiobox,
    "imagebind": _imagebind,
    "synchformer": _synchformer,
}


def tiny_backbone(name: str, *, seed: int = TINY_SEED, **overrides: Any) -> nn.Module:
    """A small, randomly initialised backbone of the official architecture, built offline.

    Args:
        name: a key of :data:`TINY_BACKBONES` (``"passt"``, ``"clap"``, ``"imagebind"``, ``"synchformer"``,
            ``"whisper"``, ``"audiobox"``).
        seed: seed of the random initialisation (the global random stream is restored afterwards).
        overrides: constructor arguments that replace :data:`TINY_CONFIGS` entries (e.g. ``embed_dim=16``; for
            ``"clap"`` also ``protocol=`` and ``tokenizer=``, default :class:`ToyTokenizer`).

    Raises:
        ValueError: an unknown ``name``.

    Example:
        >>> net = tiny_backbone("passt", embed_dim=16)
        >>> net.embed_dim
        16
    """
    if name not in TINY_BACKBONES:
        raise ValueError(f"`name` must be one of {sorted(TINY_BACKBONES)}, got {name!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return TINY_BACKBONES[name](**overrides)
