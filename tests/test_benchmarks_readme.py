"""The README's benchmark sections are the rendering of the committed JSON files they name (no table drifts from its
data), and every metric of issue 12 has a bf16-shift row measured from a correct fp32 baseline."""

from __future__ import annotations

import json

import pytest

from benchmarks import render_readme
from benchmarks.render_readme import REPO, render, section_body, source_of

README = REPO / "README.md"
# Issue 12 (c): the metrics whose bf16 shift the README must state, and the golden cases that measure each.
BF16_METRICS = {
    "FD_PaSST": ("fd_passt-fastvideo", "fd_passt-av-benchmark"),
    "KL_PaSST": ("kl_passt-fastvideo", "kl_passt-av-benchmark"),
    "CLAP": ("clap-fastvideo", "clap-av-benchmark"),
    "ImageBind": ("imagebind-av-benchmark",),
    "DeSync": ("desync-fastvideo", "desync-av-benchmark"),
    "Audiobox": ("audiobox",),
    "WER": ("wer-whisper",),
    "FD-PANN": ("fd_panns",),
    "FD-VGG": ("fd_vggish",),
    "KL-PANNS": ("kl_panns",),
    "ISC": ("isc_panns",),
    "MS-CLAP": ("ms_clap",),
}


@pytest.mark.parametrize("name", sorted(render_readme.RENDERERS))
def test_readme_section_is_the_rendering_of_its_committed_json(name):
    body = section_body(README.read_text(), name)
    source = source_of(body)
    assert source is not None, f"README {name} section names no source JSON: run benchmarks/render_readme.py"
    assert source.is_file(), f"{source} (named by the README {name} section) is not in the repository"
    assert body == render(name, source), f"README {name} section differs from {source}: re-run render_readme.py"


def test_bf16_json_covers_every_metric_from_a_passing_fp32_run():
    source = source_of(section_body(README.read_text(), "bf16-shift"))
    assert source is not None
    cases = json.loads(source.read_text())["cases"]
    for metric, names in BF16_METRICS.items():
        for case in names:
            assert case in cases, f"{metric}: no {case} in {source}"
            assert "error" not in cases[case], f"{metric}: {cases[case].get('error')}"
            assert cases[case]["fp32"]["ok"], f"{metric}: the fp32 run of {case} fails its golden"
            assert cases[case]["shift"]["embeddings_aligned"], f"{metric}: {case} bf16 and fp32 outputs differ in size"


def test_replace_section_refuses_a_readme_without_markers():
    with pytest.raises(ValueError, match="perf-table:start"):
        render_readme.replace_section("no markers here\n", "perf-table", "x\n")
