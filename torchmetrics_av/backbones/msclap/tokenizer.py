"""MS-CLAP's caption tokenisation with an offline GPT-2 byte-level BPE.

msclap 1.3.4 (``CLAPWrapper.preprocess_text``) tokenises each caption with ``AutoTokenizer.from_pretrained('gpt2')``
after ``add_special_tokens({'pad_token': '!'})``, as ``encode_plus(caption + ' <|endoftext|>',
add_special_tokens=True, max_length=77, padding='max_length')``. That gives:

* the caption, then ``' '`` (id 220), then ``<|endoftext|>`` (50256): the appended space stays its own token;
* every ``!`` in the caption split out as the *special* pad token, id 0 (plain GPT-2 would merge ``"!!"`` into 3228
  and ``" !"`` into 5145), and kept in the attention mask;
* right padding with id 0 to 77 tokens, mask 0 there; **no truncation**: a longer caption keeps all its tokens.

The BPE itself is GPT-2's (50,257 ids) run by ``tiktoken`` on the OpenAI rank file ``r50k_base.tiktoken`` (= GPT-2's
``encoder.json`` + ``vocab.bpe``; SHA-256 pinned in tiktoken's ``tiktoken_ext/openai_public.py``). The file is taken
from, in order: ``bpe_file=``; the checkpoint table's cached copy (``r50k_base.tiktoken`` in the weights folder);
the copy bundled with ``openai-whisper`` (``whisper/assets/gpt2.tiktoken``, found without importing whisper); else a
one-time download from openaipublic into the cache. It is checksummed in every case.

Example:
    >>> from torchmetrics_av.backbones.msclap.tokenizer import MSCLAPTokenizer
    >>> tok = MSCLAPTokenizer()
    >>> tok.gpt2_encode("Hello world")
    [15496, 995]
    >>> tok.caption_ids("Hello world!")
    [15496, 995, 0, 220, 50256]
    >>> ids, mask = tok(["Hello world"])
    >>> ids.shape, int(mask.sum())
    (torch.Size([1, 77]), 4)
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.util
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from torchmetrics_av.preprocessing import as_text_list
from torchmetrics_av.weights import WeightsNotFoundError, checkpoint, resolve_checkpoint
from torchmetrics_av.weights import cache_dir as cache_folder

# The checkpoint-table entry of the rank file: tiktoken_ext/openai_public.py r50k_base() loads its URL with its
# expected_hash; openai-whisper's bundled gpt2.tiktoken has the same bytes.
GPT2_BPE = checkpoint("gpt2_bpe_r50k_base")
# Path of the rank file inside the openai-whisper package (20230314 and later).
WHISPER_BPE_ASSET = ("assets", "gpt2.tiktoken")
# GPT-2's pre-tokeniser (openai/gpt-2 src/encoder.py), which HF's GPT-2 ByteLevel pre-tokeniser also uses.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
END_OF_TEXT = "<|endoftext|>"
END_OF_TEXT_ID = 50256
# msclap: tokenizer.add_special_tokens({'pad_token': '!'}); "!" is GPT-2 id 0.
PAD_TOKEN = "!"
PAD_ID = 0
# config_2023.yml text_len: pad to 77 tokens (never truncate).
TEXT_LEN = 77
# msclap appends ' <|endoftext|>' to every caption when the text model is GPT.
CAPTION_SUFFIX = " " + END_OF_TEXT
# Special strings that GPT-2's tokenizer splits out before BPE (longest first).
_SPECIAL_SPLIT = re.compile("(" + "|".join(re.escape(s) for s in (END_OF_TEXT, PAD_TOKEN)) + ")")
_SPECIAL_IDS = {END_OF_TEXT: END_OF_TEXT_ID, PAD_TOKEN: PAD_ID}


def _tiktoken() -> Any:
    try:
        import tiktoken
    except ImportError as err:  # pragma: no cover - exercised only without the extra
        raise ModuleNotFoundError(
            "MS-CLAP's GPT-2 tokenizer needs tiktoken: pip install 'torchmetrics-av[clap]'"
        ) from err
    return tiktoken


def whisper_bpe_file() -> Path | None:
    """openai-whisper's bundled ``gpt2.tiktoken`` if that package is installed (it is not imported), else None."""
    try:
        spec = importlib.util.find_spec("whisper")
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(folder).joinpath(*WHISPER_BPE_ASSET)
        if path.is_file():
            return path
    return None


def find_bpe_file(bpe_file: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None) -> Path:
    """The GPT-2 rank file: ``bpe_file``, else the cached table entry ``gpt2_bpe_r50k_base`` (``r50k_base.tiktoken``
    in the weights folder, as ``torchmetrics-av download msclap`` writes it), else openai-whisper's bundled copy,
    else a download into the cache. Every one of them has the same bytes (SHA-256 checked when it is read).

    Raises:
        WeightsNotFoundError: ``bpe_file`` does not exist, or none is installed and the download is impossible.
    """
    if bpe_file is not None:
        path = Path(bpe_file).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(f"`bpe_file={str(bpe_file)!r}` does not exist (expected {GPT2_BPE.source})")
        return path
    bundled = whisper_bpe_file()
    if bundled is not None and not (cache_folder(cache_dir) / GPT2_BPE.filename).is_file():
        return bundled
    try:
        return resolve_checkpoint(GPT2_BPE.name, cache_dir=cache_dir)
    except WeightsNotFoundError as err:
        raise WeightsNotFoundError(
            f"{err} (MS-CLAP's GPT-2 vocabulary; `pip install openai-whisper` also provides it offline, or pass "
            "`bpe_file=` to the tokenizer)"
        ) from err


@functools.lru_cache(maxsize=4)
def _encoding(path: str) -> Any:
    data = Path(path).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != GPT2_BPE.sha256:
        raise ValueError(
            f"`bpe_file={path!r}` is not GPT-2's r50k_base rank file (SHA-256 {digest}, expected {GPT2_BPE.sha256})"
        )
    ranks = {base64.b64decode(token): int(rank) for token, rank in (line.split() for line in data.splitlines() if line)}
    return _tiktoken().Encoding(
        name="gpt2-msclap",
        pat_str=GPT2_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={END_OF_TEXT: END_OF_TEXT_ID},
    )


class MSCLAPTokenizer:
    """msclap's caption -> (``input_ids``, ``attention_mask``) rule, offline.

    Args:
        bpe_file: GPT-2 rank file (``r50k_base.tiktoken`` / whisper's ``gpt2.tiktoken``); default: see the module
            docstring.
        max_positions: longest token sequence the text tower embeds (GPT-2: 1024 positions); longer is an error.
        cache_dir: cache folder for a downloaded rank file.
    """

    def __init__(
        self,
        bpe_file: str | os.PathLike | None = None,
        *,
        max_positions: int = 1024,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        self.bpe_file = find_bpe_file(bpe_file, cache_dir)
        self.max_positions = int(max_positions)
        self._enc = _encoding(str(self.bpe_file))

    def gpt2_encode(self, text: str) -> list[int]:
        """Plain GPT-2 BPE of ``text`` (no special tokens recognised): ``"Hello world"`` -> ``[15496, 995]``."""
        return list(self._enc.encode_ordinary(text))

    def caption_ids(self, caption: str) -> list[int]:
        """The msclap unpadded ids of one caption: ``caption + ' <|endoftext|>'`` with ``!`` and ``<|endoftext|>`` as
        special tokens (split out first, as the Hugging Face tokenizer does with added tokens).
        """
        ids: list[int] = []
        for part in _SPECIAL_SPLIT.split(caption + CAPTION_SUFFIX):
            if part in _SPECIAL_IDS:
                ids.append(_SPECIAL_IDS[part])
            elif part:
                ids.extend(self._enc.encode_ordinary(part))
        return ids

    def __call__(self, captions: Sequence[str], name: str = "texts") -> tuple[Tensor, Tensor]:
        """Tokenise captions.

        Each caption gets exactly msclap's ids and mask (right-padded with id 0 to 77, mask 1 on every real token,
        nothing truncated). Captions longer than 77 tokens are padded further to the batch's longest; that padding
        is causal-invisible (it follows every pooled position), so each caption's embedding is the one msclap gives
        it alone.

        Returns:
            ``(input_ids (N, L) int64, attention_mask (N, L) int64)``, ``L = max(77, longest caption)``.

        Raises:
            ValueError: ``captions`` is a string or empty, holds a non-string, or a caption exceeds
                ``max_positions`` tokens.
        """
        captions = as_text_list(captions, name)
        if not captions:
            raise ValueError(f"`{name}` is an empty list; pass at least one caption")
        rows = []
        for i, caption in enumerate(captions):
            ids = self.caption_ids(caption)
            if len(ids) > self.max_positions:
                raise ValueError(
                    f"`{name}[{i}]` has {len(ids)} GPT-2 tokens; MS-CLAP's text tower takes at most "
                    f"{self.max_positions}. Shorten the caption"
                )
            rows.append(ids)
        width = max(TEXT_LEN, *(len(r) for r in rows))
        input_ids = torch.full((len(rows), width), PAD_ID, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, ids in enumerate(rows):
            input_ids[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention_mask[i, : len(ids)] = 1
        return input_ids, attention_mask
