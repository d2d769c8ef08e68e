"""SenseVoice-Small through FunASR (optional extra ``sensevoice``): FastVideo's ``sensevoice`` WER backend.

FastVideo (``audio.wer`` @ 2f3d4074, ``_setup_sensevoice`` / ``_transcribe_sensevoice``) runs::

    model = funasr.AutoModel(model="FunAudioLLM/SenseVoiceSmall", vad_model="fsmn-vad",
                             vad_kwargs={"max_single_segment_time": 30000}, device=..., hub="hf", disable_update=True)
    res = model.generate(input=audio_path, cache={}, language="auto", use_itn=True, batch_size_s=60,
                         merge_vad=True, merge_length_s=15)
    text = rich_transcription_postprocess(res[0]["text"]).strip()

:class:`SenseVoice` makes the same two calls, on 16 kHz arrays instead of file paths, with both hub repositories
(``FunAudioLLM/SenseVoiceSmall`` and ``funasr/fsmn-vad``, FunASR's ``"fsmn-vad"`` on the Hugging Face hub) resolved
to local folders of the checkpoint table first, so the cache and offline rules are the same as for the other
backbones. ``use_itn=True``
writes numbers as digits, and ``rich_transcription_postprocess`` turns event/emotion tags into emoji, which then
count as words; both are FastVideo's choices, kept.

Install: ``pip install "torchmetrics-av[sensevoice]"`` (FunASR 1.4.16 installs next to torch 2.11.0 without
touching it). Without FunASR the constructor raises ``ModuleNotFoundError`` naming that command.

Importing FunASR takes ~10-40 s (it registers all its models), so the examples here stop short of building one;
``tiny_sensevoice()`` builds a small random pipeline offline (see ``tests/test_asr_backbones.py``).

Example:
    >>> from torchmetrics_av.backbones.sensevoice import GENERATE_KWARGS, sensevoice_language
    >>> GENERATE_KWARGS["language"], sensevoice_language("Cantonese"), sensevoice_language("de")
    ('auto', 'yue', None)
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from torchmetrics_av.backbones.asr import ASR_SAMPLE_RATE, ASRModule, HintWarner, check_asr_inputs, language_code
from torchmetrics_av.weights import FSMN_VAD_REVISION, SENSEVOICE_REVISION, WeightsNotFoundError, resolve_folder

SENSEVOICE_REPO = "FunAudioLLM/SenseVoiceSmall"
# FunASR's name_maps_hf["fsmn-vad"].
FSMN_VAD_REPO = "funasr/fsmn-vad"
# The checkpoint table's folders of the two repositories (SENSEVOICE_REVISION / FSMN_VAD_REVISION are its pins).
SENSEVOICE_FOLDER = "SenseVoiceSmall"
FSMN_VAD_FOLDER = "fsmn-vad"
# What FunASR's AutoModel reads from a local model folder (config.yaml names the model class; model.pt its weights).
_FUNASR_REQUIRED = ("config.yaml", "model.pt")
INSTALL_HINT = 'pip install "torchmetrics-av[sensevoice]"  (or: pip install funasr)'
# FastVideo's AutoModel(vad_kwargs=...) and generate(...) arguments.
VAD_KWARGS: dict[str, Any] = {"max_single_segment_time": 30000}
GENERATE_KWARGS: dict[str, Any] = {
    "language": "auto",
    "use_itn": True,
    "batch_size_s": 60,
    "merge_vad": True,
    "merge_length_s": 15,
}
# SenseVoiceSmall.lid_dict: the languages it can be told (anything else: "auto").
SENSEVOICE_LANGUAGES = ("zh", "en", "yue", "ja", "ko")
_LANGUAGE_ALIASES = {
    "chinese": "zh",
    "mandarin": "zh",
    "english": "en",
    "cantonese": "yue",
    "japanese": "ja",
    "korean": "ko",
}


def sensevoice_language(hint: str | None) -> str | None:
    """The SenseVoice language (``zh``, ``en``, ``yue``, ``ja``, ``ko``) a free-form hint names, else ``None``.

    Example:
        >>> sensevoice_language("zh-CN"), sensevoice_language("Japanese"), sensevoice_language(None)
        ('zh', 'ja', None)
    """
    return language_code(hint, SENSEVOICE_LANGUAGES, _LANGUAGE_ALIASES)


def _require_funasr() -> None:
    try:
        import funasr  # noqa: F401
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            f"the SenseVoice ASR backend needs FunASR, an optional extra: {INSTALL_HINT}"
        ) from err


class SenseVoice(ASRModule):
    """SenseVoice-Small with FSMN-VAD segmentation (FunASR): 16 kHz clips -> transcripts, FastVideo's settings.

    Args:
        weights: a local folder with the files of ``FunAudioLLM/SenseVoiceSmall`` (``config.yaml``, ``model.pt``,
            ...).
        vad_weights: a local folder with the files of ``funasr/fsmn-vad``.
        pretrained: use the folders, else the checkpoint table's ``<cache>/SenseVoiceSmall/`` and
            ``<cache>/fsmn-vad/`` (what ``torchmetrics-av download sensevoice`` writes; verified, downloaded where
            missing). ``False`` needs ``model_kwargs`` and ``vad_model_kwargs`` (explicit FunASR configs, see
            :func:`tiny_sensevoice`).
        revision: hub revision of SenseVoiceSmall (default: the table's pinned commit, whose digests are checked;
            another one goes to ``<cache>/SenseVoiceSmall@<revision>/`` with no table digest).
        vad_revision: hub revision of fsmn-vad (the same rules, ``fsmn-vad@<revision>/``).
        model_kwargs: FunASR ``AutoModel`` keyword arguments of a model built from its config (``model``,
            ``model_conf``, ``encoder_conf``, ``tokenizer_conf``, ``frontend_conf``, ...) for ``pretrained=False``.
        vad_model_kwargs: the same for the VAD model (its ``model`` entry names the VAD class).
        cache_dir: cache folder override (default ``$TORCHMETRICS_AV_CACHE``).

    Attributes:
        pipeline: the ``funasr.AutoModel``; ``model`` / ``vad_model`` are its two ``nn.Module``s (moved by ``.to``).
        checkpoint_id: provenance string.

    Raises:
        ModuleNotFoundError: FunASR is not installed (the message names the pip command).

    Example:
        Building one imports FunASR (slow), so this example is not run; ``tests/test_asr_backbones.py`` runs it.

        >>> import torch
        >>> asr = tiny_sensevoice()  # doctest: +SKIP
        >>> asr.transcribe([0.1 * torch.randn(16000)])  # doctest: +SKIP
        ['...']
    """

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        vad_weights: str | os.PathLike | None = None,
        pretrained: bool = True,
        revision: str = SENSEVOICE_REVISION,
        vad_revision: str = FSMN_VAD_REVISION,
        *,
        model_kwargs: Mapping[str, Any] | None = None,
        vad_model_kwargs: Mapping[str, Any] | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        _require_funasr()
        from funasr import AutoModel

        if pretrained or weights is not None or vad_weights is not None:
            if model_kwargs is not None or vad_model_kwargs is not None:
                raise ValueError("`model_kwargs`/`vad_model_kwargs` only apply to `pretrained=False`")
            dirs, errors = [], []
            for folder, local, rev in (
                (SENSEVOICE_FOLDER, weights, revision),
                (FSMN_VAD_FOLDER, vad_weights, vad_revision),
            ):
                try:
                    dirs.append(
                        resolve_folder(folder, local, revision=rev, cache_dir=cache_dir, required=_FUNASR_REQUIRED)
                    )
                except WeightsNotFoundError as err:  # both folders' missing files in one error
                    errors.append(str(err))
            if errors:
                raise WeightsNotFoundError("\n".join(errors))
            model_dir, vad_dir = dirs
            model_args: dict[str, Any] = {"model": str(model_dir)}
            vad_model, vad_args = str(vad_dir), dict(VAD_KWARGS)
            self.checkpoint_id = f"{SENSEVOICE_REPO}@{revision if weights is None else model_dir.name}"
        else:
            if model_kwargs is None or vad_model_kwargs is None:
                raise ValueError("`pretrained=False` needs `model_kwargs` and `vad_model_kwargs` (see tiny_sensevoice)")
            model_args = dict(model_kwargs)
            vad_args = {**dict(vad_model_kwargs), **VAD_KWARGS}
            vad_model = vad_args.pop("model")
            self.checkpoint_id = "random-init"
        self.pipeline = AutoModel(
            **model_args,
            vad_model=vad_model,
            vad_kwargs=vad_args,
            device="cpu",
            hub="hf",
            disable_update=True,
            disable_pbar=True,
            # FunASR sets torch's global thread count to `ncpu` (default 4); keep the caller's.
            ncpu=torch.get_num_threads(),
        )
        self.model = self.pipeline.model
        self.vad_model = self.pipeline.vad_model
        self._warn = HintWarner("SenseVoice")
        self.eval()

    def language_code(self, hint: str | None) -> str:
        """SenseVoice's language for ``hint`` (``zh``/``en``/``yue``/``ja``/``ko``), else ``"auto"``; warns once."""
        code = sensevoice_language(hint)
        if hint is not None and code is None:
            self._warn(hint)
        return code or GENERATE_KWARGS["language"]

    @torch.no_grad()
    def transcribe(
        self,
        waves: Sequence[Tensor],
        languages: Sequence[str | None] | None = None,
        force_language: bool = False,
    ) -> list[str]:
        """Transcribe 16 kHz clips (see :class:`~torchmetrics_av.backbones.asr.ASRBackbone`), one at a time.

        ``force_language=False`` (default) is FastVideo's ``language="auto"``; ``True`` passes hints that name a
        SenseVoice language.
        """
        from funasr.utils.postprocess_utils import rich_transcription_postprocess

        waves, hints = check_asr_inputs(waves, languages)
        # FunASR keeps the device in its kwargs; follow wherever .to() moved the modules.
        self.pipeline.kwargs["device"] = self.pipeline.vad_kwargs["device"] = str(self.device)
        texts = []
        for wave, hint in zip(waves, hints):
            kwargs = dict(GENERATE_KWARGS)
            if force_language:
                kwargs["language"] = self.language_code(hint)
            res = self.pipeline.generate(input=wave.detach().cpu().numpy(), cache={}, **kwargs)
            texts.append(rich_transcription_postprocess(res[0]["text"]).strip() if res else "")
        return texts


# Toy vocabulary for the tiny model's sentencepiece tokenizer (trained offline in milliseconds).
_TOY_CORPUS = ("the quick brown fox jumps over the lazy dog", "please call stella", "你好世界 今天天气很好")
_TOY_VOCAB_SIZE = 48


def _toy_bpe_model(folder: Path) -> Path:
    import sentencepiece as spm

    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(_TOY_CORPUS * 20), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(folder / "toy"),
        vocab_size=_TOY_VOCAB_SIZE,
        model_type="bpe",
        character_coverage=1.0,
        minloglevel=2,
    )
    return folder / "toy.model"


def tiny_sensevoice(folder: str | os.PathLike | None = None, **overrides: Any) -> SenseVoice:
    """A small random :class:`SenseVoice` (1-block SenseVoice encoder, 1-layer FSMN-VAD); offline.

    The FunASR classes, front ends and pipeline are the real ones (``SenseVoiceSmall``, ``SenseVoiceEncoderSmall``,
    ``WavFrontend`` with SenseVoice's LFR 7/6; ``FsmnVADStreaming``, ``FSMN``, ``WavFrontendOnline`` with LFR 5/1);
    the tokenizer is a 48-piece toy sentencepiece model written to ``folder`` (default: a new temporary folder).
    The VAD's output layer is set to call every frame speech, so the recogniser always runs.
    """
    _require_funasr()
    root = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="tiny-sensevoice-"))
    root.mkdir(parents=True, exist_ok=True)
    fbank = {"fs": ASR_SAMPLE_RATE, "window": "hamming", "n_mels": 80, "frame_length": 25, "frame_shift": 10}
    model_kwargs = {
        "model": "SenseVoiceSmall",
        "model_conf": {},
        "encoder": "SenseVoiceEncoderSmall",
        "encoder_conf": {
            "output_size": 32,
            "attention_heads": 2,
            "linear_units": 64,
            "num_blocks": 1,
            "tp_blocks": 1,
            "kernel_size": 11,
            "sanm_shfit": 0,
            "dropout_rate": 0.0,
            "positional_dropout_rate": 0.0,
            "attention_dropout_rate": 0.0,
            "normalize_before": True,
        },
        "tokenizer": "SentencepiecesTokenizer",
        "tokenizer_conf": {"bpemodel": str(_toy_bpe_model(root))},
        "frontend": "WavFrontend",
        "frontend_conf": {**fbank, "lfr_m": 7, "lfr_n": 6, "dither": 0.0},
    }
    vad_kwargs = {
        "model": "FsmnVADStreaming",
        "model_conf": {},
        "encoder": "FSMN",
        "encoder_conf": {
            "input_dim": 400,  # 80 mel x LFR 5
            "input_affine_dim": 16,
            "fsmn_layers": 1,
            "linear_dim": 16,
            "proj_dim": 8,
            "lorder": 4,
            "rorder": 0,
            "lstride": 1,
            "rstride": 0,
            "output_affine_dim": 16,
            "output_dim": 4,
        },
        "frontend": "WavFrontendOnline",
        "frontend_conf": {**fbank, "lfr_m": 5, "lfr_n": 1, "dither": 0.0},
    }
    asr = SenseVoice(pretrained=False, model_kwargs=model_kwargs, vad_model_kwargs=vad_kwargs, **overrides)
    with torch.no_grad():
        # Silence is VAD class 0 (sil_pdf_ids [0]); make its posterior ~0 so every frame is speech.
        last = asr.vad_model.encoder.out_linear2.linear
        last.weight.zero_()
        last.bias.zero_()
        last.bias[0] = -20.0
    return asr
