"""The HTML report: self-contained (no network, data: images only), every metric, the worst samples in order."""

from __future__ import annotations

import argparse
import base64
import csv
import io
import json
import re
from html.parser import HTMLParser

import pytest
from PIL import Image

from torchmetrics_av.cli.registry import METRICS
from torchmetrics_av.report import HIGHER_IS_BETTER, render_report, write_report


class _Page(HTMLParser):
    """Collects every tag with its attributes, and each table's cell texts under the heading before it."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.tables: dict[str, list[list[str]]] = {}
        self._heading: str | None = None
        self._in_heading = False
        self._text = ""
        self._row: list[str] | None = None
        self._cell: str | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag in ("h2", "h3"):
            self._in_heading, self._text = True, ""
        elif tag == "table" and self._heading is not None:
            self.tables.setdefault(self._heading, [])
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("h2", "h3"):
            self._in_heading, self._heading = False, self._text.strip()
        elif tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        elif tag == "tr" and self._row is not None and self._heading in self.tables:
            self.tables[self._heading].append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._in_heading:
            self._text += data
        if self._cell is not None:
            self._cell += data


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


# kl_passt: lower is better, so the worst three are 0.5 (c), 0.4 (e), 0.3 (a); clap_cosine: higher is better, so
# the worst three are 0.05 (d), 0.1 (f), 0.2 (b). The file names carry HTML that must come out escaped.
KL = {"a": 0.3, "b": 0.1, "c": 0.5, "d": 0.2, "e": 0.4, "f": 0.0}
CLAP = {"a": 0.9, "b": 0.2, "c": 0.7, "d": 0.05, "e": 0.6, "f": 0.1}
FILES = {s: f"{s}.mp4" for s in KL} | {"c": "<b>c&amp;</b>.mp4"}


def _doc() -> dict:
    rows = {}
    for i, s in enumerate(KL):
        rows[s] = {
            "file": FILES[s],
            "kl_passt": KL[s],
            "kl_passt_sigmoid": 0.01 * i,
            "clap_cosine": CLAP[s],
            "aesthetics_CE": 5.0 + i,
            "aesthetics_PQ": 7.0 - i,
            "desync": abs(0.2 * i - 0.4),
            "desync_offset_front": round(0.2 * i - 0.4, 1),
            "desync_offset_back": round(0.4 - 0.2 * i, 1),
        }
    rows["b"]["wer"], rows["b"]["wer_transcript"] = 0.5, "hello <world>"
    rows["f"]["wer_error"] = "the transcript is empty after normalisation"
    return {
        "metrics": {
            "fd_passt": 1.25,
            "kl_passt": 0.25,
            "clap": 0.425,
            "wer": 0.5,
            "aesthetics": {"CE": 7.5, "PQ": 4.5},
            "desync": 0.2667,
            "imagebind": None,
        },
        "details": {
            "fd_passt": {"n_preds": 6, "n_target": 5},
            "kl_passt": {"n_pairs": 6, "ci": {"low": 0.11, "high": 0.39, "std": 0.07}},
            "clap": {"n_samples": 6, "protocol": "fastvideo"},
            "imagebind": {"error": "no generated video was long enough"},
        },
        "files": {
            "n_gen": 6,
            "broken": [{"file": "gen/zz.mp4", "error": "TruncatedFileError: stream ends at 1.0 s"}],
            "skipped": {"wer": [{"stem": "f", "error": "the transcript is empty after normalisation"}]},
            "unmatched_ref": ["r_extra"],
        },
        "provenance": {"protocol": "fastvideo", "backbones": {"PaSST": "passt-s-f128"}, "video_fps": [25.0]},
        "per_sample": rows,
    }


@pytest.fixture(scope="module")
def rendered() -> str:
    """The report of `_doc()` with the worst 3 samples per metric (rendered once: ~0.5 s per plot)."""
    return render_report(_doc(), None, worst_n=3)


def _pngs(text: str) -> list[Image.Image]:
    images = []
    for b64 in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text):
        image = Image.open(io.BytesIO(base64.b64decode(b64, validate=True)))
        image.load()  # decodes every pixel: a corrupt PNG raises here
        images.append(image)
    return images


def test_report_is_self_contained_with_decodable_plots(tmp_path):
    path = write_report(_doc(), None, tmp_path / "report.html")
    text = path.read_text(encoding="utf-8")
    page = _parse(text)
    assert "http://" not in text and "https://" not in text
    assert "<script" not in text and "url(" not in text and "@import" not in text
    for tag, attrs in page.tags:
        assert tag not in ("link", "iframe", "object", "embed", "script")
        for name in ("src", "href"):
            if attrs.get(name) is not None:
                assert attrs[name].startswith("data:"), (tag, attrs)
    images = _pngs(text)
    # kl_passt, clap_cosine, wer, aesthetics_CE, aesthetics_PQ, desync histograms + the DeSync offset histogram.
    assert len(images) == 7 == sum(tag == "img" for tag, _ in page.tags)
    assert all(im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100 for im in images)


def test_every_metric_and_its_values_are_listed(rendered):
    page = _parse(rendered)
    corpus = {row[0]: row for row in page.tables["Corpus values"][1:]}
    assert set(corpus) == {
        "fd_passt",
        "kl_passt",
        "clap",
        "wer",
        "aesthetics CE",
        "aesthetics PQ",
        "desync",
        "imagebind",
    }
    assert corpus["kl_passt"][1:] == ["0.25", "↓ lower", "fastvideo", "6", "0.11", "0.39"]
    assert corpus["clap"][2] == "↑ higher" and corpus["aesthetics PQ"][1:3] == ["4.5", "↑ higher"]
    assert corpus["fd_passt"][4] == "6 gen / 5 ref" and corpus["fd_passt"][5:] == ["—", "—"]
    assert corpus["imagebind"][1] == "not computed: no generated video was long enough"


def test_worst_samples_in_order_with_file_names(rendered):
    page = _parse(rendered)
    kl = page.tables["kl_passt (↓ lower is better)"]
    assert kl[0] == ["rank", "file", "kl_passt", "kl_passt_sigmoid"]
    assert [r[1] for r in kl[1:]] == ["<b>c&amp;</b>.mp4", "e.mp4", "a.mp4"]  # 0.5, 0.4, 0.3
    assert [float(r[2]) for r in kl[1:]] == [0.5, 0.4, 0.3]
    clap = page.tables["clap_cosine (↑ higher is better)"]
    assert [r[1] for r in clap[1:]] == ["d.mp4", "f.mp4", "b.mp4"]  # 0.05, 0.1, 0.2
    ce = page.tables["aesthetics_CE (↑ higher is better)"]
    assert [r[1] for r in ce[1:]] == ["a.mp4", "b.mp4", "<b>c&amp;</b>.mp4"]  # 5, 6, 7
    desync = page.tables["desync (↓ lower is better)"]  # |0.2 i - 0.4|: 0.6 (f), then 0.4 (a, e) in row order
    assert [r[1] for r in desync[1:]] == ["f.mp4", "a.mp4", "e.mp4"]
    assert desync[0][3:] == ["desync_offset_front", "desync_offset_back"]
    wer = page.tables["wer (↓ lower is better)"]
    assert wer[1] == ["1", "b.mp4", "0.5", "hello <world>"]


def test_text_is_escaped(rendered):
    text = rendered
    assert "<b>c" not in text and "&lt;b&gt;c&amp;amp;&lt;/b&gt;.mp4" in text
    assert "hello &lt;world&gt;" in text


def test_unused_files_and_provenance(rendered):
    page = _parse(rendered)
    assert page.tables["Files that could not be decoded"][1] == [
        "gen/zz.mp4",
        "TruncatedFileError: stream ends at 1.0 s",
    ]
    assert page.tables["Samples a metric rejected"][1] == [
        "wer",
        "f.mp4",
        "the transcript is empty after normalisation",
    ]
    assert page.tables["Unmatched files and texts"][1] == ["references without a generated file", "1", "r_extra"]
    prov = dict(page.tables["Provenance"][1:])
    assert prov == {"protocol": "fastvideo", "backbones.PaSST": "passt-s-f128", "video_fps": "25"}


def test_random_weights_banner_and_missing_checkpoints(rendered):
    doc = _doc()
    assert "RANDOM WEIGHTS" not in rendered
    doc["provenance"] |= {"random_weights": "tiny", "missing_checkpoints": ["imagebind_huge.pth  (somewhere)"]}
    text = render_report(doc, {})  # no per-sample rows: no plots to draw
    assert text.count("RANDOM WEIGHTS") == 1 and "imagebind_huge.pth  (somewhere)" in text


def test_csv_rows_give_the_same_report(tmp_path, rendered):
    """Rows read back from the per-sample CSV (strings, empty cells) rank exactly as the JSON rows do."""
    doc = _doc()
    columns = list(dict.fromkeys(k for row in doc["per_sample"].values() for k in row))
    with open(tmp_path / "rows.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["stem", *columns])
        for stem, row in doc["per_sample"].items():
            writer.writerow([stem, *[row.get(c, "") for c in columns]])
    with open(tmp_path / "rows.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert _parse(render_report(json.loads(json.dumps(doc)), rows, worst_n=3)).tables == _parse(rendered).tables


def test_ci_keys_tolerated():
    doc = _doc()
    del doc["details"]["kl_passt"]["ci"]
    doc["bootstrap"] = {
        "kl_passt": {"value": 0.25, "low": 0.2, "high": 0.3},
        "aesthetics": {"CE": {"low": 7, "high": 8}},
    }
    doc["metrics"]["clap"] = {"value": 0.425, "low": 0.4, "high": 0.45, "std": 0.01}
    corpus = {r[0]: r for r in _parse(render_report(doc, {})).tables["Corpus values"][1:]}
    assert corpus["kl_passt"][5:] == ["0.2", "0.3"] and corpus["aesthetics CE"][5:] == ["7", "8"]
    assert corpus["clap"][1] == "0.425" and corpus["clap"][5:] == ["0.4", "0.45"]
    assert corpus["aesthetics PQ"][5:] == ["—", "—"]


def test_bad_arguments():
    with pytest.raises(ValueError, match="worst_n"):
        render_report(_doc(), None, worst_n=0)
    with pytest.raises(ValueError, match="metrics"):
        render_report({"per_sample": {}}, None)
    with pytest.raises(ValueError, match="stem"):
        render_report(_doc(), [{"file": "a.wav", "wer": 1.0}])


def test_directions_match_the_metric_classes():
    """Consistency test: HIGHER_IS_BETTER names every CLI metric with its class's `higher_is_better`."""
    from torchmetrics_av.cli.backbones import random_backbone

    args = argparse.Namespace(
        protocol="fastvideo", batch_size=1, duration=None, ref_stats=None, asr_backend="whisper", bootstrap=None
    )
    assert set(HIGHER_IS_BETTER) >= set(METRICS)
    for name, spec in METRICS.items():
        metric = spec.build(random_backbone(spec.backbone_key(args), "tiny", "fastvideo"), args)
        if name == "aesthetics":
            # The class says None (PC measures complexity, no direction); the report ranks by CE/CU/PQ (higher).
            assert metric.higher_is_better is None and HIGHER_IS_BETTER[name] is True
            continue
        assert HIGHER_IS_BETTER[name] is metric.higher_is_better, name


def test_evaluate_writes_the_report(tmp_path):
    """`torchmetrics-av evaluate --report`: the report of the run's own document, worst KL first."""
    import numpy as np
    import soundfile

    from torchmetrics_av.cli import main

    rng = np.random.default_rng(0)
    for folder in ("gen", "ref"):
        (tmp_path / folder).mkdir()
        for i in range(4):
            wave = (rng.standard_normal(16000) * 0.1 * (i + 1)).astype(np.float32)
            soundfile.write(tmp_path / folder / f"clip{i}.wav", wave, 16000, subtype="FLOAT")
    out, report = tmp_path / "r.json", tmp_path / "r.html"
    argv = [
        "evaluate",
        "--gen",
        str(tmp_path / "gen"),
        "--ref",
        str(tmp_path / "ref"),
        "--metrics",
        "fd_passt,kl_passt",
    ]
    argv += ["--random-weights", "tiny", "--device", "cpu", "--out", str(out), "--report", str(report)]
    assert main(argv) == 0
    doc = json.loads(out.read_text())
    by_kl = sorted(doc["per_sample"].values(), key=lambda r: -r["kl_passt"])
    page = _parse(report.read_text(encoding="utf-8"))
    assert [r[1] for r in page.tables["kl_passt (↓ lower is better)"][1:]] == [r["file"] for r in by_kl]
    corpus = {r[0]: r for r in page.tables["Corpus values"][1:]}
    assert float(corpus["fd_passt"][1]) == pytest.approx(doc["metrics"]["fd_passt"], rel=1e-5)
    assert "RANDOM WEIGHTS (tiny)" in report.read_text(encoding="utf-8")
