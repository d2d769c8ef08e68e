"""Meta Audiobox Aesthetics (``audiobox-aesthetics==0.0.4``): four per-clip scores CE, CU, PC, PQ on a ~1-10 scale.

``.model`` is the package's own ``audiobox_aesthetics.model.aes.AesMultiOutput`` (a WavLM Base+-style encoder with
one softmax-weighted layer sum, masked mean pool and MLP head per axis), so the hub checkpoint
``facebook/audiobox-aesthetics`` (``config.json`` + ``model.safetensors``, 324 tensors, 103,859,112 parameters,
CC-BY-4.0) loads strictly. The package's ``infer.py`` is not used (it needs the removed ``torchaudio.info``/``load``);
its inference is reproduced here (audiobox-aesthetics @ 2618e9d ``AesPredictor.forward``, golden README §4):

1. the caller gives mono 16 kHz clips (channel mean, then ``torchaudio.functional.resample``: see
   :class:`torchmetrics_av.AudioboxAesthetics`);
2. each clip is cut into non-overlapping 10 s windows starting at 0, 160000, ...; the last one is zero-padded to
   160000 samples with a mask over its ``valid_len`` real samples and weight ``valid_len / 160000`` (a 0.05 s tail
   still gets its own window);
3. all windows of all clips go through the model in batches of ``batch_size`` windows; the model predicts
   standardised targets, de-normalised per axis as ``pred * std + mean`` with the checkpoint's ``target_transform``;
4. clip score = ``Σ_w pred_w · weight_w / Σ_w weight_w`` (in float64 here; upstream uses float32, a < 1e-6 change).

Example:
    >>> import torch
    >>> from torchmetrics_av.backbones import Audiobox
    >>> tiny = dict(encoder_layers=1, encoder_embed_dim=32, encoder_ffn_embed_dim=32, encoder_attention_heads=2,
    ...             conv_feature_layers="[(16,10,5)] + [(16,3,2)] * 4 + [(16,2,2)] * 2", conv_pos=4, conv_pos_groups=2)
    >>> net = Audiobox(pretrained=False, encoder_config=tiny, model_config={"nth_layer": 2})   # random, for a look
    >>> net([torch.zeros(16000), torch.zeros(200000)]).shape                                   # (clips, CE/CU/PC/PQ)
    torch.Size([2, 4])
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from torchmetrics_av.weights import checkpoint, file_digest, load_state_dict, resolve_checkpoint, resolve_files

AUDIOBOX_SAMPLE_RATE = 16000
# infer.py make_inference_batch(hop_size=10, window_size=10, sample_rate=16000).
AUDIOBOX_WINDOW_SAMPLES = 10 * AUDIOBOX_SAMPLE_RATE
AUDIOBOX_HOP_SAMPLES = 10 * AUDIOBOX_SAMPLE_RATE
AXES: tuple[str, ...] = ("CE", "CU", "PC", "PQ")
# Windows per model call: 8 x 10 s of WavLM activations stay well under 2 GB on CPU/GPU.
DEFAULT_BATCH_SIZE = 8

# facebook/audiobox-aesthetics @ the pinned revision is the checkpoint FastVideo loads (its hub config.json is 492 bytes
# with the SHA-256 in weights.CHECKPOINTS; golden README §2).
AUDIOBOX_HUB_REPO = "facebook/audiobox-aesthetics"
AUDIOBOX_CONFIG = checkpoint("audiobox-aesthetics-config")
AUDIOBOX_WEIGHTS = checkpoint("audiobox-aesthetics")
AUDIOBOX_HUB_REVISION = str(AUDIOBOX_WEIGHTS.revision)
AUDIOBOX_LICENSE = AUDIOBOX_WEIGHTS.license
# The hub config.json content (AesMultiOutput constructor kwargs); used for `pretrained=False` so that a random model
# has the real architecture and the real de-normalisation statistics.
AUDIOBOX_HUB_CONFIG: dict[str, Any] = {
    "proj_num_layer": 5,
    "proj_ln": True,
    "proj_act_fn": "gelu",
    "proj_dropout": 0.0,
    "nth_layer": 13,
    "use_weighted_layer_sum": True,
    "precision": "32",
    "normalize_embed": True,
    "output_dim": 1,
    "target_transform": {
        "CE": {"mean": 5.06865, "std": 1.93029},
        "CU": {"mean": 5.73633, "std": 1.75669},
        "PC": {"mean": 3.18591, "std": 1.86637},
        "PQ": {"mean": 6.57505, "std": 1.51466},
    },
}
# The model_cfg keys that infer.AesPredictor.setup_model passes from a Lightning-style checkpoint.pt.
_LIGHTNING_CFG_KEYS = (
    "proj_num_layer",
    "proj_ln",
    "proj_act_fn",
    "proj_dropout",
    "nth_layer",
    "use_weighted_layer_sum",
    "precision",
    "normalize_embed",
    "output_dim",
)
_STATE_FILES = ("model.safetensors", "pytorch_model.bin")
# AesMultiOutput reads its WavLM config from this module global; building with overrides swaps it under a lock.
_ENCODER_CFG_LOCK = threading.Lock()


@contextlib.contextmanager
def _encoder_config(overrides: Mapping[str, Any] | None) -> Iterator[None]:
    from audiobox_aesthetics.model import aes

    if not overrides:
        yield
        return
    with _ENCODER_CFG_LOCK:
        original = aes.DEFAULT_AUDIO_CFG
        cfg = copy.deepcopy(original)
        cfg.update(dict(overrides))
        aes.DEFAULT_AUDIO_CFG = cfg
        try:
            yield
        finally:
            aes.DEFAULT_AUDIO_CFG = original


def build_aes_model(config: Mapping[str, Any], encoder_config: Mapping[str, Any] | None = None) -> nn.Module:
    """``AesMultiOutput(**config)``, optionally with WavLM config overrides (small test models).

    Args:
        config: constructor kwargs as in the hub ``config.json`` (must hold ``target_transform``).
        encoder_config: ``WavLMConfig`` fields to override (``encoder_layers``, ``encoder_embed_dim``, ...); the
            official model uses none.
    """
    from audiobox_aesthetics.model.aes import AesMultiOutput

    with _encoder_config(encoder_config), warnings.catch_warnings():
        # WavLM's positional conv uses the deprecated torch.nn.utils.weight_norm; its parameter names (weight_g,
        # weight_v) are the checkpoint's, so it stays.
        warnings.filterwarnings("ignore", message=r".*weight_norm.*is deprecated", category=FutureWarning)
        return AesMultiOutput(**dict(config))


def _check_target_transform(tt: Any, source: str) -> dict[str, dict[str, float]]:
    if not isinstance(tt, Mapping) or any(
        not isinstance(tt.get(a), Mapping) or not {"mean", "std"} <= set(tt[a]) for a in AXES
    ):
        raise ValueError(f"{source}: `target_transform` must map each of {AXES} to {{'mean', 'std'}}, got {tt!r:.200}")
    return {a: {"mean": float(tt[a]["mean"]), "std": float(tt[a]["std"])} for a in AXES}


def read_aes_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Read an official Audiobox Aesthetics checkpoint into ``(constructor config, state_dict)``.

    Formats:
        * a ``from_pretrained``/``save_pretrained`` directory: ``config.json`` + ``model.safetensors`` (or
          ``pytorch_model.bin``);
        * a ``.safetensors`` file (with a ``config.json`` next to it, else the hub config is assumed);
        * the Lightning-style ``checkpoint.pt``: ``{"state_dict": {"model.<key>": ...}, "model_cfg": {...},
          "target_transform": {...}}`` (``dl.fbaipublicfiles.com/audiobox-aesthetics/checkpoint.pt``).

    Raises:
        ValueError: the file or folder has none of these layouts, or lacks the de-normalisation statistics.
    """
    path = Path(path)
    if path.is_dir():
        state_file = next((path / f for f in _STATE_FILES if (path / f).is_file()), None)
        if state_file is None or not (path / "config.json").is_file():
            raise ValueError(f"{path}: a from_pretrained folder needs config.json and one of {_STATE_FILES}")
        config = json.loads((path / "config.json").read_text())
        state = load_state_dict(state_file)
    elif path.suffix == ".safetensors":
        cfg_file = path.with_name("config.json")
        config = json.loads(cfg_file.read_text()) if cfg_file.is_file() else dict(AUDIOBOX_HUB_CONFIG)
        state = load_state_dict(path)
    else:
        raw = load_state_dict(path)
        if not isinstance(raw, Mapping) or not {"state_dict", "model_cfg", "target_transform"} <= set(raw):
            found = sorted(raw)[:6] if isinstance(raw, Mapping) else type(raw).__name__
            raise ValueError(
                f"{path}: expected a Lightning-style Audiobox checkpoint with 'state_dict', 'model_cfg' and "
                f"'target_transform', found {found}"
            )
        missing = [k for k in _LIGHTNING_CFG_KEYS if k not in raw["model_cfg"]]
        if missing:
            raise ValueError(f"{path}: `model_cfg` lacks {missing}")
        config = {k: raw["model_cfg"][k] for k in _LIGHTNING_CFG_KEYS} | {"target_transform": raw["target_transform"]}
        # infer.py strips the Lightning module prefix with re.sub("^model.", "", key).
        state = {re.sub(r"^model\.", "", k): v for k, v in raw["state_dict"].items()}
    config["target_transform"] = _check_target_transform(config.get("target_transform"), str(path))
    return config, state


def make_windows(waves: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """Cut 16 kHz clips into infer.py's 10 s windows.

    Args:
        waves: ``(T,)`` clips at 16 kHz, ``T >= 1``.

    Returns:
        ``(clip_index (W,) int64, start (W,) int64, valid_len (W,) int64)``: window ``w`` is
        ``waves[clip_index[w]][start[w] : start[w] + valid_len[w]]`` zero-padded to 160000 samples.
    """
    clip_idx, starts, valid = [], [], []
    for i, w in enumerate(waves):
        n = int(w.shape[-1])
        for s in range(0, n, AUDIOBOX_HOP_SAMPLES):
            clip_idx.append(i)
            starts.append(s)
            valid.append(min(AUDIOBOX_WINDOW_SAMPLES, n - s))
    as_long = lambda v: torch.tensor(v, dtype=torch.int64)  # noqa: E731
    return as_long(clip_idx), as_long(starts), as_long(valid)


class Audiobox(nn.Module):
    """Audiobox Aesthetics predictor: 16 kHz mono clips -> ``(B, 4)`` CE, CU, PC, PQ scores, batched over windows.

    Args:
        weights: local checkpoint (see :func:`read_aes_checkpoint`: a ``from_pretrained`` folder, a ``.safetensors``
            file, or the Lightning-style ``checkpoint.pt``). Loaded strictly.
        pretrained: load the official hub checkpoint (``weights``, else the cache, else a download of the pinned
            revision). ``False`` keeps a random initialisation (with the hub config and statistics) and needs no
            network.
        batch_size: 10-s windows per model call.
        model_config: ``AesMultiOutput`` kwargs overriding the hub config for ``pretrained=False`` (test models).
        encoder_config: ``WavLMConfig`` overrides for small test models, applied to ``pretrained=False`` and to a
            checkpoint written from such a model.
        cache_dir: checkpoint cache override (default ``$TORCHMETRICS_AV_CACHE``).

    Attributes:
        model: ``audiobox_aesthetics.model.aes.AesMultiOutput``; ``state_dict()`` equals the hub
            ``model.safetensors``.
        target_mean: ``(4,)`` float32 de-normalisation means in :data:`AXES` order, from the checkpoint.
        target_std: ``(4,)`` float32 de-normalisation standard deviations.
        checkpoint_id: provenance string, ``"<name>@sha256:<digest>"`` or ``"random-init"``.
    """

    sample_rate = AUDIOBOX_SAMPLE_RATE
    axes = AXES
    # precision= (torchmetrics_av.precision): the WavLM encoder under autocast, the four prediction heads float32.
    # (AesMultiOutput wraps WavLM in its own autocast, disabled by the checkpoint's precision "32"; these hooks sit
    # inside it, on the two submodules that extract_features calls.)
    autocast_modules = ("model.wavlm_model.feature_extractor", "model.wavlm_model.encoder")
    target_mean: Tensor
    target_std: Tensor

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        pretrained: bool = True,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        model_config: Mapping[str, Any] | None = None,
        encoder_config: Mapping[str, Any] | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive int, got {batch_size!r}")
        self.batch_size = batch_size
        self.checkpoint_id = "random-init"
        if weights is not None or pretrained:
            if weights is None:
                # Both files of the table's audiobox-aesthetics/ folder; offline, one error names every missing one.
                hint = "a from_pretrained folder, model.safetensors or checkpoint.pt"
                paths = resolve_files(
                    [AUDIOBOX_CONFIG.name, AUDIOBOX_WEIGHTS.name], cache_dir=cache_dir, weights_hint=hint
                )
                path = paths[1].parent
                label, digest_file = AUDIOBOX_WEIGHTS.name, paths[1]
            else:
                path = resolve_checkpoint(AUDIOBOX_WEIGHTS.name, weights)
                label = path.name
                digest_file = next((path / f for f in _STATE_FILES if (path / f).is_file()), path)
            config, state = read_aes_checkpoint(path)
            self.model = build_aes_model(config, encoder_config)
            self.model.load_state_dict(state, strict=True)
            self.checkpoint_id = f"{label}@sha256:{file_digest(digest_file)[:16]}" if digest_file.is_file() else label
        else:
            config = {**AUDIOBOX_HUB_CONFIG, **dict(model_config or {})}
            config["target_transform"] = _check_target_transform(config.get("target_transform"), "`model_config`")
            self.model = build_aes_model(config, encoder_config)
        tt = self.model.target_transform
        # Python floats applied to float32 predictions in infer.py -> float32 arithmetic; same here.
        self.register_buffer("target_mean", torch.tensor([tt[a]["mean"] for a in AXES]), persistent=False)
        self.register_buffer("target_std", torch.tensor([tt[a]["std"] for a in AXES]), persistent=False)
        self.eval()

    @property
    def device(self) -> torch.device:
        """Device of the model parameters."""
        return next(self.model.parameters()).device

    @torch.no_grad()
    def predict_windows(self, windows: Tensor, valid_len: Tensor) -> Tensor:
        """Raw model predictions (standardised space) for a batch of 10 s windows.

        Args:
            windows: ``(W, 160000)`` float 16 kHz samples, zero beyond each window's valid length.
            valid_len: ``(W,)`` number of real samples per window (1..160000).

        Returns:
            ``(W, 4)`` float32 predictions in :data:`AXES` order (before ``* std + mean``).
        """
        if windows.ndim != 2 or windows.shape[-1] != AUDIOBOX_WINDOW_SAMPLES:
            raise ValueError(f"`windows` must be (W, {AUDIOBOX_WINDOW_SAMPLES}), got {tuple(windows.shape)}")
        dtype = next(self.model.parameters()).dtype
        wav = windows.to(self.device, dtype).unsqueeze(1)
        positions = torch.arange(AUDIOBOX_WINDOW_SAMPLES, device=self.device)
        mask = (positions[None, :] < valid_len.to(self.device)[:, None]).unsqueeze(1)
        # WavLM's encoder draws np.random.random() per layer even in eval mode (layerdrop); keep the caller's
        # NumPy random stream untouched.
        np_state = np.random.get_state()
        try:
            with warnings.catch_warnings():
                # Upstream WavLM passes a float attention bias with a bool padding mask; torch warns on every call.
                warnings.filterwarnings("ignore", message=r".*mismatched key_padding_mask and attn_mask.*")
                out = self.model({"wav": wav, "mask": mask})
        finally:
            np.random.set_state(np_state)
        return torch.stack([out[a] for a in AXES], dim=-1).float()

    @torch.no_grad()
    def forward(self, waves: Sequence[Tensor]) -> Tensor:
        """Score 16 kHz mono clips.

        Args:
            waves: ``(T,)`` float clips at 16 kHz of any lengths (``T >= 1``).

        Returns:
            ``(B, 4)`` float64 clip scores (CE, CU, PC, PQ), length-weighted means over each clip's windows.
        """
        waves = list(waves)
        for i, w in enumerate(waves):
            if not isinstance(w, Tensor) or w.ndim != 1 or w.numel() == 0:
                raise ValueError(f"`waves[{i}]` must be a non-empty (T,) 16 kHz tensor, got {w!r:.80}")
        clip_idx, starts, valid = make_windows(waves)
        preds = []
        for b in range(0, len(clip_idx), self.batch_size):
            rows = range(b, min(b + self.batch_size, len(clip_idx)))
            batch = torch.zeros(len(rows), AUDIOBOX_WINDOW_SAMPLES, device=self.device)
            for j, r in enumerate(rows):
                s, n = int(starts[r]), int(valid[r])
                batch[j, :n] = waves[int(clip_idx[r])][s : s + n].to(self.device, torch.float32)
            raw = self.predict_windows(batch, valid[b : b + len(rows)])
            preds.append(raw * self.target_std + self.target_mean)
        pred = torch.cat(preds).to(torch.float64)
        weight = (valid.to(torch.float64) / AUDIOBOX_WINDOW_SAMPLES).to(pred.device)
        idx = clip_idx.to(pred.device)
        num = torch.zeros(len(waves), len(AXES), dtype=torch.float64, device=pred.device)
        num.index_add_(0, idx, pred * weight[:, None])
        den = torch.zeros(len(waves), dtype=torch.float64, device=pred.device).index_add_(0, idx, weight)
        return num / den[:, None]
