"""Rebuild the repo's copies of six goldens (passt, clap, imagebind, synchformer, wer, audiobox) from the shared ones.

Run from the repository root with the complete goldens beside it::

    python tests/golden/trim_shared.py ../shared/golden

Every output keeps only what the tests read (the KEEP patterns below, found by recording every key the golden tests
touch), stored losslessly with tests/golden_codec.py; tests/golden/README.md lists the result. Each written file is
read back and compared with the trimmed original bit for bit before the script moves on.
"""

from __future__ import annotations

import argparse
import fnmatch
import io
import json
import lzma
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests import golden_codec  # noqa: E402

OUT_DIR = REPO / "tests" / "golden"
# Tensors smaller than this stay plain: a codec record would not pay for itself.
MIN_CODEC_BYTES = 4096
# JSON files above this size are stored xz-compressed; smaller ones stay readable.
MAX_PLAIN_JSON_BYTES = 32 * 1024


@dataclass(frozen=True)
class Copy:
    """One output file: ``<name>/<src>`` of the shared goldens, trimmed to `keep`, written as ``<name>/<dst>``."""

    name: str
    src: str
    dst: str
    keep: tuple[str, ...] | None  # "/"-separated key patterns: "*" any key or list element, "{a,b}" alternatives
    transform: Callable[[Any, Path], Any] | None = None


# ---------------------------------------------------------------------------------------------------------------------
# what the tests read


PASST = (
    "clips/*/{name,sr,wave}",
    "pairs",
    "fastvideo/clips/*/fd_input/{len,sha256,head,tail,stride97,n_nonzero}",
    "fastvideo/clips/*/{embedding,fd_logits,kl_logits,kl_n_windows}",
    "fastvideo/clips/*/kl_windows/*/input/{len,head,tail,stride97,n_nonzero}",
    "fastvideo/clips/*/kl_windows/*/logits",
    "fastvideo/fd/{score,n_gen,n_ref,n_gen_dropped_nonfinite,n_ref_dropped_nonfinite,ref_source}",
    "{fastvideo,avbench}/pairs/*/{kl_softmax,kl_sigmoid}",
    "{fastvideo,avbench}/{kl_matrix_names,kl_matrix_softmax,kl_matrix_sigmoid}",
    "avbench/clips/*/{n_content,embedding,logits}",
    "avbench/clips/*/input/{len,head,tail,stride97,n_nonzero}",
    "avbench/{audio_length,fd/score,kl_mean}",
    "fd_formula/{D,K,params_gen,params_ref}",
    "fd_formula/cases/*/{n_gen,n_ref,seed_gen,seed_ref,sha256_gen,sha256_ref,colsum64_gen,fastvideo,avbench}",
    "fd_formula/cases/*/stream64/{fd_noeps,fd_eps1e-6}",
)
CLAP = (
    "clips/*/{pcm16,sample_rate}",
    "texts/*/content_ids",
    "{fastvideo,avbench}/model_config/audio_config",
    "{fastvideo,avbench}/clips/*/{is_longer,audio_emb,input_features}",
    "{fastvideo,avbench}/clips/*/{input_features_n_channels,input_features_channels_identical}",
    "fastvideo/clips/*/peak_normalized/{n,sum,sumsq,absmax,head,tail}",
    "fastvideo/clips/*/{fusion_crop_idx,n_mel_frames_full}",
    "avbench/clips/*/{dataset_wave,repeatpad_wave}/{n,sum,sumsq,absmax,head,tail}",
    "avbench/clips/*/audio_emb_laion_code",
    "{fastvideo,avbench}/texts/*/{input_ids,attention_mask}",
    "fastvideo/texts/*/text_emb",
    "avbench/texts/*/text_emb_laion_code",
    "{fastvideo,avbench}/pairs",
    "fastvideo/{cosine,cosine_matrix}",
    "avbench/{laion_unmapped_keys,score_mean,cosine_laion_code}",
)
AUDIOBOX = (
    "{axes,model_config,hub_config_sha256}",
    "clips/*/{pcm16,sample_rate,wav16k,wav16k_num_samples,scores,score_PQ}",
    "clips/*/{window_start,window_valid_len,window_weight,window_valid_frames,window_pred_raw,window_pred}",
)
WHISPER = (
    "{names,meta_json,mel,audio_16k,encoder_output_sub,language_codes,language_probs,decode_en_first_step_logits}",
    "{decode_en,decode_auto}_{tokens,text,language,avg_logprob,no_speech_prob}",
)
WER_TEXT_COLUMNS = ("{reference,hypothesis,language,char_level,wer,errors,n_ref_tokens}",)
WER_TEXT_JSON = (
    "meta/n_cases",
    "corpus/all_cases/{sum_errors,sum_hits,sum_ref_tokens}",
    "corpus/nonempty_reference_cases/{sum_errors,sum_ref_tokens,corpus_wer,mean_per_sample_wer}",
    "cases/*/{id,reference,hypothesis,language,hint_char_level,hypothesis_after_punct_rule,char_level,wer}",
    "cases/*/{reference_normalized,hypothesis_normalized,reference_for_wer,hypothesis_for_wer}",
    "cases/*/{reference_tokens,hypothesis_tokens,hits,substitutions,deletions,insertions,errors}",
    "cases/*/{n_ref_tokens,n_hyp_tokens}",
    "cases/*/jiwer3",
    "sample_dict_cases/*/sample",
    "sample_dict_cases/*/{asr_output,score}",
    "sample_dict_cases/*/details/{transcription,reference_text,char_level}",
    "language_hints/*/{language,hint_char_level}",
    "cjk_codepoints/*/{char,contains_cjk,normalized,contains_cjk_after_normalize}",
)
WHISPER_DECODE_JSON = ("meta/dims",)
IMAGEBIND_INPUTS = ("*/{video_uint8_thwc,video_fps,audio_pcm_int16,audio_sample_rate,avbench_duration_sec}",)
IMAGEBIND_OUTPUTS = (
    "audio/{clips,emb_head_clips,emb_clips,emb}",
    "{fastvideo,avbench}/{video_clips_shape,video_clips_checksums,vision_emb_clips,vision_emb,ib_score}",
    "fastvideo/vision_emb_head_clips",
    "avbench/audio_emb",
)
IMAGEBIND_SCORES = (
    "pairs/*/{fastvideo_ib_score,avbench_ib_score}",
    "pairs/*/records/fastvideo_video/{clip_timepoints,frame_indices,scaled_hw,crop_offsets_yx}",
    "pairs/*/records/audio/{clip_timepoints,clip_sample_ranges,resampled_num_samples}",
    "pairs/*/records/avbench_video/{frame_indices,resized_hw}",
)
IMAGEBIND_MANIFEST = (
    "num_state_dict_entries",
    "vision_audio_subset/{num_state_dict_entries,num_parameters,buffers}",
    "state_dict/*/{name,shape,kind,vision_audio_path}",
)
# The same keys for every pair, for the CI tests and the opt-in full_golden end-to-end runs alike.
SYNCHFORMER_PAIR = (
    "input.{fps,num_frames,height,width,audio_sr,texture,dx,dy,video_sha256,video_sum,audio_int16}",
    "{fastvideo,avbench}.{frame_index,video_segments_shape,frame_sum,frame_abs_sum,frame_min,frame_max}",
    "{fastvideo,avbench}.{frame_crop_index,frame_crop_center,frame_crop_topleft,frame_crop_bottomright}",
    "{fastvideo,avbench}.{segment_sum,waveform16k_num_samples,mel_pad_value}",
    "{fastvideo,avbench}.{vfeats_seg_mean,vfeats_seg_abs_sum,vfeats_seg_sq_sum,vfeats_slice}",
    "{fastvideo,avbench}.{afeats_seg_mean,afeats_seg_abs_sum,afeats_seg_sq_sum,afeats_slice}",
    "{fastvideo,avbench}.{logits_front,argmax_front,offset_front_s,logits_back,argmax_back,offset_back_s,desync}",
    "fastvideo.{waveform16k_sum,waveform16k_slice,mel,vfeats_f16,afeats_f16,metric_score}",
    "avbench.{duration_sec,mel_seg_sum,mel_seg0}",
)
SYNCHFORMER_COMPARE = ("{vis_f16,aud_f16,logits,logits_batch1,logits_float64,argmax}",)
SYNCHFORMER_MANIFEST = ("{num_tensors,total_params,params_by_top_module}", "keys/*/{key,shape,fill_v1_sum_float64}")


# ---------------------------------------------------------------------------------------------------------------------
# transforms beyond key selection


def imagebind_blank_unread_frames(inputs: dict[str, Any], shared: Path) -> dict[str, Any]:
    """Zero the video frames neither protocol selects (README §4 records); every selected frame stays exact.

    fastvideo keeps the first and last frame of each of its 5 clips, av-benchmark its 0.5 fps frames, so 12 of 120
    (v1) and 13 of 200 (v2) frames are ever read; a port that reads any other frame meets a black one and fails the
    clip checksums.
    """
    scores = json.loads((shared / "imagebind" / "scores.json").read_text())
    for pair, d in inputs.items():
        rec = scores["pairs"][pair]["records"]
        kept = {i for ab in rec["fastvideo_video"]["frame_indices"] for i in ab} | set(
            rec["avbench_video"]["frame_indices"]
        )
        video = d["video_uint8_thwc"]
        blank = torch.ones(video.shape[0], dtype=torch.bool)
        blank[sorted(kept)] = False
        video[blank] = 0
    return inputs


def synchformer_v1_avbench_vfeats(pair: dict[str, Any], shared: Path) -> dict[str, Any]:
    """v1's av-benchmark video features: only segment 23 is read (test_golden_video_features_one_segment), so the
    other rows become NaN, which any comparison that reads one fails on."""
    vfeats = pair["avbench.vfeats_f16"]
    keep = vfeats[23].clone()
    vfeats.fill_(float("nan"))
    vfeats[23] = keep
    return pair


COPIES = (
    Copy("passt", "passt_golden.pt", "passt_golden.pt.xz", PASST),
    Copy("clap", "clap_golden.pt", "clap_golden.pt.xz", CLAP),
    Copy("audiobox", "audiobox_golden.pt", "audiobox_golden.pt.xz", AUDIOBOX),
    Copy("wer", "whisper_golden.pt", "whisper_golden.pt.xz", WHISPER),
    Copy("wer", "text_cases.pt", "text_cases.pt.xz", WER_TEXT_COLUMNS),
    Copy("wer", "text_cases.json", "text_cases.json", WER_TEXT_JSON),
    Copy("wer", "whisper_decode.json", "whisper_decode.json", WHISPER_DECODE_JSON),
    *(Copy("wer", f"whisper_inputs/{c}.wav", f"whisper_inputs/{c}.flac", None) for c in ("clip0_16k", "clip0_24k")),
    *(Copy("wer", f"whisper_inputs/{c}.wav", f"whisper_inputs/{c}.flac", None) for c in ("clip1_16k", "clip1_24k")),
    Copy("imagebind", "inputs.pt", "inputs.pt.xz", IMAGEBIND_INPUTS, imagebind_blank_unread_frames),
    Copy("imagebind", "outputs_v1.pt", "outputs_v1.pt.xz", IMAGEBIND_OUTPUTS),
    Copy("imagebind", "outputs_v2.pt", "outputs_v2.pt.xz", IMAGEBIND_OUTPUTS),
    Copy("imagebind", "scores.json", "scores.json", IMAGEBIND_SCORES),
    Copy("imagebind", "state_dict_manifest.json", "state_dict_manifest.json", IMAGEBIND_MANIFEST),
    # v0's DeSync stub serves all 14 av-benchmark segments; v2's av-benchmark features are never read.
    Copy("synchformer", "pair_v0_5s_24fps.pt", "pair_v0_5s_24fps.pt.xz", (*SYNCHFORMER_PAIR, "avbench.vfeats_f16")),
    Copy(
        "synchformer",
        "pair_v1_8s_25fps.pt",
        "pair_v1_8s_25fps.pt.xz",
        (*SYNCHFORMER_PAIR, "avbench.vfeats_f16"),
        synchformer_v1_avbench_vfeats,
    ),
    Copy("synchformer", "pair_v2_10s_24fps.pt", "pair_v2_10s_24fps.pt.xz", SYNCHFORMER_PAIR),
    Copy("synchformer", "compare_v_a.pt", "compare_v_a.pt.xz", SYNCHFORMER_COMPARE),
    Copy("synchformer", "manifest.json", "manifest.json", SYNCHFORMER_MANIFEST),
)


# ---------------------------------------------------------------------------------------------------------------------
# machinery


def expand(pattern: str) -> list[str]:
    """Brace expansion: ``"a/{b,c}"`` -> ``["a/b", "a/c"]``."""
    m = re.search(r"\{([^{}]*)\}", pattern)
    if m is None:
        return [pattern]
    return [e for alt in m.group(1).split(",") for e in expand(pattern[: m.start()] + alt + pattern[m.end() :])]


def select(obj: Any, patterns: tuple[str, ...]) -> Any:
    """The part of `obj` the patterns name (a pattern that ends at a dict keeps it whole); every pattern must match."""
    specs = [(p, p.split("/")) for pattern in patterns for p in expand(pattern)]
    used: set[str] = set()

    def walk(x: Any, active: list[tuple[str, list[str]]]) -> Any:
        if any(not rest for _, rest in active):
            used.update(p for p, rest in active if not rest)
            return x
        if isinstance(x, dict):
            out = {}
            for k, v in x.items():
                sub = [(p, rest[1:]) for p, rest in active if fnmatch.fnmatchcase(str(k), rest[0])]
                if sub:
                    out[k] = walk(v, sub)
            return out
        if isinstance(x, list):
            sub = [(p, rest[1:]) for p, rest in active if rest[0] == "*"]
            if len(sub) != len(active):
                raise ValueError(f"list elements are selected with '*' only: {[p for p, _ in active]}")
            return [walk(v, sub) for v in x]
        raise ValueError(f"patterns go below a leaf: {[p for p, _ in active]}")

    out = walk(obj, specs)
    unused = [p for p, _ in specs if p not in used]
    if unused:
        raise ValueError(f"patterns matched nothing: {unused}")
    return out


def _xz_size(record: dict[str, Any]) -> int:
    buf = io.BytesIO()
    torch.save(record, buf)
    return len(lzma.compress(buf.getvalue(), preset=golden_codec.XZ_PRESET))


def encode(x: Any) -> Any:
    """Codec records for the large tensors of `x`: PCM16 waves and int16 as FLAC, other tensors byte-shuffled
    (with or without first differences, whichever compresses smaller)."""
    if isinstance(x, dict):
        return {k: encode(v) for k, v in x.items()}
    if isinstance(x, list):
        return [encode(v) for v in x]
    if not isinstance(x, torch.Tensor) or x.numel() * x.element_size() < MIN_CODEC_BYTES:
        return x
    if x.dtype == torch.int16 and (x.dim() == 1 or (x.dim() == 2 and x.shape[0] <= golden_codec.FLAC_MAX_CHANNELS)):
        return golden_codec.encode_flac(x)
    if x.dtype == torch.float32:
        try:
            return golden_codec.encode_pcm16(x)
        except ValueError:
            pass
    return min((golden_codec.encode_shuffle(x, delta) for delta in (False, True)), key=_xz_size)


def assert_identical(a: Any, b: Any, where: str = "") -> None:
    """Exact equality of nested dicts / lists / tensors (dtype, shape and bits; NaN equals NaN)."""
    assert type(a) is type(b), where
    if isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            assert_identical(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (u, v) in enumerate(zip(a, b)):
            assert_identical(u, v, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert np.array_equal(a.contiguous().numpy().view(np.uint8), b.contiguous().numpy().view(np.uint8)), where
    else:
        assert a == b or (a != a and b != b), where


def build(copy: Copy, shared: Path, out_dir: Path) -> Path:
    """Write one copy and check it against the trimmed original; returns the path written."""
    src, dst = shared / copy.name / copy.src, out_dir / copy.name / copy.dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.suffix == ".wav":
        wave, rate = sf.read(src, dtype="int16", always_2d=True)
        info = sf.info(src)
        assert info.subtype == "PCM_16", src
        level = golden_codec.FLAC_COMPRESSION_LEVEL
        sf.write(dst, wave, rate, format="FLAC", subtype="PCM_16", compression_level=level)
        for dtype in ("int16", "float32"):
            assert np.array_equal(sf.read(dst, dtype=dtype)[0], sf.read(src, dtype=dtype)[0]), dst
        return dst
    if src.suffix == ".json":
        obj = select(json.loads(src.read_text(encoding="utf-8")), copy.keep)
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        if len(text) > MAX_PLAIN_JSON_BYTES:
            dst = dst.with_name(dst.name + golden_codec.XZ_SUFFIX)
            dst.write_bytes(lzma.compress(text, preset=golden_codec.XZ_PRESET))
            back = json.loads(lzma.decompress(dst.read_bytes()).decode("utf-8"))
        else:
            dst.write_bytes(text)
            back = json.loads(dst.read_text(encoding="utf-8"))
        assert back == obj, dst
        return dst
    obj = torch.load(src, weights_only=True)
    if copy.keep is not None:
        obj = select(obj, copy.keep)
    if copy.transform is not None:
        obj = copy.transform(obj, shared)
    dst.write_bytes(golden_codec.dumps(encode(obj)))
    assert_identical(golden_codec.load(dst), obj, str(dst))
    return dst


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shared", type=Path, help="folder of the complete goldens (../shared/golden)")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="where to write (default: tests/golden)")
    args = parser.parse_args(argv)
    total = 0
    for copy in COPIES:
        path = build(copy, args.shared, args.out)
        total += path.stat().st_size
        print(f"{path.stat().st_size:>10}  {path.relative_to(args.out)}")
    print(f"{total:>10}  total")


if __name__ == "__main__":
    main()
