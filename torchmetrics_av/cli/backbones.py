"""The backbones the command line can load: one :class:`BackboneSpec` each, in :data:`BACKBONES`.

A spec says what ``--weights-dir`` must hold (:class:`WeightsEntry`: names, download URL, a hint) and how to build
the model from that entry or, without ``--weights-dir``, from the cache / a download, or with random weights
(``--random-weights full``: the official architecture; ``tiny``: :func:`torchmetrics_av.testing.tiny_backbone`).
:func:`build_backbones` builds every backbone a run needs and, when checkpoints are missing (offline, or not in
``--weights-dir``), lists **all** of them in one error, each with its URL and ``--weights-dir`` entry, instead of
stopping at the first.

Adding a backbone (PANNs, VGGish, MS-CLAP, ...) adds one spec here; the metric specs name it by its key.

Example:
    >>> from torchmetrics_av.cli.backbones import BACKBONES
    >>> sorted(BACKBONES)
    ['audiobox', 'clap', 'imagebind', 'msclap', 'panns', 'passt', 'synchformer', 'vggish', 'whisper']
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
from torchmetrics_av.protocols import get_protocol


@dataclass(frozen=True)
class WeightsEntry:
    """What ``--weights-dir`` holds for one backbone.

    Attributes:
        names: file or folder names looked for inside ``--weights-dir``, the official one first.
        url: where to download it.
        hint: the entry as a user should create it (shown in errors).
        extras: optional companion folders (e.g. a tokenizer), looked for next to it.
    """

    names: tuple[str, ...]
    url: str
    hint: str
    extras: tuple[str, ...] = ()

    def find(self, weights_dir: str) -> Path:
        """The first of :attr:`names` inside ``weights_dir``.

        Raises:
            CLIError: none of them is there (the message names the entry and its URL).
        """
        root = Path(weights_dir).expanduser()
        for name in self.names:
            if (root / name).exists():
                return root / name
        raise CLIError(
            f"{self.names[0]} is not in --weights-dir {weights_dir} (looked for {', '.join(self.names)}); "
            f"download it from {self.url}"
        )

    def extra(self, weights_dir: str | None) -> Path | None:
        """The first existing :attr:`extras` folder inside ``weights_dir``, if any."""
        if weights_dir is None:
            return None
        root = Path(weights_dir).expanduser()
        return next((root / n for n in self.extras if (root / n).is_dir()), None)


@dataclass(frozen=True)
class BackboneSpec:
    """How the command line locates and builds one backbone.

    Attributes:
        entry: ``args -> WeightsEntry`` (it may depend on ``--protocol`` or ``--whisper-model``).
        load: ``(path inside --weights-dir or None for the cache/download, args) -> module``.
        random: ``protocol -> module``: the official architecture with random weights (``--random-weights full``).
    """

    entry: Callable[[argparse.Namespace], WeightsEntry]
    load: Callable[[Path | None, argparse.Namespace], nn.Module]
    random: Callable[[str], nn.Module]


def _passt_entry(args: argparse.Namespace) -> WeightsEntry:
    from torchmetrics_av.backbones.passt import PASST_CHECKPOINT as C

    return WeightsEntry((C.filename,), C.source, C.filename)


def _passt(path: Path | None, args: argparse.Namespace) -> nn.Module:
    from torchmetrics_av.backbones.passt import PaSST

    return PaSST(weights=path)


def _clap_entry(args: argparse.Namespace) -> WeightsEntry:
    from torchmetrics_av.backbones.clap import AVBENCH_CHECKPOINT, FASTVIDEO_REPO, LAION_TOKENIZER_REPO

    folder, tokenizer = FASTVIDEO_REPO.split("/")[-1], LAION_TOKENIZER_REPO.split("/")[-1]
    # The protocol's official CLAP checkpoint (the CLAP backbone picks the same one for weights=None).
    if get_protocol(args.protocol).clap_fusion:
        return WeightsEntry(
            (folder, FASTVIDEO_REPO),
            f"https://huggingface.co/{FASTVIDEO_REPO}",
            f"the folder {folder}/ (config.json, model.safetensors, tokenizer files)",
        )
    return WeightsEntry(
        (AVBENCH_CHECKPOINT.filename,),
        AVBENCH_CHECKPOINT.source,
        f"{AVBENCH_CHECKPOINT.filename} (and the tokenizer folder {tokenizer}/ from "
        f"https://huggingface.co/{LAION_TOKENIZER_REPO})",
        extras=(tokenizer, LAION_TOKENIZER_REPO),
    )


def _clap(path: Path | None, args: argparse.Namespace) -> nn.Module:
    from torchmetrics_av.backbones.clap import CLAP

    tokenizer = None
    folder = _clap_entry(args).extra(args.weights_dir)
    if folder is not None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    clap = CLAP(weights=path, protocol=args.protocol, tokenizer=tokenizer)
    _ = clap.tokenizer  # loaded now, so that a missing tokenizer is listed with the missing checkpoints
    return clap


def _whisper_entry(args: argparse.Namespace) -> WeightsEntry:
    from torchmetrics_av.backbones.whisper import whisper_checkpoint

    try:
        ckpt = whisper_checkpoint(args.whisper_model)
    except ValueError as err:
        raise CLIError(f"--whisper-model: {err}") from err
    official = Path(str(ckpt.url)).name
    return WeightsEntry((ckpt.filename, official), ckpt.source, official)


def _whisper(path: Path | None, args: argparse.Namespace) -> nn.Module:
    from torchmetrics_av.backbones.whisper import Whisper

    return Whisper(weights=path, name=args.whisper_model)


def _audiobox_entry(args: argparse.Namespace) -> WeightsEntry:
    from torchmetrics_av.backbones.audiobox import AUDIOBOX_HUB_REPO, AUDIOBOX_WEIGHTS

    folder = AUDIOBOX_WEIGHTS.filename.split("/")[0]
    hint = f"the folder {folder}/ (config.json, model.safetensors)"
    return WeightsEntry((folder, AUDIOBOX_HUB_REPO), f"https://huggingface.co/{AUDIOBOX_HUB_REPO}", hint)


def _audiobox(path: Path | None, args: argparse.Namespace) -> nn.Module:
    from torchmetrics_av.backbones.audiobox import Audiobox

    return Audiobox(weights=path)


def _imagebind_entry(args: argparse.Namespace) -> WeightsEntry:
    from torchmetrics_av.backbones.imagebind import IMAGEBIND_CHECKPOINT as C

    return WeightsEntry((C.filename,), C.source, C.filename)


def _imagebind(path: Path | None, args: argparse.Namespace) -> nn.Module:
    from torchmetrics_av.backbones.imagebind import ImageBind

    return ImageBind(weights=path)


def _synchformer_entry(args: argparse.Namespace) -> WeightsEntry:
    from torchmetrics_av.backbones.synchformer import SYNCHFORMER_CHECKPOINT as C

    return WeightsEntry((C.filename,), C.source, C.filename)


def _synchformer(path: Path | None, args: argparse.Namespace) -> nn.Module:
    from torchmetrics_av.backbones.synchformer import Synchformer

    return Synchformer(weights=path)


def _panns_entry(args: argparse.Namespace) -> WeightsEntry:
    from torchmetrics_av.backbones.panns import PANNS_CHECKPOINT as C

    return WeightsEntry((C.filename,), C.source, C.filename)


def _panns(path: Path | None, args: argparse.Namespace) -> nn.Module:
    from torchmetrics_av.backbones.panns import PANNs

    return PANNs(weights=path)


def _vggish_entry(args: argparse.Namespace) -> WeightsEntry:
    from torchmetrics_av.backbones.vggish import VGGISH_CHECKPOINT as C

    return WeightsEntry((C.filename,), C.source, C.filename)


def _vggish(path: Path | None, args: argparse.Namespace) -> nn.Module:
    from torchmetrics_av.backbones.vggish import VGGish

    return VGGish(weights=path)


def _msclap_entry(args: argparse.Namespace) -> WeightsEntry:
    from torchmetrics_av.backbones.msclap import MSCLAP_CHECKPOINT as C

    return WeightsEntry((C.filename,), C.source, C.filename)


def _msclap(path: Path | None, args: argparse.Namespace) -> nn.Module:
    from torchmetrics_av.backbones.msclap import MSCLAP

    msclap = MSCLAP(weights=path)
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


BACKBONES: dict[str, BackboneSpec] = {
    "passt": BackboneSpec(_passt_entry, _passt, _random("torchmetrics_av.backbones.passt", "PaSST")),
    "clap": BackboneSpec(_clap_entry, _clap, _random_clap),
    "whisper": BackboneSpec(_whisper_entry, _whisper, _random("torchmetrics_av.backbones.whisper", "Whisper")),
    "audiobox": BackboneSpec(_audiobox_entry, _audiobox, _random("torchmetrics_av.backbones.audiobox", "Audiobox")),
    "imagebind": BackboneSpec(
        _imagebind_entry, _imagebind, _random("torchmetrics_av.backbones.imagebind", "ImageBind")
    ),
    "synchformer": BackboneSpec(
        _synchformer_entry, _synchformer, _random("torchmetrics_av.backbones.synchformer", "Synchformer")
    ),
    "panns": BackboneSpec(_panns_entry, _panns, _random("torchmetrics_av.backbones.panns", "PANNs")),
    "vggish": BackboneSpec(_vggish_entry, _vggish, _random("torchmetrics_av.backbones.vggish", "VGGish")),
    "msclap": BackboneSpec(_msclap_entry, _msclap, _random("torchmetrics_av.backbones.msclap", "MSCLAP")),
}


def random_backbone(kind: str, size: str, protocol: str) -> nn.Module:
    """Backbone ``kind`` with random weights: ``size="tiny"`` (:func:`~torchmetrics_av.testing.tiny_backbone`) or
    ``"full"`` (the official architecture), seeded with :data:`~torchmetrics_av.testing.TINY_SEED` either way.

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
    """One backbone's checkpoint is neither in ``--weights-dir`` nor in the cache, and cannot be downloaded."""


def build_backbone(kind: str, args: argparse.Namespace) -> nn.Module:
    """Backbone ``kind`` on ``--device``: random with ``--random-weights``, else the official checkpoint.

    Raises:
        MissingWeightsError: the checkpoint is missing (the message names the file, its URL and the
            ``--weights-dir`` entry).
    """
    from torchmetrics_av.weights import WeightsNotFoundError

    if args.random_weights:
        return random_backbone(kind, args.random_weights, args.protocol).to(args.device)
    spec = BACKBONES[kind]
    entry = spec.entry(args)
    try:
        path = entry.find(args.weights_dir) if args.weights_dir else None
        module = spec.load(path, args)
    except (WeightsNotFoundError, CLIError) as err:
        if isinstance(err, CLIError) and args.weights_dir is None:
            raise
        raise MissingWeightsError(f"{kind}: {err}\n    --weights-dir entry: {entry.hint} (from {entry.url})") from err
    except ValueError as err:  # a file that is there but is not this model's checkpoint
        raise CLIError(f"{kind}: {err}") from err
    return module.to(args.device)


def build_backbones(kinds: Iterable[str], args: argparse.Namespace) -> dict[str, nn.Module]:
    """Every backbone of ``kinds`` (each once), listing all missing checkpoints in one error.

    Raises:
        CLIError: one or more checkpoints are missing.
    """
    built: dict[str, nn.Module] = {}
    missing: list[str] = []
    for kind in dict.fromkeys(kinds):
        try:
            built[kind] = build_backbone(kind, args)
        except MissingWeightsError as err:
            missing.append(str(err))
    if missing:
        where = f"--weights-dir {args.weights_dir}" if args.weights_dir else "--weights-dir DIR"
        raise CLIError(
            f"{len(missing)} checkpoint(s) missing:\n  " + "\n  ".join(missing) + f"\nPut them in {where} under the "
            "names above (or in the cache folder, $TORCHMETRICS_AV_CACHE), or run with network access once."
        )
    return built
