"""``--random-weights {tiny,full}``: randomly initialised backbones, for trying the command and testing it offline.

The numbers they give are **not** the metrics (the command prints a RANDOM WEIGHTS banner). ``tiny`` builds each
backbone with the small configuration of its own tests; ``full`` builds the official architecture. Both are seeded
with :data:`RANDOM_WEIGHTS_SEED`, so the same call gives the same weights and a test can build them too. CLAP's
RoBERTa tokenizer is replaced by :class:`ToyTokenizer` (no download).

Example:
    >>> from torchmetrics_av.cli.random_weights import random_backbone
    >>> type(random_backbone("passt", "tiny", "fastvideo")).__name__
    'PaSST'
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

# `--random-weights tiny`: the small configs of each backbone's own tests/examples (same architecture, random init).
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
SIZES = ("tiny", "full")
# Seed of every random backbone, so that a test can build the same weights.
RANDOM_WEIGHTS_SEED = 0
# RoBERTa's vocabulary size and special ids (<s> 0, <pad> 1, </s> 2), for the offline stand-in tokenizer.
ROBERTA_VOCAB, ROBERTA_BOS, ROBERTA_PAD, ROBERTA_EOS = 50265, 0, 1, 2


class ToyTokenizer:
    """Deterministic offline stand-in for CLAP's RoBERTa tokenizer, used only with ``--random-weights``.

    Each whitespace-separated lower-cased word becomes one id ``3 + crc32(word) % (50265 - 3)`` between ``<s>`` and
    ``</s>``; padding, truncation and ``max_length`` behave as in transformers tokenizers. Numbers made with it are
    meaningless (as are those of random weights): it exists so that the CLI's CLAP path can be tested offline.

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


def random_backbone(kind: str, size: str, protocol: str) -> nn.Module:
    """A randomly initialised backbone (``size`` ``"tiny"``: :data:`TINY_CONFIGS`; ``"full"``: official shapes).

    Args:
        kind: ``"passt"``, ``"clap"``, ``"whisper"``, ``"audiobox"``, ``"imagebind"``, ``"synchformer"``,
            ``"panns"``, ``"vggish"`` or ``"msclap"`` (the last three: :func:`torchmetrics_av.testing.tiny_backbone`).
        size: ``"tiny"`` or ``"full"``.
        protocol: the protocol (CLAP's architecture depends on it: fused under "fastvideo").

    Seeded with :data:`RANDOM_WEIGHTS_SEED`, so that the same call gives the same weights. For tests only.
    """
    torch.manual_seed(RANDOM_WEIGHTS_SEED)
    kw = dict(TINY_CONFIGS.get(kind, {})) if size == "tiny" else {}
    if kind == "passt":
        from torchmetrics_av.backbones.passt import PaSST

        return PaSST(pretrained=False, **kw)
    if kind == "clap":
        from torchmetrics_av.backbones.clap import CLAP, clap_config, small_clap_config

        fusion = bool(clap_config(protocol).audio_config.enable_fusion)
        config = small_clap_config(fusion=fusion) if size == "tiny" else None
        return CLAP(pretrained=False, protocol=protocol, config=config, tokenizer=ToyTokenizer())
    if kind == "whisper":
        from torchmetrics_av.backbones.whisper import Whisper

        return Whisper(pretrained=False, **kw)
    if kind == "audiobox":
        from torchmetrics_av.backbones.audiobox import Audiobox

        return Audiobox(pretrained=False, **kw)
    if kind == "imagebind":
        from torchmetrics_av.backbones.imagebind import ImageBind

        return ImageBind(pretrained=False, **kw)
    if kind == "synchformer":
        from torchmetrics_av.backbones.synchformer import Synchformer

        return Synchformer(pretrained=False, **kw)
    if kind in ("panns", "vggish", "msclap"):
        from torchmetrics_av.backbones import MSCLAP, PANNs, VGGish
        from torchmetrics_av.testing import tiny_backbone

        if size == "tiny":
            return tiny_backbone(kind, seed=RANDOM_WEIGHTS_SEED)
        return {"panns": PANNs, "vggish": VGGish, "msclap": MSCLAP}[kind](pretrained=False)
    raise ValueError(f"`kind` must be a backbone name, got {kind!r}")
