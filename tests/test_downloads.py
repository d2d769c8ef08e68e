"""download / check on a file:// mirror the test writes: fill, verify, corruption, resume, failures, offline, CLI."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import socket
import urllib.request
from pathlib import Path

import pytest

from torchmetrics_av import downloads, weights
from torchmetrics_av.downloads import CORRUPT, DOWNLOADED, FAILED, MISSING, OK, UNVERIFIED, check, download
from torchmetrics_av.weights import CHECKPOINTS, GROUPS, SNAPSHOT_MANIFEST, Checkpoint, missing_checkpoints

SNAPSHOT_FILES = {"config.json": b'{"model_type": "glmasr"}', "model.safetensors": b"\x00weights" * 64}


@pytest.fixture(autouse=True)
def _online(monkeypatch):
    for env in ("HF_HUB_OFFLINE", "TORCHMETRICS_AV_OFFLINE", "TORCHMETRICS_AV_MIRROR", "HF_ENDPOINT"):
        monkeypatch.delenv(env, raising=False)


def fake_table(mirror: Path) -> dict[str, Checkpoint]:
    """Every table entry, served from ``mirror`` with small made-up contents and digests of those contents.

    Names, file names and which digest kinds each entry has (SHA-256, MD5, size, none) are the real table's.
    """
    table = {}
    for c in CHECKPOINTS.values():
        if c.snapshot:
            folder = mirror / c.filename
            folder.mkdir(parents=True)
            listing = []
            for rel, data in SNAPSHOT_FILES.items():
                (folder / rel).write_bytes(data)
                lfs = rel.endswith(".safetensors")  # the hub lists an LFS SHA-256 for weights, none for small files
                listing.append(
                    {"path": rel, "size": len(data), "sha256": hashlib.sha256(data).hexdigest() if lfs else None}
                )
            (folder / SNAPSHOT_MANIFEST).write_text(json.dumps({"files": listing}))
            table[c.name] = c
            continue
        data = f"{c.name}\n".encode() * 5 + bytes(range(256))
        path = mirror / c.filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        changes = {}
        if c.sha256:
            changes["sha256"] = hashlib.sha256(data).hexdigest()
        if c.md5:
            changes["md5"] = hashlib.md5(data).hexdigest()
        if c.size is not None:
            changes["size"] = len(data)
        table[c.name] = dataclasses.replace(c, **changes)
    return table


@pytest.fixture
def mirror(tmp_path):
    root = tmp_path / "mirror"
    root.mkdir()
    return root, fake_table(root)


def statuses(rows):
    return {r.name: r.status for r in rows}


def test_download_all_fills_the_folder_and_check_reports_it_complete(tmp_path, mirror):
    root, table = mirror
    wdir = tmp_path / "weights"
    rows = download(None, wdir, mirror=root.as_uri(), progress=False, table=table)
    defaults = [c for c in table.values() if c.default]
    expected_names = {c.name for c in defaults if not c.snapshot}
    expected_names |= {f"zai-org/GLM-ASR-Nano-2512/{rel}" for rel in SNAPSHOT_FILES}
    assert statuses(rows) == dict.fromkeys(expected_names, DOWNLOADED)
    assert "whisper-large-v3" not in statuses(rows)  # other Whisper sizes only by name or "all"
    for c in defaults:
        if not c.snapshot:
            assert (wdir / c.filename).read_bytes() == (root / c.filename).read_bytes(), c.name
            assert not (wdir / (c.filename + ".part")).exists()
    by_name = {r.name: r for r in rows}
    assert by_name["synchformer_24-01-04T16-39-21"].digest == "md5 ok (publisher)"
    assert by_name["passt_s_swa_p16_128_ap476"].digest == "none published: SHA-256 recorded"
    manifest = json.loads((wdir / "GLM-ASR-Nano-2512" / SNAPSHOT_MANIFEST).read_text())
    assert {f["path"]: f["sha256"] for f in manifest["files"]} == {
        rel: hashlib.sha256(data).hexdigest() for rel, data in SNAPSHOT_FILES.items()
    }

    checked = check(wdir, table=table)
    assert statuses(checked) == dict.fromkeys(expected_names, OK)
    assert missing_checkpoints(None, wdir, table=table) == []
    # A second download keeps the verified copies.
    assert set(statuses(download(None, wdir, mirror=root.as_uri(), progress=False, table=table)).values()) == {OK}


def test_check_reports_corrupt_and_missing_and_download_repairs(tmp_path, mirror):
    root, table = mirror
    wdir = tmp_path / "weights"
    names = ["av-benchmark", "glm-asr"]
    download(names, wdir, mirror=root.as_uri(), progress=False, table=table)
    flip = {
        "synchformer_24-01-04T16-39-21": "md5 published",
        "vggish-10086976": "sha256 published",
        "passt_s_swa_p16_128_ap476": "sha256 recorded at download only",
    }
    for name in flip:
        path = wdir / table[name].filename
        st = path.stat()
        raw = bytearray(path.read_bytes())
        raw[len(raw) // 2] ^= 0x01  # one bit rotted: same size and, restored below, same modification time
        path.write_bytes(bytes(raw))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    (wdir / table["imagebind_huge"].filename).unlink()
    (wdir / "GLM-ASR-Nano-2512" / "model.safetensors").write_bytes(b"truncated")
    rows = check(wdir, names, table=table)
    got = statuses(rows)
    assert {n for n, s in got.items() if s == CORRUPT} == {*flip, "zai-org/GLM-ASR-Nano-2512/model.safetensors"}
    assert {n for n, s in got.items() if s == MISSING} == {"imagebind_huge"}
    assert {s for n, s in got.items() if n not in {*flip, "imagebind_huge"} and "model.safetensors" not in n} == {OK}
    errors = {r.name: r.error for r in rows}
    assert "MD5" in errors["synchformer_24-01-04T16-39-21"] and "SHA256" in errors["passt_s_swa_p16_128_ap476"]

    repaired = download(names, wdir, mirror=root.as_uri(), progress=False, table=table)
    assert {r.name for r in repaired if r.status == DOWNLOADED} >= {*flip, "imagebind_huge"}
    assert all(r.ok for r in repaired)
    assert set(statuses(check(wdir, names, table=table)).values()) == {OK}


def test_a_corrupt_mirror_is_a_failure_and_nothing_reaches_the_final_name(tmp_path, mirror):
    root, _ = mirror  # contents made up: the REAL table's digests cannot match them
    wdir = tmp_path / "weights"
    rows = download(["desync", "vggish", "passt"], wdir, mirror=root.as_uri(), progress=False)
    got = {r.name: r for r in rows}
    assert got["synchformer_24-01-04T16-39-21"].status == FAILED and "MD5" in got["synchformer_24-01-04T16-39-21"].error
    assert got["vggish-10086976"].status == FAILED and "SHA-256" in got["vggish-10086976"].error
    assert got["passt_s_swa_p16_128_ap476"].status == DOWNLOADED  # no published digest: recorded
    assert sorted(p.name for p in wdir.iterdir() if not p.name.endswith(".lock")) == [
        "passt-s-f128-p16-s10-ap.476-swa.pt",
        "passt-s-f128-p16-s10-ap.476-swa.pt.sha256",
    ]


def test_every_failure_is_collected(tmp_path, mirror, capsys):
    root, table = mirror
    for name in ("imagebind_huge", "panns_cnn14_16k_map0.438"):
        (root / table[name].filename).unlink()
    wdir = tmp_path / "weights"
    rows = download(["av-benchmark"], wdir, mirror=root.as_uri(), progress=False, table=table)
    failed = {r.name for r in rows if r.status == FAILED}
    assert failed == {"imagebind_huge", "panns_cnn14_16k_map0.438"}
    assert all(r.ok for r in rows if r.name not in failed)  # the others were still fetched
    text = downloads.format_rows(rows)
    assert "2 problems:" in text and "imagebind_huge: failed:" in text and "panns_cnn14_16k_map0.438: failed:" in text


def test_resume_from_a_partial_file_and_restart_when_it_does_not_verify(tmp_path, mirror, monkeypatch):
    root, table = mirror
    ckpt = table["laion_clap_music_speech_audioset_epoch_15_esc_89.98"]  # has a SHA-256
    data = (root / ckpt.filename).read_bytes()
    wdir = tmp_path / "weights"
    part = wdir / (ckpt.filename + ".part")
    starts = []
    real_open = weights._open_url

    def spy(url, offset, timeout):
        opened = real_open(url, offset, timeout)
        starts.append(opened[1])
        return opened

    monkeypatch.setattr(weights, "_open_url", spy)
    wdir.mkdir()
    part.write_bytes(data[:100])
    rows = download([ckpt.name], wdir, mirror=root.as_uri(), progress=False, table=table)
    assert rows[0].status == DOWNLOADED and starts == [100]  # only the rest was read
    assert (wdir / ckpt.filename).read_bytes() == data and not part.exists()

    (wdir / ckpt.filename).unlink()
    starts.clear()
    part.write_bytes(b"X" * 100)  # a stale partial file from another version
    rows = download([ckpt.name], wdir, mirror=root.as_uri(), progress=False, table=table)
    assert rows[0].status == DOWNLOADED and starts == [100, 0]  # resumed, failed to verify, fetched again
    assert (wdir / ckpt.filename).read_bytes() == data


def test_offline_download_fails_every_file_without_a_connection(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rows = download(["passt", "audiobox", "glm-asr"], tmp_path, progress=False)
    assert [r.status for r in rows] == [FAILED] * 4
    assert all("offline" in r.error for r in rows)
    assert {r.name for r in rows} == {*GROUPS["passt"], *GROUPS["audiobox"], "zai-org/GLM-ASR-Nano-2512"}


def test_hub_listing_reads_lfs_digests_and_follows_pages(monkeypatch):
    pages = {
        "https://huggingface.co/api/models/zai-org/GLM-ASR-Nano-2512/tree/main?recursive=true": (
            [
                {"type": "file", "path": "config.json", "size": 10, "oid": "a" * 40},
                {"type": "directory", "path": "sub", "oid": "b" * 40},
            ],
            '<https://huggingface.co/api/next-page>; rel="next"',
        ),
        "https://huggingface.co/api/next-page": (
            [{"type": "file", "path": "sub/model.safetensors", "size": 20, "lfs": {"oid": "c" * 64, "size": 20}}],
            "",
        ),
    }

    class Page(io.BytesIO):
        def __init__(self, body, link):
            super().__init__(json.dumps(body).encode())
            self.headers = {"Link": link} if link else {}

    monkeypatch.setattr(downloads, "_open_url", lambda url, offset, timeout: (Page(*pages[url]), 0, None))
    listing = downloads._hub_listing(CHECKPOINTS["zai-org/GLM-ASR-Nano-2512"], 5)
    assert listing == [
        {"path": "config.json", "size": 10, "sha256": None},
        {"path": "sub/model.safetensors", "size": 20, "sha256": "c" * 64},
    ]


def test_present_file_without_any_digest_is_recorded_then_checked(tmp_path, mirror):
    root, table = mirror
    ckpt = table["imagebind_huge"]
    wdir = tmp_path / "weights"
    wdir.mkdir()
    (wdir / ckpt.filename).write_bytes(b"copied by hand")
    assert statuses(check(wdir, ["imagebind"], table=table)) == {"imagebind_huge": UNVERIFIED}
    rows = download(["imagebind"], wdir, mirror=root.as_uri(), progress=False, table=table)
    assert statuses(rows) == {"imagebind_huge": UNVERIFIED} and "recorded now" in rows[0].digest
    assert statuses(check(wdir, ["imagebind"], table=table)) == {"imagebind_huge": OK}


def test_command_line_entry(tmp_path, mirror, monkeypatch, capsys):
    root, table = mirror
    monkeypatch.setattr(weights, "CHECKPOINTS", table)
    wdir = tmp_path / "weights"
    args = ["--weights-dir", str(wdir), "passt", "desync"]
    assert downloads.main(["download", "--mirror", root.as_uri(), "--quiet", *args]) == 0
    assert "downloaded" in capsys.readouterr().out
    assert downloads.main(["check", *args]) == 0
    (wdir / "synchformer_state_dict.pth").unlink()
    assert downloads.main(["check", *args]) == 1
    out = capsys.readouterr().out
    assert "1 problem:" in out and "synchformer_24-01-04T16-39-21: missing" in out
    assert downloads.main(["check", "--weights-dir", str(wdir), "nope"]) == 2


def test_torchmetrics_av_download_all_then_weights_check(tmp_path, mirror, monkeypatch, capsys):
    """The console script: `download --all` fills a folder from $TORCHMETRICS_AV_MIRROR, `weights --check` (offline)
    calls it complete, then names a flipped byte corrupt and a deleted file missing."""
    from torchmetrics_av.cli import main

    root, table = mirror
    monkeypatch.setattr(weights, "CHECKPOINTS", table)
    monkeypatch.setenv("TORCHMETRICS_AV_MIRROR", root.as_uri())
    wdir = tmp_path / "weights"
    assert main(["download", "--all", "--weights-dir", str(wdir), "--quiet"]) == 0
    assert "problem" not in capsys.readouterr().out
    for c in table.values():
        files = SNAPSHOT_FILES if c.snapshot else {"": None}
        for rel in files:
            path = Path(c.filename) / rel if rel else Path(c.filename)
            assert (wdir / path).read_bytes() == (root / path).read_bytes(), path

    monkeypatch.delenv("TORCHMETRICS_AV_MIRROR")
    monkeypatch.setenv("TORCHMETRICS_AV_OFFLINE", "1")
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("a connection was attempted"))
    check_all = ["weights", "--check", "--all", "--weights-dir", str(wdir)]
    assert main(check_all) == 0
    out = capsys.readouterr().out
    assert "problem" not in out and out.count(" ok ") >= len([c for c in table.values() if not c.snapshot])

    sync = wdir / table["synchformer_24-01-04T16-39-21"].filename
    st = sync.stat()
    raw = bytearray(sync.read_bytes())
    raw[7] ^= 0x80  # one bit, same size and modification time: only re-hashing finds it
    sync.write_bytes(bytes(raw))
    os.utime(sync, ns=(st.st_atime_ns, st.st_mtime_ns))
    (wdir / table["imagebind_huge"].filename).unlink()
    assert main(check_all) == 1
    out = capsys.readouterr().out
    assert "2 problems:" in out
    assert "synchformer_24-01-04T16-39-21: corrupt: " in out and "MD5" in out
    assert "imagebind_huge: missing: not in the folder" in out

    assert main(["weights", "desync"]) == 0  # the table rows of a name
    assert capsys.readouterr().out.split("\t")[:2] == ["synchformer_24-01-04T16-39-21", "synchformer_state_dict.pth"]
    assert main(["weights", "--check", "nope"]) == 2 and main(["download", "nope", "--weights-dir", str(wdir)]) == 2
    assert "unknown checkpoint or group ['nope']" in capsys.readouterr().err
