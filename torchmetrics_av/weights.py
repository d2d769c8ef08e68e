"""Checkpoints: one table of every official file, and their resolution (local path, cache, download), checked.

:data:`CHECKPOINTS` lists every file a backbone can load, as published: URL or hub ``repo@revision`` + file name,
size, digest (SHA-256 or MD5), who publishes that digest and where, and the licence. ``python -m
torchmetrics_av.weights --markdown`` prints it as the README's weights table. Backbones look their record up with
:func:`checkpoint` and call :func:`resolve_checkpoint` (several files at once: :func:`resolve_files`; a
``from_pretrained`` folder or hub snapshot of the table: :func:`resolve_folder`); the rules are the same for all:

1. ``weights=`` given: that local file (or directory) is used as it is. A missing path is an error, never a download.
2. Otherwise the file is looked up in the cache directory ``$TORCHMETRICS_AV_CACHE`` (default
   ``~/.cache/torchmetrics_av``) under its :attr:`Checkpoint.filename`, and verified: its size and published digest
   when the table has them, else the SHA-256 recorded when it was downloaded (``<file>.sha256``).
3. Otherwise it is downloaded (to ``<file>.part``, resumed with an HTTP ``Range`` request when a partial file is
   there, hashed while streaming, renamed into place only when it verifies). ``$TORCHMETRICS_AV_MIRROR`` replaces
   every source by ``<mirror>/<filename>`` (a copy of a filled weights folder served over ``https://`` or
   ``file://``); ``$HF_ENDPOINT`` moves hub files to a hub mirror. Offline (``HF_HUB_OFFLINE=1`` or
   ``TORCHMETRICS_AV_OFFLINE=1``) no connection is ever attempted and :class:`WeightsNotFoundError` names the file,
   its URL and the ``weights=`` argument.

A weights folder filled by :func:`torchmetrics_av.downloads.download` has exactly the cache layout, so it works both
as ``$TORCHMETRICS_AV_CACHE`` and as the CLI's ``--weights-dir``. :func:`missing_checkpoints` lists what a folder
lacks before anything is loaded. A hub ``revision=`` other than the table's (:func:`at_revision`) is fetched into
``<folder>@<revision>/`` and only checked against the SHA-256 recorded at its first download.

Example:
    >>> import tempfile, torch
    >>> from torchmetrics_av.weights import Checkpoint, resolve_checkpoint
    >>> tmp = tempfile.mkdtemp()
    >>> torch.save({"w": torch.zeros(2)}, f"{tmp}/tiny.pt")
    >>> ckpt = Checkpoint(name="tiny", filename="tiny.pt", url=f"file://{tmp}/tiny.pt")
    >>> path = resolve_checkpoint(ckpt, cache_dir=f"{tmp}/cache")
    >>> path.name
    'tiny.pt'
    >>> checkpoint("whisper-base").sha256[:8], checkpoint("whisper-base").digest_by
    ('ed3a0b6b', 'publisher')
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import pickle
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch

# Environment variables, named in DESIGN.md.
CACHE_ENV = "TORCHMETRICS_AV_CACHE"
OFFLINE_ENVS = ("TORCHMETRICS_AV_OFFLINE", "HF_HUB_OFFLINE")
DEFAULT_CACHE = Path("~/.cache/torchmetrics_av")
# A folder or URL holding a copy of a filled weights folder; every download then reads <mirror>/<filename>.
MIRROR_ENV = "TORCHMETRICS_AV_MIRROR"
# huggingface_hub's own variable: a hub mirror configured for transformers serves our hub files too.
HF_ENDPOINT_ENV = "HF_ENDPOINT"
DEFAULT_HF_ENDPOINT = "https://huggingface.co"
# Seconds a download may wait on the network per read (not in total), so a firewalled host fails instead of hanging.
DOWNLOAD_TIMEOUT_S = 60
# 1 MiB reads keep memory flat while hashing multi-GB checkpoints (ImageBind huge is 4.8 GB).
_CHUNK_BYTES = 1 << 20
_TRUE = {"1", "true", "yes", "on"}


class WeightsNotFoundError(FileNotFoundError):
    """A checkpoint is neither at the given path nor in the cache, and cannot be downloaded."""


class ChecksumError(RuntimeError):
    """A downloaded or cached checkpoint does not have the expected size or digest."""


class UnsafeCheckpointError(ValueError):
    """A checkpoint file needs more than a weights-only unpickler allows (a foreign global or pickle protocol > 2)."""


@dataclass(frozen=True)
class Checkpoint:
    """Where an official checkpoint file lives, how to check it, and under which licence.

    Args:
        name: short id recorded in provenance (e.g. saved FD reference statistics); the key in :data:`CHECKPOINTS`.
        filename: path inside the cache / weights folder (``"passt.pt"``, ``"clap-htsat-fused/config.json"``); for
            a ``snapshot`` entry, the folder.
        url: direct download URL (``https://`` or ``file://``), if the file has one.
        hf_repo: Hugging Face hub repository id, if the file lives on the hub.
        hf_filename: file inside ``hf_repo`` (defaults to the last component of ``filename``).
        sha256: expected hex SHA-256; ``None`` where no digest is known (then the digest of the first download is
            written next to the file and later loads are checked against it).
        license: the weights' licence, shown in docs and errors.
        revision: hub revision (a commit hash where one is known) the file is pinned to; ``None`` = ``main``.
        size: exact size in bytes, when known (checked before hashing).
        md5: expected hex MD5, where that is what the publisher gives (Zenodo, MMAudio).
        digest_by: ``"publisher"`` (the host states it: a hashed URL, a Zenodo record, a hub LFS pointer),
            ``"third-party"`` (independent public records of the same pinned file agree on it), or ``""`` (none).
        digest_source: where the digest (or the absence of one) is published, for the docs.
        approx_size: size as the host displays it, for the docs, where the exact size is not known.
        default: part of ``download()`` with no names (every default configuration of every metric).
        snapshot: ``filename`` is a folder holding every file of ``hf_repo@revision``, listed by the hub at
            download time with its LFS SHA-256 (used where the file list is not fixed here).
    """

    name: str
    filename: str
    url: str | None = None
    hf_repo: str | None = None
    hf_filename: str | None = None
    sha256: str | None = None
    license: str = ""
    revision: str | None = None
    size: int | None = None
    md5: str | None = None
    digest_by: str = ""
    digest_source: str = ""
    approx_size: str = ""
    default: bool = True
    snapshot: bool = False

    def download_url(self, mirror: str | None = None) -> str | None:
        """The URL to fetch: ``<mirror>/<filename>`` with a mirror, else ``url``, else the hub ``resolve`` URL."""
        mirror = mirror if mirror is not None else os.environ.get(MIRROR_ENV) or None
        if mirror:
            return f"{mirror.rstrip('/')}/{urllib.parse.quote(self.filename)}"
        if self.url:
            return self.url
        if self.hf_repo:
            file = self.hf_filename or self.filename.rsplit("/", 1)[-1]
            return f"{hf_endpoint()}/{self.hf_repo}/resolve/{self.revision or 'main'}/{urllib.parse.quote(file)}"
        return None

    @property
    def source(self) -> str:
        """Human-readable origin: the download URL (hub files: their ``resolve`` URL)."""
        if self.snapshot and self.hf_repo:
            return f"{hf_endpoint()}/{self.hf_repo}/tree/{self.revision or 'main'}"
        return self.download_url(mirror="") or "<no public source>"


def hf_endpoint() -> str:
    """The hub base URL: ``$HF_ENDPOINT`` or ``https://huggingface.co``."""
    return (os.environ.get(HF_ENDPOINT_ENV) or DEFAULT_HF_ENDPOINT).rstrip("/")


# =====================================================================================================================
# The table. Digests are public facts: each entry says where its digest is published. Where none is, the SHA-256 of
# the first download is recorded next to the file and every later load is checked against it.

_WHISPER_URL = "https://openaipublic.azureedge.net/main/whisper/models/{sha}/{name}.pt"
# openai-whisper 20250625 `whisper/__init__.py` `_MODELS`: the URL path holds the file's SHA-256 (whisper checks it).
# "large" and "turbo" are aliases of large-v3 and large-v3-turbo there (WHISPER_ALIASES).
_WHISPER_SHA256 = {
    "tiny.en": "d3dd57d32accea0b295c96e26691aa14d8822fac7d9d27d5dc00b4ca2826dd03",
    "tiny": "65147644a518d12f04e32d6f3b26facc3f8dd46e5390956a9424a650c0ce22b9",
    "base.en": "25a8566e1d0c1e2231d1c762132cd20e0f96a85d16145c3a00adf5d1ac670ead",
    "base": "ed3a0b6b1c0edf879ad9b11b1af5a0e6ab5db9205f891f668f8b0e6c6326e34e",
    "small.en": "f953ad0fd29cacd07d5a9eda5624af0f6bcf2258be67c92b79389873d91e0872",
    "small": "9ecf779972d90ba49c06d968637d720dd632c55bbf19d441fb42bf17a411e794",
    "medium.en": "d7440d1dc186f76616474e0ff0b3b6b879abc9d1a4926b7adfa41db2d497ab4f",
    "medium": "345ae4da62f9b3d59415adc60127b97c714f32e89e936602e85993674d08dcb1",
    "large-v1": "e4b87e7e0bf463eb8e6956e646f1e277e901512310def2c24bf0e11bd3c28e9a",
    "large-v2": "81f7c96c852ee8fc832187b0132e569d6c3065a3252ed18e56effd0b6a73e524",
    "large-v3": "e5b1a55b89c1367dacf97e3e19bfd829a01529dbfdeefa8caeb59b3f1b81dadb",
    "large-v3-turbo": "aff26ae408abcba5fbf8813c21e62b0941638c5f6eebfb145be0c9839262a19a",
}
WHISPER_ALIASES = {"large": "large-v3", "turbo": "large-v3-turbo"}
_WHISPER_SOURCE = "in the URL path (openai-whisper `whisper/__init__.py` `_MODELS`)"
_NONE = "none published: SHA-256 recorded at first download"
# Hub files whose digest is not pinned here (the hub lists one for LFS files; not found in public records yet).
_UNPINNED = "not pinned here: SHA-256 recorded at first download"
_HF_LFS = "hub LFS SHA-256 ({page})"

# Hub revisions the files are pinned to (commit hashes shown by the hub; "main" where no commit is pinned yet).
LAION_CLAP_REVISION = "4226474e38defca6fc9272a7848bb7b0355ccd7a"  # lukewys/laion_clap commit "Upload 3 files"
FASTVIDEO_CLAP_REVISION = "365dea6ef167def6676140ed93bbc43f84dabb28"  # golden-checked (backbones/clap.py)
HF_WHISPER_REVISION = "e37978b90ca9030d5170a5c07aadb050351a65bb"
AUDIOBOX_REVISION = "9b1dd8e5df9af7216e836a98974fe3b82c56ded6"  # the one FastVideo loads (golden README §2)
MSCLAP_REVISION = "5e1d53af259bb39d380680e69ca580960b2c66b1"
SENSEVOICE_REVISION = "3eb3b4eeffc2f2dde6051b853983753db33e35c3"
FSMN_VAD_REVISION = "931934ce7cbdde9388932e64efa25b52ccdb14c0"


def _hub_files(
    prefix: str,
    repo: str,
    revision: str | None,
    files: Sequence[str | tuple[str, str | None, int | None, str, str]],
    *,
    license: str,
    default: bool = True,
) -> list[Checkpoint]:
    """One entry per file of a ``from_pretrained`` folder ``<prefix>/``; a tuple adds (sha256, size, by, source)."""
    out = []
    for spec in files:
        file, sha, size, by, src = (spec, None, None, "", _UNPINNED) if isinstance(spec, str) else spec
        out.append(
            Checkpoint(
                name=f"{prefix}/{file}",
                filename=f"{prefix}/{file}",
                hf_repo=repo,
                hf_filename=file,
                revision=revision,
                sha256=sha,
                size=size,
                digest_by=by,
                digest_source=src,
                license=license,
                default=default,
            )
        )
    return out


_TIMBRAL = (
    "third-party: recorded for this revision in github.com/TioSisai/timbral tests/models/test_clap_alignment.py "
    "and, independently, in a second public repository"
)
_WHISPER_HF_PAGE = "huggingface.co/openai/whisper-base, model.safetensors page"
_WHISPER_HF_RECORD = (
    "third-party: recorded for this revision by two public manifests (one is the HF card DanielMarius/dms-whisper-base)"
)

_TABLE: list[Checkpoint] = [
    Checkpoint(
        name="passt_s_swa_p16_128_ap476",
        filename="passt-s-f128-p16-s10-ap.476-swa.pt",
        url="https://github.com/kkoutini/PaSST/releases/download/v0.0.1-audioset/passt-s-f128-p16-s10-ap.476-swa.pt",
        license="Apache-2.0",
        approx_size="≈ 345 MB (86.15 M fp32 parameters)",
        digest_source=_NONE,
    ),
    Checkpoint(
        name="laion_clap_music_speech_audioset_epoch_15_esc_89.98",
        filename="music_speech_audioset_epoch_15_esc_89.98.pt",
        hf_repo="lukewys/laion_clap",
        revision=LAION_CLAP_REVISION,
        sha256="51c68f12f9d7ea25fdaaccf741ec7f81e93ee594455410f3bca4f47f88d8e006",
        digest_by="publisher",
        digest_source=_HF_LFS.format(page="huggingface.co/lukewys/laion_clap file page at 4226474"),
        approx_size="2.35 GB",
        license="CC0-1.0",
    ),
    # laion_clap builds its tokenizer with RobertaTokenizer.from_pretrained("roberta-base"): the CLI's
    # --weights-dir roberta-base/ folder (config.json tells AutoTokenizer which class to build).
    *_hub_files(
        "roberta-base",
        "FacebookAI/roberta-base",
        None,
        ["config.json", "vocab.json", "merges.txt", "tokenizer.json"],
        license="MIT",
    ),
    # FastVideo's ClapModel/ClapProcessor.from_pretrained("laion/clap-htsat-fused"): the --weights-dir folder.
    *_hub_files(
        "clap-htsat-fused",
        "laion/clap-htsat-fused",
        FASTVIDEO_CLAP_REVISION,
        [
            (
                "config.json",
                "b1d63489dc5061da229c23d2b11e9ca731639574449f82319fabb01da7fcf480",
                None,
                "third-party",
                _TIMBRAL,
            ),
            (
                "preprocessor_config.json",
                "072bdd9ba771b6d213c56f15c0f765e33192b92e481581b52271cf16c9013684",
                None,
                "third-party",
                _TIMBRAL,
            ),
            (
                "model.safetensors",
                "3f648de6d030e17494be455d323b8d191233fbae0c7ce0ba745fd21a926a63a6",
                None,
                "third-party",
                _TIMBRAL,
            ),
            "vocab.json",
            "merges.txt",
            "tokenizer.json",
            "tokenizer_config.json",
            "special_tokens_map.json",
        ],
        license="Apache-2.0",
    ),
    *[
        Checkpoint(
            name=f"whisper-{name}",
            filename=f"whisper-{name}.pt",
            url=_WHISPER_URL.format(sha=sha, name=name),
            sha256=sha,
            digest_by="publisher",
            digest_source=_WHISPER_SOURCE,
            license="MIT",
            default=name == "base",
        )
        for name, sha in _WHISPER_SHA256.items()
    ],
    # FastVideo's WER default: WhisperForConditionalGeneration/WhisperProcessor.from_pretrained("openai/whisper-base").
    *_hub_files(
        "whisper-base",
        "openai/whisper-base",
        HF_WHISPER_REVISION,
        [
            (
                "config.json",
                "a153c53883a6799b6f056b4a8d1a515c9926d03994682ba88a7616618d7da0c1",
                1_983,
                "third-party",
                _WHISPER_HF_RECORD,
            ),
            (
                "preprocessor_config.json",
                "9b5cd03a36fbb8a627c64d98a5b5b126ead95a77720723944487311f0110b666",
                184_990,
                "third-party",
                _WHISPER_HF_RECORD,
            ),
            (
                "model.safetensors",
                "07cadb9f25677c8d50df603e66a98fbd842cce45047139baeb16e6219a1e807b",
                290_403_936,
                "publisher",
                _HF_LFS.format(page=_WHISPER_HF_PAGE),
            ),
            "generation_config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "vocab.json",
            "merges.txt",
            "normalizer.json",
            "added_tokens.json",
            "special_tokens_map.json",
        ],
        license="Apache-2.0",
    ),
    Checkpoint(
        name="zai-org/GLM-ASR-Nano-2512",
        filename="GLM-ASR-Nano-2512",
        hf_repo="zai-org/GLM-ASR-Nano-2512",
        # A byte-identical public mirror (AIArchiveInfo/GLM-ASR-Nano-2512) names revision 61ba4e0b3309…; the hub
        # resolves full commit hashes only, so this stays "main" until the full hash is pinned.
        revision=None,
        snapshot=True,
        digest_by="publisher",
        digest_source="hub LFS SHA-256 of each file, read from the hub's file listing at download time",
        approx_size="≈ 1.5 B parameters",
        license="MIT",
    ),
    # FastVideo: funasr.AutoModel(model="FunAudioLLM/SenseVoiceSmall", vad_model="fsmn-vad", hub="hf").
    *_hub_files(
        "SenseVoiceSmall",
        "FunAudioLLM/SenseVoiceSmall",
        SENSEVOICE_REVISION,
        [
            (
                "model.pt",
                "833ca2dcfdf8ec91bd4f31cfac36d6124e0c459074d5e909aec9cabe6204a3ea",
                936_291_369,
                "publisher",
                _HF_LFS.format(page="huggingface.co/FunAudioLLM/SenseVoiceSmall commit 2b05887 (upload model.pt)"),
            ),
            "config.yaml",
            "am.mvn",
            "chn_jpn_yue_eng_ko_spectok.bpe.model",
            "configuration.json",
        ],
        license="FunASR model licence",
    ),
    *_hub_files(
        "fsmn-vad",
        "funasr/fsmn-vad",
        FSMN_VAD_REVISION,
        [
            (
                "model.pt",
                "b3be75be477f0780277f3bae0fe489f48718f585f3a6e45d7dd1fbb1a4255fc5",
                1_721_366,
                "publisher",
                _HF_LFS.format(page="huggingface.co/funasr/fsmn-vad model.pt page at 931934c"),
            ),
            "config.yaml",
            "am.mvn",
            "configuration.json",
        ],
        license="FunASR model licence",
    ),
    Checkpoint(
        name="audiobox-aesthetics-config",
        filename="audiobox-aesthetics/config.json",
        hf_repo="facebook/audiobox-aesthetics",
        revision=AUDIOBOX_REVISION,
        sha256="0b8eabc5ced92cefed116a3aca8f1e59d2a33dc4d376b9e86dfb9c072e1d280d",
        size=492,
        digest_by="third-party",
        digest_source="third-party: a public weight manifest for this revision; the 492 bytes are "
        "json.dumps(AUDIOBOX_HUB_CONFIG, sort_keys=True, indent=2) (tested)",
        license="CC-BY-4.0",
    ),
    Checkpoint(
        name="audiobox-aesthetics",
        filename="audiobox-aesthetics/model.safetensors",
        hf_repo="facebook/audiobox-aesthetics",
        revision=AUDIOBOX_REVISION,
        sha256="a5a3c2412649cc2384ec525ffd5180ce6c4778f43bed6108e0a1303de04d014e",
        size=415_472_992,
        digest_by="third-party",
        digest_source="third-party: three independent public records for this revision (one is the OmniNFT "
        "reward-model manifest)",
        license="CC-BY-4.0",
    ),
    Checkpoint(
        name="imagebind_huge",
        filename="imagebind_huge.pth",
        url="https://dl.fbaipublicfiles.com/imagebind/imagebind_huge.pth",
        # Re-uploads on the hub (DAMO-NLP-SG/Video-LLaMA-2-*) carry SHA-256 d6f6c22b…, 4,803,584,173 bytes; Meta
        # publishes none, so it is not enforced.
        digest_source=_NONE,
        approx_size="4.8 GB",
        license="CC-BY-NC-SA-4.0",
    ),
    Checkpoint(
        name="synchformer_24-01-04T16-39-21",
        filename="synchformer_state_dict.pth",
        url="https://github.com/hkchengrex/MMAudio/releases/download/v0.1/synchformer_state_dict.pth",
        md5="5b2f5594b0730f70e41e549b7c94390c",
        digest_by="publisher",
        digest_source="MD5 in hkchengrex/MMAudio mmaudio/utils/download_utils.py",
        approx_size="907 MB (MMAudio docs/MODELS.md)",
        license="MIT",
    ),
    Checkpoint(
        name="panns_cnn14_16k_map0.438",
        filename="Cnn14_16k_mAP=0.438.pth",
        url="https://zenodo.org/records/3987831/files/Cnn14_16k_mAP%3D0.438.pth?download=1",
        md5="362fc5ff18f1d6ad2f6d464b45893f2c",
        digest_by="publisher",
        digest_source="MD5 on Zenodo record 3987831 (pinned by several public download scripts too)",
        approx_size="≈ 359 MB",
        license="CC-BY-4.0",
    ),
    Checkpoint(
        name="vggish-10086976",
        filename="vggish-10086976.pth",
        url="https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth",
        sha256="10086976245803799d9194e9a73d9b6c1549c71d1b80106f5cade5608a561f4b",
        digest_by="third-party",
        digest_source="file name carries the SHA-256 prefix 10086976 (torch.hub convention); the full digest from "
        "two public records that match it",
        license="Apache-2.0",
    ),
    Checkpoint(
        name="msclap-2023",
        filename="CLAP_weights_2023.pth",
        hf_repo="microsoft/msclap",
        revision=MSCLAP_REVISION,
        digest_source=_UNPINNED,
        approx_size="690 MB",
        license="MIT (code); weights per the hub card",
    ),
    # MS-CLAP's caption tokenizer is GPT-2's byte-level BPE: tiktoken's r50k_base rank file (= GPT-2's encoder.json +
    # vocab.bpe). openai-whisper bundles the same bytes as whisper/assets/gpt2.tiktoken (835,554 bytes there).
    Checkpoint(
        name="gpt2_bpe_r50k_base",
        filename="r50k_base.tiktoken",
        url="https://openaipublic.blob.core.windows.net/encodings/r50k_base.tiktoken",
        sha256="306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930",
        size=835_554,
        digest_by="publisher",
        digest_source="expected_hash of r50k_base() in tiktoken tiktoken_ext/openai_public.py (openai/tiktoken)",
        license="MIT",
    ),
]

CHECKPOINTS: dict[str, Checkpoint] = {c.name: c for c in _TABLE}

_FASTVIDEO_CLAP = tuple(c.name for c in _TABLE if c.filename.startswith("clap-htsat-fused/"))
_ROBERTA = tuple(c.name for c in _TABLE if c.filename.startswith("roberta-base/"))
_HF_WHISPER = tuple(c.name for c in _TABLE if c.filename.startswith("whisper-base/"))
_SENSEVOICE = tuple(c.name for c in _TABLE if c.filename.startswith(("SenseVoiceSmall/", "fsmn-vad/")))

# Backbone, metric and protocol names -> the checkpoints they load (what `download(names)` accepts).
GROUPS: dict[str, tuple[str, ...]] = {
    # backbones (torchmetrics_av.backbones)
    "passt": ("passt_s_swa_p16_128_ap476",),
    "clap-fastvideo": _FASTVIDEO_CLAP,
    "clap-av-benchmark": ("laion_clap_music_speech_audioset_epoch_15_esc_89.98", *_ROBERTA),
    "whisper": ("whisper-base",),
    "hf-whisper": _HF_WHISPER,
    "glm-asr": ("zai-org/GLM-ASR-Nano-2512",),
    "sensevoice": _SENSEVOICE,
    "audiobox": ("audiobox-aesthetics-config", "audiobox-aesthetics"),
    "imagebind": ("imagebind_huge",),
    "synchformer": ("synchformer_24-01-04T16-39-21",),
    "panns": ("panns_cnn14_16k_map0.438",),
    "vggish": ("vggish-10086976",),
    "msclap": ("msclap-2023", "gpt2_bpe_r50k_base"),
    # metrics (the CLI's --metrics names)
    "fd_passt": ("passt_s_swa_p16_128_ap476",),
    "kl_passt": ("passt_s_swa_p16_128_ap476",),
    "clap": (*_FASTVIDEO_CLAP, "laion_clap_music_speech_audioset_epoch_15_esc_89.98", *_ROBERTA),
    "wer": _HF_WHISPER,  # the default --asr-backend whisper (FastVideo's HF whisper-base)
    "aesthetics": ("audiobox-aesthetics-config", "audiobox-aesthetics"),
    "desync": ("synchformer_24-01-04T16-39-21",),
    "fd_vgg": ("vggish-10086976",),
    "fd_panns": ("panns_cnn14_16k_map0.438",),
    "kl_panns": ("panns_cnn14_16k_map0.438",),
    "isc_panns": ("panns_cnn14_16k_map0.438",),
    "isc_passt": ("passt_s_swa_p16_128_ap476",),
    # protocols: every checkpoint the harness's default configuration loads
    "fastvideo": (
        "passt_s_swa_p16_128_ap476",
        *_FASTVIDEO_CLAP,
        *_HF_WHISPER,
        "audiobox-aesthetics-config",
        "audiobox-aesthetics",
        "imagebind_huge",
        "synchformer_24-01-04T16-39-21",
    ),
    "av-benchmark": (
        "passt_s_swa_p16_128_ap476",
        "panns_cnn14_16k_map0.438",
        "vggish-10086976",
        "laion_clap_music_speech_audioset_epoch_15_esc_89.98",
        *_ROBERTA,
        "msclap-2023",
        "gpt2_bpe_r50k_base",
        "imagebind_huge",
        "synchformer_24-01-04T16-39-21",
    ),
    **{f"whisper-{alias}": (f"whisper-{name}",) for alias, name in WHISPER_ALIASES.items()},
}


def checkpoint(name: str) -> Checkpoint:
    """The table entry ``name`` (a key of :data:`CHECKPOINTS`).

    Raises:
        ValueError: unknown name (the message lists the valid ones).
    """
    try:
        return CHECKPOINTS[name]
    except KeyError:
        raise ValueError(f"unknown checkpoint {name!r}; known: {sorted(CHECKPOINTS)}") from None


def select_checkpoints(
    names: Iterable[str] | None = None, table: dict[str, Checkpoint] | None = None
) -> list[Checkpoint]:
    """The checkpoints ``names`` need, in table order, without repeats.

    Args:
        names: checkpoint names, backbone / metric / protocol names (keys of :data:`GROUPS`), or ``"all"`` (every
            entry, the non-default Whisper sizes included); ``None`` = every default entry.
        table: the table to select from (default :data:`CHECKPOINTS`; tests pass a modified copy).

    Raises:
        ValueError: a name is neither a checkpoint nor a group.

    Example:
        >>> [c.name for c in select_checkpoints(["fd_passt", "kl_passt"])]
        ['passt_s_swa_p16_128_ap476']
    """
    table = CHECKPOINTS if table is None else table
    if names is None:
        return [c for c in table.values() if c.default]
    wanted: set[str] = set()
    unknown = []
    for name in names:
        if name == "all":
            wanted.update(table)
        elif name in table:
            wanted.add(name)
        elif name in GROUPS:
            wanted.update(GROUPS[name])
        else:
            unknown.append(name)
    if unknown:
        raise ValueError(
            f"unknown checkpoint or group {unknown}; use a checkpoint name, 'all', or one of {sorted(GROUPS)}"
        )
    return [c for c in table.values() if c.name in wanted]


# =====================================================================================================================
# Cache, offline mode, digests


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """The checkpoint cache folder: ``override``, else ``$TORCHMETRICS_AV_CACHE``, else ``~/.cache/torchmetrics_av``."""
    raw = override if override is not None else os.environ.get(CACHE_ENV, str(DEFAULT_CACHE))
    return Path(raw).expanduser()


def is_offline() -> bool:
    """Whether downloads are disabled by ``TORCHMETRICS_AV_OFFLINE`` or ``HF_HUB_OFFLINE``."""
    return any(os.environ.get(k, "").strip().lower() in _TRUE for k in OFFLINE_ENVS)


def hash_file(path: str | os.PathLike, algorithms: Iterable[str] = ("sha256",)) -> dict[str, str]:
    """Hex digests of a file in one pass of 1 MiB reads, e.g. ``{"sha256": ..., "md5": ...}``."""
    hashers = {a: hashlib.new(a) for a in algorithms}
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK_BYTES), b""):
            for h in hashers.values():
                h.update(block)
    return {a: h.hexdigest() for a, h in hashers.items()}


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    return hash_file(path)["sha256"]


_cache_folder = cache_dir  # resolve_checkpoint's `cache_dir` argument shadows the function inside it


def _not_found(ckpt: Checkpoint, why: str) -> WeightsNotFoundError:
    err = WeightsNotFoundError(
        f"checkpoint {ckpt.filename!r} ({ckpt.name}) is not available: {why}. Download it from {ckpt.source} and pass "
        f"`weights=<path to {ckpt.filename}>`, or put it in the cache folder {cache_dir()} "
        f"(set ${CACHE_ENV} to move it; `torchmetrics-av download` fills a folder)."
    )
    err.why = why  # type: ignore[attr-defined]  # resolve_files lists the reasons of several files in one message
    return err


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Serialise concurrent downloads of one file (several DDP ranks on one host) when ``filelock`` exists."""
    try:
        from filelock import FileLock
    except ImportError:  # pragma: no cover - filelock ships with huggingface_hub
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        yield


def _digest_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _write_digest(path: Path, digests: dict[str, str]) -> None:
    st = path.stat()
    record = {**digests, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    _digest_path(path).write_text(json.dumps(record) + "\n")


def _read_digest(path: Path) -> dict[str, Any] | None:
    recorded = _digest_path(path)
    if not recorded.exists():
        return None
    text = recorded.read_text().strip()
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        record = {"sha256": text}
    return record if isinstance(record, dict) else {"sha256": text}


def _record_is_fresh(path: Path, record: dict[str, Any] | None) -> bool:
    st = path.stat()
    return record is not None and record.get("size") == st.st_size and record.get("mtime_ns") == st.st_mtime_ns


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file, taken from the record a download left next to it when the file is unchanged since."""
    path = Path(path)
    record = _read_digest(path)
    if _record_is_fresh(path, record) and record.get("sha256"):
        return str(record["sha256"])
    return sha256_file(path)


def verify_file(path: str | os.PathLike, ckpt: Checkpoint, *, rehash: bool = False) -> str:
    """Check a local copy of ``ckpt``: size, published digests, else the SHA-256 recorded at download.

    The file is re-hashed only when its size or modification time differ from those recorded with its digest
    (hashing ImageBind's 4.8 GB takes ~10 s per load otherwise), or with ``rehash=True``.

    Returns:
        what was checked, e.g. ``"sha256 ok (publisher)"``, ``"sha256 matches the download record"``, or
        ``"no digest to check"`` (a file put there by hand, with no published digest).

    Raises:
        ChecksumError: wrong size or digest (the file changed or is corrupt; delete it to download it again).
    """
    path = Path(path)
    size = path.stat().st_size
    if ckpt.size is not None and size != ckpt.size:
        raise ChecksumError(f"{path}: {size} bytes, expected {ckpt.size}; delete the file to download it again")
    record = _read_digest(path)
    fresh = not rehash and _record_is_fresh(path, record)
    expected = {"sha256": ckpt.sha256, "md5": ckpt.md5}
    published = {k: v.lower() for k, v in expected.items() if v}
    if not published and record is not None and record.get("sha256"):
        wanted = {"sha256": str(record["sha256"]).lower()}
    else:
        wanted = published
    if not wanted:
        return "no digest to check"
    hashed = not (fresh and all(str(record.get(k, "")).lower() == v for k, v in wanted.items()))
    digests = hash_file(path, {"sha256", *wanted}) if hashed else {k: str(record[k]) for k in wanted}
    for algo, value in wanted.items():
        if digests[algo] != value:
            raise ChecksumError(
                f"{path}: {algo.upper()} {digests[algo]} != expected {value}; delete the file to download it again"
            )
    if hashed:
        _write_digest(path, digests)
    if published:
        return " + ".join(f"{a} ok" for a in published) + f" ({ckpt.digest_by or 'table'})"
    return "sha256 matches the download record"


def verify_checksum(path: Path, expected: str | None) -> None:
    """Check a cached file against the SHA-256 ``expected``, or against the digest recorded when it was downloaded.

    Raises:
        ChecksumError: the file changed or is corrupt; delete it to download again.
    """
    verify_file(path, Checkpoint(name=path.name, filename=path.name, sha256=expected))


# =====================================================================================================================
# Download


def _open_url(url: str, offset: int, timeout: float) -> tuple[IO[bytes], int, int | None]:
    """Open ``url`` from byte ``offset`` when the server allows it: ``(stream, start, total size or None)``.

    ``start`` is ``offset`` when the range was honoured, else 0 (the caller starts again). No connection is attempted
    in offline mode (``file://`` URLs are local reads and stay allowed).
    """
    scheme = urllib.parse.urlparse(url).scheme
    if scheme == "file":
        local = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
        stream = open(local, "rb")  # noqa: SIM115 - returned to the caller, who closes it
        total = local.stat().st_size
        start = min(offset, total)
        stream.seek(start)
        return stream, start, total
    if is_offline():
        raise WeightsNotFoundError(f"offline mode is on (HF_HUB_OFFLINE / TORCHMETRICS_AV_OFFLINE); not fetching {url}")
    request = urllib.request.Request(url, headers={"User-Agent": "torchmetrics-av"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - URLs come from the table
    length = response.headers.get("Content-Length")
    if (
        offset
        and response.status == 206
        and str(response.headers.get("Content-Range", "")).startswith(f"bytes {offset}-")
    ):
        return response, offset, offset + int(length) if length else None
    return response, 0, int(length) if length else None


def _progress(total: int | None, initial: int, label: str, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm ships with huggingface_hub
        return None
    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=label, leave=False)


def download_url(
    url: str,
    dest: Path,
    sha256: str | None = None,
    *,
    md5: str | None = None,
    size: int | None = None,
    progress: bool = False,
    timeout: float = DOWNLOAD_TIMEOUT_S,
) -> Path:
    """Fetch ``url`` into ``dest``: stream to ``dest.part`` (resumed when one is there), verify, rename atomically.

    A resumed transfer that does not verify is discarded and fetched once more from the start.

    Args:
        url: ``https://``, ``http://`` or ``file://`` URL.
        dest: final path; its ``.sha256`` record is written next to it.
        sha256: expected SHA-256 (``None``: recorded, not checked).
        md5: expected MD5.
        size: expected size in bytes.
        progress: show a progress bar on stderr.
        timeout: seconds each network read may wait.

    Raises:
        ChecksumError: the bytes have another size or digest; ``dest`` is left untouched and no ``.part`` remains.
        OSError: the transfer failed (``urllib.error.URLError`` included); the ``.part`` is kept for a resume.
        WeightsNotFoundError: offline mode is on and ``url`` is not a local file.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in (0, 1):
        offset = part.stat().st_size if part.exists() and attempt == 0 else 0
        stream, start, total = _open_url(url, offset, timeout)
        algos = {"sha256", "md5"} if md5 else {"sha256"}
        hashers = {a: hashlib.new(a) for a in algos}
        bar = _progress(total, start, dest.name, progress)
        try:
            with stream, open(part, "r+b" if start else "wb") as out:
                remaining = start
                while remaining:  # hash the bytes kept from the interrupted transfer
                    block = out.read(min(_CHUNK_BYTES, remaining))
                    remaining -= len(block)
                    for h in hashers.values():
                        h.update(block)
                out.truncate(start)
                for block in iter(functools.partial(stream.read, _CHUNK_BYTES), b""):
                    out.write(block)
                    for h in hashers.values():
                        h.update(block)
                    if bar is not None:
                        bar.update(len(block))
        finally:
            if bar is not None:
                bar.close()
        digests = {a: h.hexdigest() for a, h in hashers.items()}
        got = part.stat().st_size
        problem = None
        if size is not None and got != size:
            problem = f"{got} bytes, expected {size}"
        elif sha256 is not None and digests["sha256"] != sha256.lower():
            problem = f"SHA-256 {digests['sha256']} does not match the expected {sha256}"
        elif md5 is not None and digests["md5"] != md5.lower():
            problem = f"MD5 {digests['md5']} does not match the expected {md5}"
        if problem is None:
            os.replace(part, dest)
            _write_digest(dest, digests)
            return dest
        part.unlink()
        if not start:
            raise ChecksumError(f"{url}: {problem}")
    raise AssertionError("unreachable")  # pragma: no cover


def resolve_checkpoint(
    ckpt: Checkpoint | str,
    weights: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    verify: bool = True,
) -> Path:
    """Return a local path for ``ckpt``: ``weights`` if given, else the cached copy, else a fresh download.

    Args:
        ckpt: the checkpoint record, or its name in :data:`CHECKPOINTS` (looked up now, so backbones that pass a
            name always read the current table).
        weights: a local file or directory chosen by the user; used as it is (no checksum: it may be a fine-tune).
        cache_dir: cache folder override (default ``$TORCHMETRICS_AV_CACHE`` or ``~/.cache/torchmetrics_av``).
        verify: check size and digests of cached and downloaded files.

    Raises:
        WeightsNotFoundError: ``weights`` does not exist, or the file is not cached and cannot be downloaded.
        ChecksumError: the cached or downloaded file has the wrong size or digest.
    """
    if isinstance(ckpt, str):
        ckpt = checkpoint(ckpt)
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.exists():
            raise WeightsNotFoundError(
                f"`weights={str(weights)!r}` does not exist (expected {ckpt.filename} from {ckpt.source})"
            )
        return path
    if ckpt.snapshot:
        raise ValueError(
            f"{ckpt.name} is a hub snapshot folder: fill it with torchmetrics_av.downloads.download and pass the "
            "folder as `weights=`"
        )
    folder = _cache_folder(cache_dir)
    target = folder / ckpt.filename
    with _file_lock(target):
        if target.exists():
            if verify:
                verify_file(target, ckpt)
            return target
        url = ckpt.download_url()
        if url is None:
            raise _not_found(ckpt, "it has no download source")
        if is_offline() and not url.startswith("file:"):
            raise _not_found(ckpt, "offline mode is on (HF_HUB_OFFLINE / TORCHMETRICS_AV_OFFLINE) and it is not cached")
        try:
            if verify:
                return download_url(url, target, ckpt.sha256, md5=ckpt.md5, size=ckpt.size)
            return download_url(url, target)
        except (urllib.error.URLError, OSError) as err:
            raise _not_found(ckpt, f"download failed ({err})") from err


def at_revision(ckpt: Checkpoint, revision: str | None) -> Checkpoint:
    """``ckpt`` at another hub revision: the same file, no table digest, cached under ``<folder>@<revision>/``.

    ``revision=None`` or the table's own revision return ``ckpt`` itself (its pinned digests apply). Any other
    revision is not in the table: nothing published is known about its bytes, so the copy is checked only against
    the SHA-256 recorded at its first download, and it lives apart from the pinned files
    (``clap-htsat-fused@<rev>/config.json``) so that neither replaces the other.

    Raises:
        ValueError: ``ckpt`` is not a hub file.

    Example:
        >>> c = at_revision(checkpoint("whisper-base/config.json"), "0123456789abcdef0123456789abcdef01234567")
        >>> c.filename.split("/"), c.sha256, c.download_url(mirror="").split("/")[-2][:8]
        (['whisper-base@0123456789abcdef0123456789abcdef01234567', 'config.json'], None, '01234567')
    """
    if revision is None or revision == (ckpt.revision or "main"):
        return ckpt
    if ckpt.hf_repo is None:
        raise ValueError(f"{ckpt.name} is not a hub file; it has no revision to choose")
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", revision)
    head, sep, rest = ckpt.filename.partition("/")
    return dataclasses.replace(
        ckpt,
        name=f"{ckpt.name}@{revision}",
        filename=f"{head}@{safe}{sep}{rest}",
        url=None,
        revision=revision,
        sha256=None,
        md5=None,
        size=None,
        digest_by="",
        digest_source=f"not pinned: `revision={revision}` is not the table's; SHA-256 recorded at first download",
    )


def folder_checkpoints(folder: str, table: dict[str, Checkpoint] | None = None) -> list[Checkpoint]:
    """The table entries that make up the weights-folder subfolder ``folder`` (``"clap-htsat-fused"``).

    That is the one ``snapshot`` entry named by ``folder``, or every per-file entry ``<folder>/<file>``.

    Raises:
        ValueError: no entry lives in ``folder``.

    Example:
        >>> [c.filename for c in folder_checkpoints("audiobox-aesthetics")]
        ['audiobox-aesthetics/config.json', 'audiobox-aesthetics/model.safetensors']
    """
    table = CHECKPOINTS if table is None else table
    found = [c for c in table.values() if (c.snapshot and c.filename == folder) or c.filename.startswith(folder + "/")]
    if not found:
        folders = sorted({c.filename.split("/")[0] for c in table.values() if c.snapshot or "/" in c.filename})
        raise ValueError(f"no checkpoint table entry lives in the folder {folder!r}; known folders: {folders}")
    return found


def _fetch_hint(missing: Sequence[Checkpoint], root: Path) -> str:
    """The command that fetches the table entries among ``missing``; the others are named by URL only."""
    known = list(dict.fromkeys(c.name for c in missing if c.name in CHECKPOINTS))
    if not known:
        return "Download them from the URLs above into that folder"
    # Files that make up a whole group are named by it ("clap-fastvideo", "av-benchmark"), largest groups first.
    names, left = [], set(known)
    for group, members in sorted(GROUPS.items(), key=lambda item: -len(set(item[1]))):
        if len(members) > 1 and set(members) <= left:
            names.append(group)
            left -= set(members)
    names += [n for n in known if n in left]
    command = f"torchmetrics-av download --weights-dir {root} {' '.join(names)}"
    if len(known) < len(missing):
        return f"Fetch them (with internet): {command}; download the others from the URLs above"
    return f"Fetch them (with internet): {command}"


def _files_not_found(missing: Sequence[Checkpoint], root: Path, why: str, weights_hint: str) -> WeightsNotFoundError:
    """One error for several files: each with its URL, then the download command and the ``weights=`` way out."""
    n = len(missing)
    lines = [f"{n} checkpoint file{'s' if n != 1 else ''} not available ({why}); looked in {root}:"]
    lines += [f"  {c.filename}{'/' if c.snapshot else ''}  ({c.source})" for c in missing]
    lines.append(f"{_fetch_hint(missing, root)}. Or pass `weights=<{weights_hint}>`.")
    return WeightsNotFoundError("\n".join(lines))


def resolve_files(
    ckpts: Sequence[Checkpoint | str],
    *,
    cache_dir: str | os.PathLike | None = None,
    verify: bool = True,
    weights_hint: str = "a local copy",
) -> list[Path]:
    """:func:`resolve_checkpoint` for several files at once (cache, else download), failing for all of them at once.

    Offline, every file that is not cached is listed in one :class:`WeightsNotFoundError` before anything is read;
    online, every file is tried and every failed download is listed.

    Args:
        ckpts: records or table names.
        cache_dir: cache folder override.
        verify: check sizes and digests.
        weights_hint: what the ``weights=`` argument would take instead, for the message.

    Raises:
        WeightsNotFoundError: files missing offline or not downloadable (all named, with URLs).
        ChecksumError: a cached or downloaded file has the wrong size or digest.
    """
    records = [checkpoint(c) if isinstance(c, str) else c for c in ckpts]
    root = _cache_folder(cache_dir)
    if is_offline():
        unreachable = [
            c
            for c in records
            if not (root / c.filename).is_file() and not str(c.download_url() or "").startswith("file:")
        ]
        if unreachable:
            why = "offline mode is on (HF_HUB_OFFLINE / TORCHMETRICS_AV_OFFLINE) and they are not cached"
            raise _files_not_found(unreachable, root, why, weights_hint)
    paths, failed, reasons = [], [], []
    for c in records:
        try:
            paths.append(resolve_checkpoint(c, cache_dir=root, verify=verify))
        except WeightsNotFoundError as err:
            failed.append(c)
            reasons.append(str(getattr(err, "why", err)))
    if failed:
        raise _files_not_found(failed, root, "; ".join(dict.fromkeys(reasons)), weights_hint)
    return paths


def resolve_folder(
    folder: str,
    weights: str | os.PathLike | None = None,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    required: Sequence[str] = (),
) -> Path:
    """A local ``from_pretrained`` folder of the table: ``weights`` if given, else ``<cache>/<folder>``, filled.

    The folder is exactly what :func:`torchmetrics_av.downloads.download` writes: per-file entries
    (``clap-htsat-fused/config.json``, ...) are resolved with :func:`resolve_files` (verified, downloaded where
    missing, all missing files named at once offline); a ``snapshot`` entry (GLM-ASR) is filled from the hub's file
    listing and verified against the manifest it leaves. Offline nothing connects.

    Args:
        folder: the table folder (``"clap-htsat-fused"``, ``"whisper-base"``, ``"GLM-ASR-Nano-2512"``, ...).
        weights: a local folder chosen by the user: used as it is (no digest: it may be a fine-tune).
        revision: another hub revision than the table's (see :func:`at_revision`: no table digest applies, the
            files go to ``<folder>@<revision>/``); ``None`` = the table's.
        cache_dir: cache folder override.
        required: files that must exist in the result (checked for ``weights`` folders too).

    Raises:
        WeightsNotFoundError: ``weights`` is not a folder or lacks a required file, or files are missing offline or
            cannot be downloaded (all named, with their URLs and the ``weights=`` argument).
        ChecksumError: a cached or downloaded file has the wrong size or digest.

    Example:
        >>> import tempfile
        >>> resolve_folder("audiobox-aesthetics", tempfile.mkdtemp()).is_dir()   # a given folder is used as it is
        True
    """
    entries = [at_revision(c, revision) for c in folder_checkpoints(folder)]
    repo = entries[0].hf_repo
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_dir():
            raise WeightsNotFoundError(f"`weights={str(weights)!r}` is not a folder (expected a copy of {folder}/)")
    elif entries[0].snapshot:
        path = _resolve_snapshot(entries[0], _cache_folder(cache_dir))
    else:
        files = resolve_files(entries, cache_dir=cache_dir, weights_hint=f"a folder with the files of {repo}")
        path = files[0].parent
    absent = [name for name in required if not (path / name).is_file()]
    if absent:
        raise WeightsNotFoundError(f"{path} is not a copy of {repo}: {absent} missing")
    return path


def _resolve_snapshot(ckpt: Checkpoint, root: Path) -> Path:
    """``<root>/<folder>`` with every file of a hub snapshot, verified against its manifest; downloaded if absent."""
    folder = root / ckpt.filename
    manifest = folder / SNAPSHOT_MANIFEST
    hint = f"a folder with the files of {ckpt.hf_repo}"
    if manifest.is_file():
        for f in json.loads(manifest.read_text())["files"]:
            record = dataclasses.replace(
                ckpt, filename=f"{ckpt.filename}/{f['path']}", sha256=f.get("sha256"), size=f.get("size")
            )
            path = root / record.filename
            if not path.is_file():
                why = f"listed in {manifest} but absent"
                raise _files_not_found([dataclasses.replace(record, snapshot=False)], root, why, hint)
            verify_file(path, record)
        return folder
    if is_offline() and not str(os.environ.get(MIRROR_ENV) or "").startswith("file:"):
        why = "offline mode is on (HF_HUB_OFFLINE / TORCHMETRICS_AV_OFFLINE) and it is not cached"
        raise _files_not_found([ckpt], root, why, hint)
    from torchmetrics_av.downloads import download_snapshot  # downloads imports this module

    rows = download_snapshot(ckpt, root)
    bad = [r for r in rows if not r.ok]
    if bad:
        lines = [f"{ckpt.hf_repo} ({ckpt.source}) could not be downloaded into {folder}:"]
        lines += [f"  {r.name}: {r.status}: {r.error}" for r in bad]
        lines.append(f"Fill the folder with the hub's files and pass `weights=<{hint}>`, or retry with internet.")
        raise WeightsNotFoundError("\n".join(lines))
    return folder


def missing_checkpoints(
    names: Iterable[str] | None = None,
    weights_dir: str | os.PathLike | None = None,
    *,
    table: dict[str, Checkpoint] | None = None,
) -> list[Checkpoint]:
    """The checkpoints ``names`` need that are absent from ``weights_dir``, all at once, without loading or hashing.

    Args:
        names: as :func:`select_checkpoints` (``None`` = every default entry).
        weights_dir: the folder (default: the cache folder).
        table: the table (default :data:`CHECKPOINTS`).

    Example:
        >>> import tempfile
        >>> [c.filename for c in missing_checkpoints(["desync"], tempfile.mkdtemp())]
        ['synchformer_state_dict.pth']
    """
    root = cache_dir(weights_dir)
    out = []
    for ckpt in select_checkpoints(names, table):
        path = root / ckpt.filename
        present = (path / SNAPSHOT_MANIFEST).is_file() if ckpt.snapshot else path.is_file()
        if not present:
            out.append(ckpt)
    return out


def missing_message(missing: Sequence[Checkpoint], weights_dir: str | os.PathLike | None = None) -> str:
    """One error message naming every missing file, its source, and the command that fetches them all.

    Example:
        >>> print(missing_message([checkpoint("imagebind_huge")], "/ckpt"))
        1 checkpoint file missing from /ckpt:
          imagebind_huge.pth  (https://dl.fbaipublicfiles.com/imagebind/imagebind_huge.pth)
        Fetch them (with internet): torchmetrics-av download --weights-dir /ckpt imagebind_huge
    """
    root = cache_dir(weights_dir)
    lines = [f"{len(missing)} checkpoint file{'s' if len(missing) != 1 else ''} missing from {root}:"]
    lines += [f"  {c.filename}{'/' if c.snapshot else ''}  ({c.source})" for c in missing]
    lines.append(_fetch_hint(missing, root))
    return "\n".join(lines)


# Written into a snapshot folder after every listed file verified: {"repo", "revision", "files": [{path, size,
# sha256, lfs_sha256}]}. A mirror of a weights folder serves it as the listing.
SNAPSHOT_MANIFEST = ".torchmetrics-av-files.json"


# =====================================================================================================================
# Loading


def _numpy_scalar_globals() -> list[Any]:
    """The numpy globals a LAION-CLAP ``.pt`` needs (numpy float/int scalars), under both of numpy's module names.

    The hub's pickle scan of ``music_speech_audioset_epoch_15_esc_89.98.pt`` lists ``numpy.core.multiarray.scalar``
    and ``numpy.dtype`` (besides torch's own tensor globals and ``_codecs.encode``): numpy scalars in the saved
    training state. numpy 2 rebuilds ``dtype('f8')`` as ``numpy.dtypes.Float64DType``, which torch only accepts when
    allowlisted, hence the fixed-width numeric dtype classes. No global here can run code or hold Python objects.
    """
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    scalar = core.multiarray.scalar
    found: list[Any] = [(scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"), np.dtype]
    dtypes = getattr(np, "dtypes", None)
    names = ("Bool", "Int8", "Int16", "Int32", "Int64", "LongLong", "UInt8", "UInt16", "UInt32", "UInt64")
    names += ("ULongLong", "Float16", "Float32", "Float64")
    found += [getattr(dtypes, f"{n}DType") for n in names if hasattr(dtypes, f"{n}DType")]
    return found


def _unsafe_message(path: Path, err: Exception) -> str:
    if "Unsupported operand" in str(err):
        return (
            f"{path} uses pickle opcodes of protocol > 2, which torch.load(weights_only=True) cannot read (torch.save "
            "writes protocol 2 unless told otherwise). It was not loaded: a full unpickler can run code. Re-save it "
            "with torch.save(torch.load(path, weights_only=False), path) only if you trust it (CLAP also offers "
            "`allow_pickle=True`)."
        )
    allowed = {name for g in _numpy_scalar_globals() for name in ([g[1]] if isinstance(g, tuple) else [])}
    allowed.add("numpy.dtype")
    try:
        foreign = sorted(set(torch.serialization.get_unsafe_globals_in_checkpoint(path)) - allowed)
    except Exception:  # noqa: BLE001 - the listing is a courtesy; torch's own message follows
        foreign = []
    if foreign:
        what = f"the globals {foreign}"
    else:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        what = f"what torch refused ({lines[-1] if lines else type(err).__name__})"
    return (
        f"{path} needs {what}, which a weights-only load does not allow (a pickle global can run code). It was not "
        "loaded. Only if you trust the file: load it with weights_only=False (CLAP: `allow_pickle=True`)."
    )


def load_state_dict(path: str | os.PathLike, key: str | None = None) -> dict[str, Any]:
    """Load a checkpoint file (``.pt``/``.pth`` via ``torch.load(weights_only=True)`` or ``.safetensors``) on CPU.

    Pickled files may hold numpy float/int scalars (LAION-CLAP's training state does): the numpy scalar and dtype
    globals are allowed by name, nothing else beyond torch's own weights-only set.

    Args:
        path: the file.
        key: optional entry to descend into (e.g. ``"model"`` for Lightning-style ``{"model": state_dict}`` files).

    Raises:
        UnsafeCheckpointError: the file needs another global (named in the message) or a pickle protocol above 2.
        KeyError: ``key`` is not a top-level entry.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state: dict[str, Any] = load_file(str(path))
    else:
        safe_globals: Callable[..., Any] | None = getattr(torch.serialization, "safe_globals", None)
        guard = safe_globals(_numpy_scalar_globals()) if safe_globals is not None else contextlib.nullcontext()
        try:
            with guard:
                state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            raise UnsafeCheckpointError(_unsafe_message(path, err)) from err
    if key is not None:
        if key not in state:
            raise KeyError(f"{path}: expected a top-level {key!r} entry, found {sorted(state)[:8]}")
        state = state[key]
    return state


# =====================================================================================================================
# The README table


def _size_text(ckpt: Checkpoint) -> str:
    if ckpt.size is not None:
        return f"{ckpt.size:,} B"
    return ckpt.approx_size or "?"


def _digest_text(ckpt: Checkpoint) -> str:
    if ckpt.snapshot:
        return "per-file hub LFS SHA-256"
    if ckpt.sha256:
        return f"SHA-256 `{ckpt.sha256[:12]}…`"
    if ckpt.md5:
        return f"MD5 `{ckpt.md5}`"
    return "—"


def _bundles(rows: Iterable[Checkpoint]) -> list[list[Checkpoint]]:
    """Consecutive files of one hub folder (``<folder>/<file>`` from one repo) form one README row."""
    out: list[list[Checkpoint]] = []
    for c in rows:
        key = (c.hf_repo, c.filename.split("/")[0]) if "/" in c.filename and c.hf_repo else None
        prev = out[-1][0] if out else None
        if key and prev is not None and (prev.hf_repo, prev.filename.split("/")[0]) == key and "/" in prev.filename:
            out[-1].append(c)
        else:
            out.append([c])
    return out


def _bundle_row(group: list[Checkpoint]) -> str:
    first = group[0]
    folder = first.filename.split("/")[0]
    files = ", ".join(c.filename.split("/", 1)[1] for c in group)
    tree = f"{hf_endpoint()}/{first.hf_repo}/tree/{first.revision or 'main'}"
    sizes = "; ".join(f"{c.filename.split('/', 1)[1]}: {_size_text(c)}" for c in group if c.size is not None)
    pinned = [c for c in group if c.sha256 or c.md5]
    digests = "; ".join(f"{c.filename.split('/', 1)[1]}: {_digest_text(c)}" for c in pinned)
    if len(pinned) < len(group):
        digests = f"{digests}; others: —" if digests else "—"
    sources = "; ".join(dict.fromkeys(c.digest_source for c in group))
    return (
        f"| `{folder}/*` | `{folder}/`: {files} | [{first.hf_repo}@{(first.revision or 'main')[:7]}]({tree}) | "
        f"{sizes or '?'} | {digests} | {sources} | {first.license} |"
    )


def markdown_table(checkpoints: Iterable[Checkpoint] | None = None) -> str:
    """The weights table as Markdown (the README block between the ``weights-table`` markers).

    The files of one hub folder (``clap-htsat-fused/*``) share a row.

    Args:
        checkpoints: the rows (default: every default entry of :data:`CHECKPOINTS`; the other Whisper sizes follow
            the same rule as ``whisper-base``).

    Example:
        >>> markdown_table([checkpoint("whisper-base")]).splitlines()[2].split(" | ")[1]
        '`whisper-base.pt`'
    """
    rows = list(checkpoints) if checkpoints is not None else [c for c in CHECKPOINTS.values() if c.default]
    lines = [
        "| checkpoint | file in the weights folder | source | size | digest | digest published at | licence |",
        "|---|---|---|---|---|---|---|",
    ]
    for group in _bundles(rows):
        if len(group) > 1:
            lines.append(_bundle_row(group))
            continue
        c = group[0]
        origin = f"{c.hf_repo}@{(c.revision or 'main')[:7]}" if c.hf_repo else urllib.parse.urlparse(c.source).netloc
        lines.append(
            f"| `{c.name}` | `{c.filename}{'/' if c.snapshot else ''}` | [{origin}]({c.source}) | {_size_text(c)} | "
            f"{_digest_text(c)} | {c.digest_source} | {c.license} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m torchmetrics_av.weights --markdown [--all]``: print the weights table."""
    parser = argparse.ArgumentParser(prog="python -m torchmetrics_av.weights", description=__doc__.split("\n")[0])
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown (the README block)")
    parser.add_argument("--all", action="store_true", help="every entry, the non-default Whisper sizes included")
    args = parser.parse_args(argv)
    rows = list(CHECKPOINTS.values()) if args.all else None
    if args.markdown:
        sys.stdout.write(markdown_table(rows))
    else:
        for c in rows or select_checkpoints():
            print(f"{c.name}\t{c.filename}\t{c.source}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
