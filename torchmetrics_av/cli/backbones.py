"""The backbones the command line can load: one :class:`BackboneSpec` each, in :data:`BACKBONES`.

``--weights-dir DIR`` is a weights folder in the checkpoint table's layout (what ``torchmetrics-av download
--weights-dir DIR`` writes: the "file in the weights folder" column of the README table). A spec names the table
entries its backbone loads (:attr:`BackboneSpec.checkpoints`: checkpoint or group names of
:data:`torchmetrics_av.weights.GROUPS`) and builds it with ``cache_dir=DIR``, so every file is verified against the
table and nothing is downloaded for what the folder holds. Where the table's files are not all there, a copy under the
publisher's own name is accepted instead (:attr:`BackboneSpec.alternatives`: Whisper's ``base.pt``, a
``from_pretrained`` folder ``clap-htsat-fused/`` with only config, weights and tokenizer) and used as it is
(``weights=``, no digest). Without ``--weights-dir`` the cache folder plays that role and missing files are downloaded.

:func:`build_backbones` lists what every backbone of the run lacks with
:func:`~torchmetrics_av.weights.missing_checkpoints` before building any (offline, or with ``--weights-dir``) and
reports **all** of it in one error, :func:`~torchmetrics_av.weights.missing_message`: each file with its URL, and the
``torchmetrics-av download`` command that fetches them.

``--random-weights {tiny,full}`` (:func:`random_backbone`) builds each backbone with random weights instead, for
trying the command and testing it offline: the numbers it gives are **not** the metrics (the command prints a RANDOM
WEIGHTS banner).

Adding a backbone (PANNs, VGGish, MS-CLAP, ...) adds one spec here; the metric specs name it by its key.

Example:
    >>> from torchmetrics_av.cli.backbones import BACKBONES
    >>> sorted(BACKBONES)  # doctest: +NORMALIZE_WHITESPACE
    ['audiobox', 'clap', 'glm_asr', 'hf_whisper', 'imagebind', 'msclap', 'panns', 'passt', 'sensevoice',
     'synchformer', 'vggish', 'whisper']
"""

from __future__ import annotations

import argparse
import importlib
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from torchmetrics_av.cli.errors import CLIError


def _no_alternatives(args: argparse.Namespace) -> tuple[str, ...]:
    return ()


@dataclass(frozen=True)
class BackboneSpec:
    """How the command line locates and builds one backbone.

    Attributes:
        checkpoints: ``args -> names`` of the table entries it loads (they may depend on ``--protocol`` or
            ``--whisper-model``), as :func:`torchmetrics_av.weights.select_checkpoints` takes them.
        load: ``(a copy under an alternative name inside --weights-dir, or None for the table's files, args) ->
            module``; it passes ``cache_dir=args.weights_dir``.
        random: ``protocol -> module``: the official architecture with random weights (``--random-weights full``).
        alternatives: ``args -> names`` inside ``--weights-dir`` used as ``weights=`` when the table's files are not
            all there.
    """

    checkpoints: Callable[[argparse.Namespace], list[str]]
    load: Callable[[Path | None, argparse.Namespace], nn.Module]
    random: Callable[[str], nn.Module]
    alternatives: Callable[[argparse.Namespace], tuple[str, ...]] = _no_alternatives


def _passt(path: Path | None, args: argparse.Namespace) -> nn.Module:
    from torchmetrics_av.backbones.passt import PaSST

    return PaSST(weights=path, cache_dir=args.weights_dir)


def _clap_checkpoints(args: argparse.Namespace) -> list[str]:
    # Each protocol's official CLAP checkpoint (the CLAP backbone picks the same ones for weights=None).
    return [f"clap-{args.protocol}"]


def _clap_alternatives(args: argparse.Namespace) -> tuple[str, ...]:
    from torchmetrics_av.backbones.clap import FASTVIDEO_FOLDER, FASTVIDEO_REPO
    from torchmetrics_av.protocols import get_protocol

    # A from_pretrained folder of laion/clap-htsat-fused (under the table's name or the repository's).
    return (FASTVIDEO_FOLDER, FASTVIDEO_REPO) if get_protocol(args.protocol).clap_fusion else ()


def _clap(path: Path | None, args: argparse.Namespace) -> nn.Module:
    from torchmetrics_av.backbones.clap import CLAP

    clap = CLAP(weights=path, protocol=args.protocol, cache_dir=args.weights_dir)
    _ = clap.tokenizer  # loaded now, so that a missing tokenizer is listed with the missing checkpoints
    return clap


def _whisper_checkpoints(args: argparse.Namespace) -> list[str]:
    from torchmetrics_av.backbones.whisper import whisper_checkpoint

    try:
        return [whisper_checkpoint(args.whisper_model).name]
    except ValueError as err:
        raise CLIError(f"--whisper-model: {err}") from err


def _whisper_alternatives(args: argparse.Namespace) -> tuple[str, ...]:
    from torchmetrics_av.backbones.whisper import whisper_checkpoint

    return (Path(str(whisper_checkpoint(args.whisper_model).url)).name,)  # openai-whisper's own name: base.pt


def _whisper(path: Path | None, args: argparse.Namespace) -> nn.Module:
    from torchmetrics_av.backbones.whisper import Whisper

    return Whisper(weights=path, name=args.whisper_model, cache_dir=args.weights_dir)


def _hf_whisper(path: Path | None, args: argparse.Namespace) -> nn.Module:
    from torchmetrics_av.backbones.hf_whisper import HFWhisper

    return HFWhisper(weights=path, cache_dir=args.weights_dir)


def _glm_asr(path: Path | None, args: argparse.Namespace) -> nn.Module:
    from torchmetrics_av.backbones.glm_asr import GLMASR

    return GLMASR(weights=path, cache_dir=args.weights_dir)


def _sensevoice(path: Path | None, args: argparse.Namespace) -> nn.Module:
    from torchmetrics_av.backbones.sensevoice import SenseVoice

    return SenseVoice(cache_dir=args.weights_dir)


def _no_full_sensevoice(protocol: str) -> nn.Module:
    # FunASR builds SenseVoice only from a model folder's config.yaml; without one only the tiny test config exists.
    raise CLIError("--random-weights full: SenseVoice has no offline full-size config; use --random-weights tiny")


def _audiobox_alternatives(args: argparse.Namespace) -> tuple[str, ...]:
    from torchmetrics_av.backbones.audiobox import AUDIOBOX_HUB_REPO

    return (AUDIOBOX_HUB_REPO,)


def _audiobox(path: Path | None, args: argparse.Namespace) -> nn.Module:
    from torchmetrics_av.backbones.audiobox import Audiobox

    return Audiobox(weights=path, cache_dir=args.weights_dir)


def _imagebind(path: Path | None, args: argparse.Namespace) -> nn.Module:
    from torchmetrics_av.backbones.imagebind import ImageBind

    return ImageBind(weights=path, cache_dir=args.weights_dir)


def _synchformer(path: Path | None, args: argparse.Namespace) -> nn.Module:
    from torchmetrics_av.backbones.synchformer import Synchformer

    return Synchformer(weights=path, cache_dir=args.weights_dir)


def _panns(path: Path | None, args: argparse.Namespace) -> nn.Module:
    from torchmetrics_av.backbones.panns import PANNs

    return PANNs(weights=path, cache_dir=args.weights_dir)


def _vggish(path: Path | None, args: argparse.Namespace) -> nn.Module:
    from torchmetrics_av.backbones.vggish import VGGish

    return VGGish(weights=path, cache_dir=args.weights_dir)


def _msclap(path: Path | None, args: argparse.Namespace) -> nn.Module:
    from torchmetrics_av.backbones.msclap import MSCLAP

    msclap = MSCLAP(weights=path, cache_dir=args.weights_dir)
    _ = msclap.tokenizer  # its GPT-2 BPE file now, so that a missing one is listed with the missing checkpoints
    return msclap


def _random_clap(protocol: str) -> nn.Module:
    from torchmetrics_av.backbones.clap import CLAP
    from torchmetrics_av.testing import ToyTokenizer

    return CLAP(pretrained=False, protocol=protocol, tokenizer=ToyTokenizer())


def _random(module: str, cls: str) -> Callable[[str], nn.Module]:
    """A builder of ``module.cls(pretrained=False)`` (the architecture does not depend on the protocol)."""

    def build(protocol: str) -> nn.Module:
        return getattr(importlib.import_module(module), cls)(pretrained=False)

    return build


def _only(*names: str) -> Callable[[argparse.Namespace], list[str]]:
    return lambda args: list(names)


def _only_alternative(*names: str) -> Callable[[argparse.Namespace], tuple[str, ...]]:
    return lambda args: names


_BB = "torchmetrics_av.backbones."
BACKBONES: dict[str, BackboneSpec] = {
    "passt": BackboneSpec(_only("passt"), _passt, _random(_BB + "passt", "PaSST")),
    "clap": BackboneSpec(_clap_checkpoints, _clap, _random_clap, _clap_alternatives),
    "whisper": BackboneSpec(_whisper_checkpoints, _whisper, _random(_BB + "whisper", "Whisper"), _whisper_alternatives),
    "audiobox": BackboneSpec(
        _only("audiobox"), _audiobox, _random(_BB + "audiobox", "Audiobox"), _audiobox_alternatives
    ),
    "imagebind": BackboneSpec(_only("imagebind"), _imagebind, _random(_BB + "imagebind", "ImageBind")),
    "synchformer": BackboneSpec(_only("synchformer"), _synchformer, _random(_BB + "synchformer", "Synchformer")),
    "panns": BackboneSpec(_only("panns"), _panns, _random(_BB + "panns", "PANNs")),
    "vggish": BackboneSpec(_only("vggish"), _vggish, _random(_BB + "vggish", "VGGish")),
    "msclap": BackboneSpec(_only("msclap"), _msclap, _random(_BB + "msclap", "MSCLAP")),
    # WER's other ASR backends (--asr-backend): HF whisper-base also loads openai-whisper's own base.pt.
    "hf_whisper": BackboneSpec(
        _only("hf-whisper"), _hf_whisper, _random(_BB + "hf_whisper", "HFWhisper"), _only_alternative("base.pt")
    ),
    "glm_asr": BackboneSpec(_only("glm-asr"), _glm_asr, _random(_BB + "glm_asr", "GLMASR")),
    "sensevoice": BackboneSpec(_only("sensevoice"), _sensevoice, _no_full_sensevoice),
}


def random_backbone(kind: str, size: str, protocol: str) -> nn.Module:
    """Backbone ``kind`` with random weights: ``size="tiny"`` (:func:`~torchmetrics_av.testing.tiny_backbone`) or
    ``"full"`` (the official architecture), seeded with :data:`~torchmetrics_av.testing.TINY_SEED` either way, so the
    same call gives the same weights.

    Example:
        >>> type(random_backbone("passt", "tiny", "fastvideo")).__name__
        'PaSST'
    """
    from torchmetrics_av.testing import TINY_BACKBONES, TINY_SEED, tiny_backbone

    if size == "tiny":
        takes_protocol = "protocol" in inspect.signature(TINY_BACKBONES[kind]).parameters
        return tiny_backbone(kind, **({"protocol": protocol} if takes_protocol else {}))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        return BACKBONES[kind].random(protocol)


class MissingWeightsError(CLIError):
    """Checkpoint files are neither in ``--weights-dir`` nor in the cache, and cannot be downloaded."""


def _alternative(spec: BackboneSpec, args: argparse.Namespace) -> Path | None:
    root = Path(args.weights_dir).expanduser()
    return next((root / n for n in spec.alternatives(args) if (root / n).exists()), None)


def build_backbone(kind: str, args: argparse.Namespace) -> nn.Module:
    """Backbone ``kind`` on ``--device``: random with ``--random-weights``, else the official checkpoint.

    With ``--weights-dir`` (or offline) its table files must all be there (or an alternative copy, see
    :class:`BackboneSpec`); otherwise they come from the cache or a download.

    Raises:
        MissingWeightsError: files are missing (the message names each, its URL and the download command).
        CLIError: a file that is there is corrupt or not this model's checkpoint.
    """
    from torchmetrics_av.weights import ChecksumError, WeightsNotFoundError, missing_checkpoints, missing_message

    if args.random_weights:
        return random_backbone(kind, args.random_weights, args.protocol).to(args.device)
    spec = BACKBONES[kind]
    path = None
    missing = missing_checkpoints(spec.checkpoints(args), args.weights_dir) if _must_be_there(args) else []
    if missing:
        path = _alternative(spec, args) if args.weights_dir else None
        if path is None:
            raise MissingWeightsError(missing_message(missing, args.weights_dir))
    try:
        module = spec.load(path, args)
    except WeightsNotFoundError as err:
        raise MissingWeightsError(f"{kind}: {err}") from err
    except (ValueError, ChecksumError) as err:  # a file that is there but is not this model's checkpoint
        raise CLIError(f"{kind}: {err}") from err
    return module.to(args.device)


def _must_be_there(args: argparse.Namespace) -> bool:
    """Whether missing files are an error before anything loads: nothing may be downloaded for them."""
    from torchmetrics_av.weights import is_offline

    return args.weights_dir is not None or is_offline()


def build_backbones(kinds: Iterable[str], args: argparse.Namespace) -> dict[str, nn.Module]:
    """Every backbone of ``kinds`` (each once), listing every missing checkpoint file of all of them in one error.

    Raises:
        CLIError: files are missing (:func:`~torchmetrics_av.weights.missing_message`: each file with its URL and
            the ``torchmetrics-av download`` command), or could not be downloaded.
    """
    from torchmetrics_av.weights import missing_checkpoints, missing_message

    kinds = list(dict.fromkeys(kinds))
    if not args.random_weights and _must_be_there(args):
        lacking: dict[str, list] = {}
        for kind in kinds:
            spec = BACKBONES[kind]
            missing = missing_checkpoints(spec.checkpoints(args), args.weights_dir)
            if missing and not (args.weights_dir and _alternative(spec, args)):
                lacking[kind] = missing
        if lacking:
            files = list({c.name: c for cs in lacking.values() for c in cs}.values())
            where = f"--weights-dir {args.weights_dir}" if args.weights_dir else "the cache folder"
            raise CLIError(
                f"{missing_message(files, args.weights_dir)}\nNeeded by the backbones {', '.join(lacking)}; put the "
                f"files in {where} under the names above (or run with network access once)."
            )
    built: dict[str, nn.Module] = {}
    failed: list[str] = []
    for kind in kinds:
        try:
            built[kind] = build_backbone(kind, args)
        except MissingWeightsError as err:
            failed.append(str(err))
    if failed:
        raise CLIError(f"{len(failed)} backbone(s) could not be loaded:\n  " + "\n  ".join(failed))
    return built
