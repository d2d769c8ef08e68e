"""Lossless storage of the golden files in tests/golden: what `load_golden` reads and trim_shared.py writes.

A stored ``.pt`` golden is ``torch.save`` of the (trimmed) golden dict, xz-compressed, in which large tensors may be
replaced by a *codec record*, a dict ``{"__golden_codec__": kind, ...}`` that `decode` turns back into the identical
tensor (same dtype, shape and bits):

* ``"flac"``: an int16 tensor ``[C, N]`` or ``[N]`` as FLAC bytes (``data``, uint8); FLAC is lossless for 16-bit PCM.
* ``"pcm16"``: a float32 waveform that is exactly ``int16 codes / 32768`` (a PCM_16 WAV decode), stored as its
  ``codes`` (themselves usually a ``"flac"`` record).
* ``"shuffle"``: any tensor as its little-endian bytes regrouped by byte position (``planes``, uint8
  ``[itemsize, numel]``), optionally of the first differences of the integer view (``delta``), which xz compresses
  far better than the interleaved bytes of a float array.

Nothing here approximates: every record decodes to exactly the tensor it was made from (trim_shared.py checks that
with ``torch.equal`` on the bits before writing).
"""

from __future__ import annotations

import io
import lzma
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

CODEC_KEY = "__golden_codec__"
# Scale of a PCM_16 WAV decode (soundfile, torchaudio and the references' loaders all divide by 2**15).
PCM16_SCALE = 32768
# FLAC needs a sample rate in its header; it is irrelevant to the lossless round trip.
FLAC_HEADER_RATE = 8000
# soundfile's FLAC effort, 0-1 (1 = libFLAC level 8, the smallest files; decoding is equally exact at any level).
FLAC_COMPRESSION_LEVEL = 1.0
FLAC_MAX_CHANNELS = 8  # the FLAC format's limit
XZ_PRESET = 9 | lzma.PRESET_EXTREME
XZ_SUFFIX = ".xz"
_INT_VIEW = {1: np.uint8, 2: np.int16, 4: np.int32, 8: np.int64}


def _dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"codec record names an unknown dtype {name!r}")
    return dtype


def encode_flac(codes: torch.Tensor) -> dict[str, Any]:
    """A ``"flac"`` record of int16 PCM ``codes`` shaped ``[C, N]`` or ``[N]``."""
    if (
        codes.dtype != torch.int16
        or codes.dim() not in (1, 2)
        or (codes.dim() == 2 and codes.shape[0] > FLAC_MAX_CHANNELS)
    ):
        raise ValueError(f"`codes` must be int16 [C <= 8, N] or [N], got {codes.dtype} {tuple(codes.shape)}")
    buf = io.BytesIO()
    array = codes.numpy()
    frames = array.T if array.ndim == 2 else array
    sf.write(buf, frames, FLAC_HEADER_RATE, format="FLAC", subtype="PCM_16", compression_level=FLAC_COMPRESSION_LEVEL)
    data = torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)
    return {CODEC_KEY: "flac", "data": data, "shape": list(codes.shape)}


def encode_pcm16(wave: torch.Tensor) -> dict[str, Any]:
    """A ``"pcm16"`` record of a float32 `wave` whose samples are exactly int16 codes / 32768 (ValueError if not)."""
    codes = torch.round(wave.double() * PCM16_SCALE)
    if wave.dtype != torch.float32 or codes.abs().max() > PCM16_SCALE or not torch.equal(codes / PCM16_SCALE, wave):
        raise ValueError("`wave` is not float32 int16 codes / 32768; store it with encode_shuffle instead")
    if codes.max() == PCM16_SCALE:
        raise ValueError("`wave` holds +1.0, which has no int16 code")
    return {CODEC_KEY: "pcm16", "codes": encode_flac(codes.to(torch.int16))}


def encode_shuffle(tensor: torch.Tensor, delta: bool = False) -> dict[str, Any]:
    """A ``"shuffle"`` record of `tensor`: its bytes grouped by position, of first differences when `delta`."""
    array = tensor.contiguous().numpy()
    flat = array.view(_INT_VIEW[array.itemsize]).reshape(-1)
    if delta:
        flat = np.diff(flat, prepend=flat.dtype.type(0))  # wraps modulo 2**bits, undone exactly by cumsum
    planes = np.frombuffer(flat.astype(flat.dtype.newbyteorder("<")).tobytes(), np.uint8)
    planes = planes.reshape(-1, array.itemsize).T.copy()
    return {
        CODEC_KEY: "shuffle",
        "planes": torch.from_numpy(planes),
        "dtype": str(tensor.dtype).removeprefix("torch."),
        "shape": list(tensor.shape),
        "delta": delta,
    }


def _decode_record(record: dict[str, Any]) -> torch.Tensor:
    kind = record[CODEC_KEY]
    if kind == "flac":
        array, _ = sf.read(io.BytesIO(record["data"].numpy().tobytes()), dtype="int16", always_2d=True)
        return torch.from_numpy(np.ascontiguousarray(array.T)).reshape(record["shape"])
    if kind == "pcm16":
        return decode(record["codes"]).to(torch.float32) / PCM16_SCALE
    if kind == "shuffle":
        dtype = _dtype(record["dtype"])
        itemsize = torch.empty((), dtype=dtype).element_size()
        view = np.dtype(_INT_VIEW[itemsize]).newbyteorder("<")
        flat = np.frombuffer(record["planes"].numpy().T.tobytes(), view).astype(_INT_VIEW[itemsize])
        if record["delta"]:
            flat = np.cumsum(flat, dtype=flat.dtype)
        return torch.from_numpy(flat.copy()).view(dtype).reshape(record["shape"])
    raise ValueError(f"unknown golden codec {kind!r}")


def decode(obj: Any) -> Any:
    """`obj` with every codec record (at any depth of dicts and lists) replaced by the tensor it encodes."""
    if isinstance(obj, dict):
        if CODEC_KEY in obj:
            return _decode_record(obj)
        return {k: decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    return obj


def dumps(obj: Any) -> bytes:
    """xz-compressed ``torch.save`` bytes of `obj` (which may hold codec records)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return lzma.compress(buf.getvalue(), preset=XZ_PRESET)


def load(path: Path) -> Any:
    """A golden ``.pt`` (plain, or ``.xz``-compressed) with its codec records decoded."""
    data = Path(path).read_bytes()
    if str(path).endswith(XZ_SUFFIX):
        data = lzma.decompress(data)
    return decode(torch.load(io.BytesIO(data), weights_only=True))
