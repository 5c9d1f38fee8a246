"""The image's package manifest and SBOM (SPDX 2.3 JSON), generated from what is really in the root file
system: dpkg's status database for the Debian packages, the venv's *.dist-info for the Python
distributions, whose hashes come from the install lock (a distribution the lock does not pin is an error).

usage: manifest.py --rootfs DIR --lock FILE --name NAME --version V --manifest OUT.json --sbom OUT.spdx.json
Deterministic: the same inputs give the same bytes (SOURCE_DATE_EPOCH is the creation time).
"""

from __future__ import annotations

import argparse
import email.parser
import hashlib
import json
import os
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

VENV_SITE = "opt/mynabox/venv/lib"


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def debian_packages(rootfs: Path) -> list[dict[str, str]]:
    status = (rootfs / "var/lib/dpkg/status").read_text(encoding="utf-8")
    packages = []
    for stanza in status.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line[:1] in (" ", "\t") or ":" not in line:
                continue
            key, value = line.split(":", 1)
            fields[key] = value.strip()
        if fields.get("Status") != "install ok installed":
            continue
        source = fields.get("Source", fields["Package"]).split(" ")[0]
        packages.append(
            {
                "name": fields["Package"],
                "version": fields["Version"],
                "architecture": fields.get("Architecture", ""),
                "source": source,
            }
        )
    return sorted(packages, key=lambda p: (p["name"], p["architecture"]))


def lock_hashes(lock: Path) -> dict[str, tuple[str, list[str]]]:
    pins: dict[str, tuple[str, list[str]]] = {}
    for raw in lock.read_text(encoding="utf-8").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        spec, *opts = line.split()
        name, version = spec.split("==")
        pins[norm(name)] = (version, sorted(o.removeprefix("--hash=sha256:") for o in opts))
    return pins


def python_dists(rootfs: Path, lock: Path) -> list[dict[str, object]]:
    pins = lock_hashes(lock)
    dists = []
    for meta in sorted((rootfs / VENV_SITE).glob("python3*/site-packages/*.dist-info/METADATA")):
        msg = email.parser.Parser().parsestr(meta.read_text(encoding="utf-8"), headersonly=True)
        name, version = msg["Name"], msg["Version"]
        pin = pins.get(norm(name))
        if pin is None or pin[0] != version:
            raise SystemExit(f"manifest: {name} {version} is installed but not pinned by the lock")
        dists.append({"name": name, "version": version, "sha256": pin[1]})
    return sorted(dists, key=lambda d: norm(str(d["name"])))


def spdx(
    name: str, version: str, epoch: int, debian: list[dict[str, str]], python: list[dict[str, object]]
) -> dict[str, object]:
    created = datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    packages: list[dict[str, object]] = [
        {
            "SPDXID": "SPDXRef-Image",
            "name": name,
            "versionInfo": version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": False,
            "primaryPackagePurpose": "OPERATING-SYSTEM",
        }
    ]
    relationships = [
        {
            "spdxElementId": "SPDXRef-DOCUMENT",
            "relationshipType": "DESCRIBES",
            "relatedSpdxElement": "SPDXRef-Image",
        }
    ]
    for p in debian:
        ident = f"SPDXRef-deb-{_ident(p['name'])}-{_ident(p['architecture'])}"
        purl = f"pkg:deb/debian/{p['name']}@{p['version']}?arch={p['architecture']}&distro=trixie"
        packages.append(
            {
                "SPDXID": ident,
                "name": p["name"],
                "versionInfo": p["version"],
                "downloadLocation": "NOASSERTION",
                "filesAnalyzed": False,
                "sourceInfo": f"built from Debian source package {p['source']}",
                "externalRefs": [
                    {
                        "referenceCategory": "PACKAGE-MANAGER",
                        "referenceType": "purl",
                        "referenceLocator": purl,
                    }
                ],
            }
        )
        relationships.append(
            {"spdxElementId": "SPDXRef-Image", "relationshipType": "CONTAINS", "relatedSpdxElement": ident}
        )
    for d in python:
        ident = f"SPDXRef-pypi-{_ident(str(d['name']))}"
        hashes = d["sha256"]
        assert isinstance(hashes, list)
        packages.append(
            {
                "SPDXID": ident,
                "name": d["name"],
                "versionInfo": d["version"],
                "downloadLocation": "NOASSERTION",
                "filesAnalyzed": False,
                "checksums": [{"algorithm": "SHA256", "checksumValue": h} for h in hashes],
                "externalRefs": [
                    {
                        "referenceCategory": "PACKAGE-MANAGER",
                        "referenceType": "purl",
                        "referenceLocator": f"pkg:pypi/{norm(str(d['name']))}@{d['version']}",
                    }
                ],
            }
        )
        relationships.append(
            {"spdxElementId": "SPDXRef-Image", "relationshipType": "CONTAINS", "relatedSpdxElement": ident}
        )
    body = json.dumps([packages, relationships], sort_keys=True).encode()
    return {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{name} SBOM",
        "documentNamespace": f"urn:mynabox:sbom:{name}:{hashlib.sha256(body).hexdigest()[:32]}",
        "creationInfo": {"created": created, "creators": ["Tool: mynabox image-build/lib/manifest.py"]},
        "packages": packages,
        "relationships": relationships,
    }


def _ident(text: str) -> str:
    """SPDX identifiers allow letters, digits, '.' and '-' only."""
    return re.sub(r"[^A-Za-z0-9.-]", "-", text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    for opt in ("--rootfs", "--lock", "--manifest", "--sbom"):
        parser.add_argument(opt, type=Path, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--version", required=True)
    args = parser.parse_args(argv)
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    debian = debian_packages(args.rootfs)
    python = python_dists(args.rootfs, args.lock)
    manifest = {
        "image": args.name,
        "version": args.version,
        "source_date_epoch": epoch,
        "debian": debian,
        "python": python,
    }
    args.manifest.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    args.sbom.write_text(
        json.dumps(spdx(args.name, args.version, epoch, debian, python), indent=1, sort_keys=True) + "\n",
        encoding="utf-8",
    )
    print(f"manifest: {len(debian)} Debian packages, {len(python)} Python distributions", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
