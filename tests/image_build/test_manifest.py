"""image-build/lib/manifest.py on a small root file system: every installed Debian package and every venv
distribution with its version and hash, an SPDX 2.3 document, the same bytes twice, and an unpinned
distribution refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "image-build" / "lib" / "manifest.py"
STATUS = """Package: pcscd
Status: install ok installed
Architecture: arm64
Source: pcsc-lite (2.3.3-1)
Version: 2.3.3-1
Description: Middleware to access a smart card
 using PC/SC (daemon side)

Package: libccid
Status: install ok installed
Architecture: arm64
Version: 1.6.2-1

Package: oldthing
Status: deinstall ok config-files
Architecture: arm64
Version: 1.0
"""
SHA_A = "a" * 64
SHA_B = "b" * 64
SHA_C = "c" * 64


def rootfs(tmp_path: Path, dists: dict[str, str]) -> Path:
    root = tmp_path / "rootfs"
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text(STATUS)
    site = root / "opt/mynabox/venv/lib/python3.13/site-packages"
    for name, version in dists.items():
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nbody\n")
    return root


def run(tmp_path: Path, root: Path, tag: str) -> subprocess.CompletedProcess[str]:
    lock = tmp_path / "install.lock"
    lock.write_text(
        f"# comment\npyscard==2.3.1 --hash=sha256:{SHA_B} --hash=sha256:{SHA_A}  # sdist + built wheel\n"
        f"luma.oled==3.16.0 --hash=sha256:{SHA_C}\n"
    )
    argv = ["--rootfs", root, "--lock", lock, "--name", "mynabox-0.1.0-arm64", "--version", "0.1.0"]
    argv += ["--manifest", tmp_path / f"m{tag}.json", "--sbom", tmp_path / f"s{tag}.json"]
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"SOURCE_DATE_EPOCH": "1796147446"},
    )


def test_manifest_and_sbom(tmp_path: Path) -> None:
    root = rootfs(tmp_path, {"pyscard": "2.3.1", "luma.oled": "3.16.0"})
    done = run(tmp_path, root, "1")
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "m1.json").read_text())
    assert manifest["debian"] == [
        {"name": "libccid", "version": "1.6.2-1", "architecture": "arm64", "source": "libccid"},
        {"name": "pcscd", "version": "2.3.3-1", "architecture": "arm64", "source": "pcsc-lite"},
    ]
    assert manifest["python"] == [
        {"name": "luma.oled", "version": "3.16.0", "sha256": [SHA_C]},
        {"name": "pyscard", "version": "2.3.1", "sha256": [SHA_A, SHA_B]},
    ]
    sbom = json.loads((tmp_path / "s1.json").read_text())
    assert sbom["spdxVersion"] == "SPDX-2.3" and sbom["dataLicense"] == "CC0-1.0"
    assert sbom["SPDXID"] == "SPDXRef-DOCUMENT" and sbom["documentNamespace"].startswith("urn:mynabox:sbom:")
    assert sbom["creationInfo"]["created"] == "2026-12-01T17:50:46Z"  # SOURCE_DATE_EPOCH
    ids = [p["SPDXID"] for p in sbom["packages"]]
    assert len(ids) == len(set(ids)) == 5
    contained = {
        r["relatedSpdxElement"] for r in sbom["relationships"] if r["relationshipType"] == "CONTAINS"
    }
    assert contained == set(ids) - {"SPDXRef-Image"}
    pyscard = next(p for p in sbom["packages"] if p["name"] == "pyscard")
    assert pyscard["externalRefs"][0]["referenceLocator"] == "pkg:pypi/pyscard@2.3.1"
    assert {c["checksumValue"] for c in pyscard["checksums"]} == {SHA_A, SHA_B}
    # deterministic
    assert run(tmp_path, root, "2").returncode == 0
    assert (tmp_path / "m1.json").read_bytes() == (tmp_path / "m2.json").read_bytes()
    assert (tmp_path / "s1.json").read_bytes() == (tmp_path / "s2.json").read_bytes()


@pytest.mark.parametrize("dists", [{"requests": "2.0"}, {"pyscard": "2.3.0"}])
def test_a_distribution_the_lock_does_not_pin_is_refused(tmp_path: Path, dists: dict[str, str]) -> None:
    done = run(tmp_path, rootfs(tmp_path, dists), "1")
    assert done.returncode != 0
    assert "not pinned by the lock" in done.stderr
