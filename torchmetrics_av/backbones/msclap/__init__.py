"""MS-CLAP 2023 (Microsoft CLAP, ``msclap`` 1.3.4 ``CLAP(version='2023')``): av-benchmark's ``MS-CLAP-Score``.

Clean-room HTSAT-tiny audio tower + GPT-2 text tower + projections (:mod:`.model`), whose ``state_dict`` equals the
official ``CLAP_weights_2023.pth`` (hub ``microsoft/msclap``, MIT; 357 entries, 159,439,064 parameters); msclap's
audio rule (:mod:`.audio`: 44.1 kHz, channels concatenated, repeat-pad or a seeded crop to 7 s) and caption rule
(:mod:`.tokenizer`: ``caption + ' <|endoftext|>'``, ``!`` as the special pad token id 0, padding to 77, pooling at
``(ids != 0).sum() - 1``).

Score protocol (av-benchmark 050a5cdb ``evaluate.py``): per pair ``torch.cosine_similarity(text_emb, audio_emb)`` of
the raw (not L2-normalised) 1024-d embeddings, then the mean over pairs, not x100. :func:`msclap_scores` returns the
per-pair cosines.

A metric (``CLAPScore(model="ms-clap-2023")``) builds one ``MSCLAP(weights=..., crop_seed=...)``, calls
``msclap_scores(backbone, preds, sample_rate, texts)`` per update (audio exactly as given: no mono mix-down, DC
removal or ``duration`` cut, which av-benchmark does not apply to MS-CLAP either) and keeps the float64 sum of the
cosines and their count.

Example:
    >>> import torch
    >>> from torchmetrics_av.backbones.msclap import msclap_scores, tiny_msclap
    >>> net = tiny_msclap()                                        # small random model, offline
    >>> audio = [torch.zeros(16000) + 0.1, torch.randn(2, 9 * 16000) * 0.1]
    >>> msclap_scores(net, audio, 16000, ["a beep", "rain on a roof!"]).shape
    torch.Size([2])
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from torchmetrics_av.backbones.msclap.audio import (
    DEFAULT_CROP_SEED,
    MSCLAP_NUM_SAMPLES,
    MSCLAP_SAMPLE_RATE,
    crop_start,
    flatten_44k1,
    msclap_waveform,
)
from torchmetrics_av.backbones.msclap.model import MSCLAPConfig, MSCLAPModel, pooled_positions
from torchmetrics_av.backbones.msclap.tokenizer import GPT2_BPE, PAD_ID, TEXT_LEN, MSCLAPTokenizer
from torchmetrics_av.preprocessing import AudioInput, as_clip_list, as_text_list, sample_rates
from torchmetrics_av.weights import checkpoint, file_digest, resolve_checkpoint

__all__ = [
    "GPT2_BPE",
    "MSCLAP",
    "MSCLAP_CHECKPOINT",
    "MSCLAPConfig",
    "MSCLAPModel",
    "MSCLAPTokenizer",
    "crop_start",
    "flatten_44k1",
    "load_msclap_state_dict",
    "msclap_scores",
    "msclap_waveform",
    "pooled_positions",
    "tiny_msclap",
    "tiny_msclap_config",
]

# msclap CLAPWrapper: model_repo "microsoft/msclap", model_name["2023"]; MIT like the MS-CLAP repository. No revision
# or SHA-256 is pinned (none is published); the digest of the first download is recorded and checked afterwards.
MSCLAP_CHECKPOINT = checkpoint("msclap-2023")
# Clips per audio forward (HTSAT-tiny at 256x256: a few tens of MB of activations per clip in float32).
DEFAULT_BATCH_SIZE = 8
# torch.cosine_similarity default eps, as av-benchmark calls it.
COSINE_EPS = 1e-8

# GPT-2 attention buffers that older transformers saved in state_dicts (persistent in 4.11, non-persistent by 4.33:
# rmokady/CLIP_prefix_caption#76; microsoft/CLAP#27 shows them in msclap's clapcap_weights_2023.pth): the causal tril
# and -1e4. Accepted if present, after a value check, and dropped; msclap itself loads with strict=False.
_LEGACY_GPT2_BUFFER = re.compile(r"^caption_encoder\.base\.h\.\d+\.attn\.(bias|masked_bias)$")
_LEGACY_MASKED_BIAS = -1e4


def _check_legacy_buffer(key: str, value: Tensor) -> None:
    if key.endswith(".masked_bias"):
        ok = value.numel() == 1 and float(value.reshape(-1)[0]) == _LEGACY_MASKED_BIAS
    else:
        n = value.shape[-1]
        ok = (
            value.ndim == 4
            and value.shape[-2] == n
            and torch.equal(value.reshape(n, n).to(torch.bool), torch.ones(n, n, dtype=torch.bool).tril())
        )
    if not ok:
        raise ValueError(f"`{key}` is not GPT-2's constant attention buffer; the checkpoint is not msclap's")


def load_msclap_state_dict(model: MSCLAPModel, state: Mapping[str, Any], source: str) -> None:
    """Load an MS-CLAP state dict into ``model`` strictly (every key and shape).

    The only entries tolerated beyond the model's are the legacy GPT-2 ``attn.bias`` / ``attn.masked_bias``
    constants (checked, then dropped).

    Raises:
        ValueError: missing, unexpected or mis-shaped entries (the message names ``source`` and the first keys).
    """
    state = dict(state)
    for key in [k for k in state if _LEGACY_GPT2_BUFFER.match(k)]:
        _check_legacy_buffer(key, state.pop(key))
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        k for k in own if k in state and (not isinstance(state[k], Tensor) or tuple(state[k].shape) != own[k].shape)
    ]
    if missing or unexpected or mismatched:
        raise ValueError(
            f"{source} does not match the MS-CLAP 2023 architecture: missing {missing[:4]} ({len(missing)}), "
            f"unexpected {unexpected[:4]} ({len(unexpected)}), wrong shape {mismatched[:4]} ({len(mismatched)}); "
            "pass the official CLAP_weights_2023.pth (or the matching `config=`)"
        )
    model.load_state_dict(state, strict=True)


def read_msclap_checkpoint(path: str | os.PathLike, allow_pickle: bool = False) -> Mapping[str, Any]:
    """The state dict in an MS-CLAP checkpoint file: the ``"model"`` entry (msclap's layout) or a bare state dict.

    Raises:
        ValueError: ``torch.load(weights_only=True)`` refuses the file (pass ``allow_pickle=True`` for a file you
            trust), or it holds no state dict.
    """
    try:
        content = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except Exception as err:  # noqa: BLE001 - torch raises UnpicklingError/RuntimeError variants
        hint = "" if allow_pickle else "; if you trust the file, pass `allow_pickle=True`"
        raise ValueError(
            f"{path} could not be read with torch.load(weights_only={not allow_pickle}) "
            f"({type(err).__name__}: {err}){hint}"
        ) from err
    if isinstance(content, Mapping) and isinstance(content.get("model"), Mapping):
        return content["model"]
    if isinstance(content, Mapping) and "logit_scale" in content:
        return content
    raise ValueError(f"{path}: expected msclap's {{'model': state_dict}} layout or a state dict")


class MSCLAP(nn.Module):
    """MS-CLAP 2023 audio and text encoders with msclap's front end and tokenisation.

    Args:
        weights: local ``CLAP_weights_2023.pth`` (``{"model": state_dict}``, or a bare state dict), loaded strictly.
        pretrained: with ``weights=None``, download the official file from hub ``microsoft/msclap`` into the cache
            (``$TORCHMETRICS_AV_CACHE``); ``False`` builds a random model without network access.
        config: network sizes (default: the official model); for tests see :func:`tiny_msclap`.
        crop_seed: seed of the per-clip 7 s crop of clips longer than 7 s (:func:`.audio.crop_start`).
        bpe_file: GPT-2 rank file for the tokenizer (default: openai-whisper's bundled copy, else cache/download).
        batch_size: clips per audio forward and captions per text forward.
        cache_dir: checkpoint cache override.
        allow_pickle: read the checkpoint with ``torch.load(weights_only=False)`` (only for a file you trust).

    Attributes:
        model: :class:`.model.MSCLAPModel`; ``state_dict()`` keys, shapes and order equal the official file's.
        checkpoint_id: ``"CLAP_weights_2023.pth@sha256:<16 hex>"`` or ``"random-init"``.
        sample_rate: 44100; num_samples: 308700 (the 7 s model input).
    """

    sample_rate = MSCLAP_SAMPLE_RATE
    num_samples = MSCLAP_NUM_SAMPLES
    # precision= (torchmetrics_av.precision): HTSAT and GPT-2 under autocast, the projections float32.
    autocast_modules = ("model.audio_encoder.base", "model.caption_encoder.base")

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        pretrained: bool = True,
        *,
        config: MSCLAPConfig | None = None,
        crop_seed: int = DEFAULT_CROP_SEED,
        bpe_file: str | os.PathLike | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        cache_dir: str | os.PathLike | None = None,
        allow_pickle: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(crop_seed, bool) or not isinstance(crop_seed, int):
            raise ValueError(f"`crop_seed` must be an int, got {crop_seed!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive int, got {batch_size!r}")
        self.crop_seed = crop_seed
        self.batch_size = batch_size
        self._bpe_file = bpe_file
        self._cache_dir = cache_dir
        self._tokenizer: MSCLAPTokenizer | None = None
        self.model = MSCLAPModel(config)
        self.checkpoint_id = "random-init"
        if weights is not None or pretrained:
            path = resolve_checkpoint(MSCLAP_CHECKPOINT.name, weights, cache_dir=cache_dir)
            load_msclap_state_dict(self.model, read_msclap_checkpoint(path, allow_pickle), str(path))
            self.checkpoint_id = f"{Path(path).name}@sha256:{file_digest(path)[:16]}"
        self.eval()

    @property
    def device(self) -> torch.device:
        """Device of the model weights."""
        return self.model.logit_scale.device

    # ----------------------------------------------------------------------------------------------------------------
    # text

    @property
    def tokenizer(self) -> MSCLAPTokenizer:
        """The msclap caption tokenizer (built on first use from the GPT-2 rank file)."""
        if self._tokenizer is None:
            self._tokenizer = MSCLAPTokenizer(
                self._bpe_file, max_positions=self.model.config.text_positions, cache_dir=self._cache_dir
            )
        return self._tokenizer

    def tokenize(self, texts: Sequence[str], name: str = "texts") -> tuple[Tensor, Tensor]:
        """Captions -> ``(input_ids (N, L), attention_mask (N, L))`` int64, exactly msclap's per caption
        (``L = max(77, longest)``; see :class:`.tokenizer.MSCLAPTokenizer`).
        """
        return self.tokenizer(texts, name)

    @torch.no_grad()
    def text_embedding(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """``(N, L)`` ids + mask -> ``(N, 1024)`` float32 text embeddings (not normalised).

        The GPT-2 state at ``(ids != 0).sum() - 1`` is projected (msclap ``TextEncoder``). Each caption runs at the
        length msclap gives it alone, ``max(77, its real tokens)`` (trailing padding is cut or added; captions of
        equal length share a forward of up to ``batch_size``), so the result does not depend on the batch.

        Raises:
            ValueError: shapes differ; a row has no non-zero id; a masked-out position holds a non-zero id (msclap
                pads with id 0); or the mask is 0 at or before a row's pooled token.
        """
        if input_ids.ndim != 2 or input_ids.shape != attention_mask.shape or input_ids.shape[0] == 0:
            raise ValueError(
                f"`input_ids` and `attention_mask` must both be (N, L) with N >= 1, got {tuple(input_ids.shape)} "
                f"and {tuple(attention_mask.shape)}"
            )
        ids_all, mask_all = input_ids.to(self.device, torch.long), attention_mask.to(self.device, torch.long)
        if bool(((mask_all == 0) & (ids_all != PAD_ID)).any()):
            raise ValueError(f"`input_ids` must hold the pad id {PAD_ID} wherever `attention_mask` is 0 (msclap)")
        positions = torch.arange(1, ids_all.shape[1] + 1, device=self.device)
        widths = ((mask_all != 0) * positions).amax(dim=1).clamp_min(TEXT_LEN).tolist()
        out = torch.empty(ids_all.shape[0], self.model.config.proj_dim, device=self.device)
        for width in sorted(set(widths)):
            rows = [i for i, w in enumerate(widths) if w == width]
            ids, mask = _fit_width(ids_all[rows], width, PAD_ID), _fit_width(mask_all[rows], width, 0)
            for s in range(0, len(rows), self.batch_size):
                chunk = rows[s : s + self.batch_size]
                out[chunk] = self.model.caption_encoder(ids[s : s + self.batch_size], mask[s : s + self.batch_size])
        return out

    def embed_text(self, texts: Sequence[str]) -> Tensor:
        """Captions -> ``(N, 1024)`` text embeddings (:meth:`tokenize` then :meth:`text_embedding`)."""
        return self.text_embedding(*self.tokenize(texts))

    # ----------------------------------------------------------------------------------------------------------------
    # audio

    def waveform(self, clip: Tensor, sample_rate: int, start: int | None = None) -> Tensor:
        """One ``(C, T)``/``(T,)`` clip -> the ``(308700,)`` 44.1 kHz model input (:func:`.audio.msclap_waveform`
        with this backbone's ``crop_seed``).
        """
        return msclap_waveform(clip, sample_rate, crop_seed=self.crop_seed, start=start)

    @torch.no_grad()
    def audio_embedding(self, x: Tensor) -> Tensor:
        """``(B, T)`` 44.1 kHz model inputs (``T = 308700`` under the protocol; at most 1024 STFT frames) ->
        ``(B, 1024)`` float32 audio embeddings (not normalised), in one forward.
        """
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(f"`x` must be a (B, T) batch of 44.1 kHz waveforms, got shape {tuple(x.shape)}")
        return self.model.audio_encoder(x.to(self.device, self.model.logit_scale.dtype))

    def embed_audio(
        self,
        clips: Sequence[Tensor],
        sample_rate: int | Sequence[int],
        crop_starts: Sequence[int | None] | None = None,
    ) -> Tensor:
        """Clips of any lengths and rates -> ``(N, 1024)`` audio embeddings, ``batch_size`` clips per forward.

        Args:
            clips: ``(C, T)`` / ``(T,)`` float tensors.
            sample_rate: one rate (Hz) or one per clip.
            crop_starts: optional explicit crop start per clip (``None`` entries use the seeded rule).
        """
        if len(clips) == 0:
            raise ValueError("`clips` is empty; pass at least one clip")
        rates = sample_rates(sample_rate, len(clips), "sample_rate")
        if crop_starts is not None and len(crop_starts) != len(clips):
            raise ValueError(f"`crop_starts` has {len(crop_starts)} entries for {len(clips)} clips")
        starts = list(crop_starts) if crop_starts is not None else [None] * len(clips)
        out = []
        for s in range(0, len(clips), self.batch_size):
            idx = range(s, min(s + self.batch_size, len(clips)))
            batch = torch.stack([self.waveform(clips[i], rates[i], starts[i]) for i in idx])
            out.append(self.audio_embedding(batch))
        return torch.cat(out)

    def forward(self, clips: Sequence[Tensor], sample_rate: int | Sequence[int]) -> Tensor:
        """Alias of :meth:`embed_audio`."""
        return self.embed_audio(clips, sample_rate)


def _fit_width(x: Tensor, width: int, value: int) -> Tensor:
    if x.shape[1] >= width:
        return x[:, :width]
    return torch.nn.functional.pad(x, (0, width - x.shape[1]), value=value)


def msclap_scores(
    backbone: MSCLAP,
    audio: AudioInput,
    sample_rate: int | Sequence[int],
    texts: Sequence[str],
    *,
    crop_starts: Sequence[int | None] | None = None,
) -> Tensor:
    """Per-pair MS-CLAP cosines: the values av-benchmark's ``MS-CLAP-Score`` averages.

    Args:
        backbone: an :class:`MSCLAP`.
        audio: ``(B, T)`` / ``(B, C, T)`` tensor or list of ``(T,)`` / ``(C, T)`` clips, float in [-1, 1] or int16;
            ``(B, T)`` rows are mono clips, the channels of a ``(C, T)`` clip are concatenated (msclap's rule).
        sample_rate: Hz, one or one per clip.
        texts: one caption per clip.
        crop_starts: explicit 7 s crop starts (see :meth:`MSCLAP.embed_audio`).

    Returns:
        ``(N,)`` float32 ``torch.cosine_similarity(text_emb, audio_emb, dim=-1)`` on the backbone's device; the score
        is its mean (a metric should sum in float64 and divide by the count).

    Raises:
        ValueError: bad audio (see :func:`torchmetrics_av.preprocessing.as_clip_list`), a bad rate, ``texts`` not a
            list of strings of the same length, or a caption longer than 1024 tokens.
    """
    clips = as_clip_list(audio, "preds")
    texts = as_text_list(texts, "texts")
    if len(texts) != len(clips):
        raise ValueError(f"`texts` has {len(texts)} captions for {len(clips)} clips; give one caption per clip")
    text_emb = backbone.embed_text(texts)
    audio_emb = backbone.embed_audio(clips, sample_rate, crop_starts)
    return torch.cosine_similarity(text_emb, audio_emb, dim=-1, eps=COSINE_EPS)


def tiny_msclap_config(**overrides: Any) -> MSCLAPConfig:
    """A ~3 M-parameter :class:`MSCLAPConfig` of the same architecture (all 4 Swin stages with shifted windows, the
    real GPT-2 vocabulary and 1024 positions), with ``overrides`` applied to its fields.
    """
    fields = {f.name for f in dataclasses.fields(MSCLAPConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown MSCLAPConfig fields {unknown}; valid: {sorted(fields)}")
    base: dict[str, Any] = {
        "audio_embed_dim": 8,
        "audio_depths": (2, 2, 2, 2),
        "audio_heads": (1, 2, 2, 4),
        "num_classes": 8,
        "text_width": 32,
        "text_layers": 2,
        "text_heads": 2,
        "proj_dim": 16,
    }
    return MSCLAPConfig(**{**base, **overrides})


def tiny_msclap(seed: int = 0, **overrides: Any) -> MSCLAP:
    """A small random :class:`MSCLAP` (offline, deterministic for a ``seed``; the global RNG is left untouched).

    ``overrides`` go to :func:`tiny_msclap_config`, except the :class:`MSCLAP` keyword arguments ``crop_seed``,
    ``bpe_file`` and ``batch_size``.
    """
    kwargs = {k: overrides.pop(k) for k in ("crop_seed", "bpe_file", "batch_size") if k in overrides}
    config = tiny_msclap_config(**overrides)
    with _seeded(seed):
        return MSCLAP(pretrained=False, config=config, **kwargs)


@contextlib.contextmanager
def _seeded(seed: int) -> Any:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
