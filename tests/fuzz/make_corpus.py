"""Writes the seed corpus in corpus/<target>/ (run after a format change; the files are committed).

Files named ``crash-*`` are regression inputs from fuzzing and are kept.

Seeds are real inputs each target's parser accepts - a transcript of the virtual card, a test card's
certificate, sealed messages of every kind, a synthetic patient's summary, the example config, an audit
log, the bench's rig files - plus a few near misses, so the fuzzer starts deep. No seed holds a real
person's data.
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from importlib import resources

from harness import CORPUS

sys.dont_write_bytecode = True


def write(target: str, name: str, data: bytes) -> None:
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def frame(chunks: list[bytes]) -> bytes:
    return b"".join(len(c).to_bytes(2, "big") + c for c in chunks)


def card_session() -> None:
    from mynabox.card import session
    from mynabox.card.jpki import ReaderCaps, read_auth_certificate
    from mynabox_testkit.mynacard import VirtualMyNumberCard

    for name, extended, caps_byte, caps in [
        ("extended", True, 0, ReaderCaps()),
        ("short", False, 0, ReaderCaps()),
        ("short-known", False, 2 + 3 * 1, ReaderCaps(extended=False, sfi=True)),
        ("no-sfi", True, 3 * 2, ReaderCaps(sfi=False)),
    ]:
        card = VirtualMyNumberCard("fuzz-seed-0001", extended=extended)
        answers: list[bytes] = []

        class Recorder:
            def transmit(
                self, command: bytes, card: VirtualMyNumberCard = card, answers: list[bytes] = answers
            ) -> bytes:
                answer = card.process(command) or b""
                answers.append(answer)
                return answer

        session.run(read_auth_certificate(caps), Recorder())
        write("card_session", name, bytes([caps_byte]) + frame(answers))
    write("card_session", "not-jpki", b"\x00" + frame([b"\x6a\x82"]))
    write("card_session", "chained", b"\x00" + frame([b"\x90\x00", b"\x61\x10", b"x" * 16 + b"\x90\x00"]))


def certcheck() -> None:
    from mynabox_testkit import testca

    der = testca.auth_certificate("fuzz-seed-0001")
    write("certcheck", "test-card", b"\x01" + der)
    write("certcheck", "test-card-unsynced", b"\x00" + der)
    for entry in resources.files("mynabox").joinpath("data/jpki-ca").iterdir():
        if entry.name == "auth_ca_2023.pem":
            write("certcheck", "jlis-root-pem", b"\x02" + entry.read_bytes())


def envelopes() -> None:
    from fuzzkeys import NOW, sealer

    from mynabox.payload.envelope import Kind
    from mynabox.payload.seal import Sealer
    from mynabox_testkit.patients import patient, summary_for

    s = sealer()
    assert isinstance(s, Sealer)
    summary = summary_for(patient("warfarin-elderly"), NOW.date())
    assert summary is not None
    bodies = {
        Kind.SUMMARY: {"summary": summary.to_json(), "read": {"consent": "oral-consent"}},
        Kind.CARD_RECORD: {"card_record": {"certificate": "MIIB", "reason": "not-registered"}},
        Kind.AUDIT: {"record": {"outcome": "delivered-summary"}, "prev": "0" * 64, "hash": "1" * 64},
        Kind.STATE: {"state": "ready"},
    }
    for seq, (kind, body) in enumerate(bodies.items(), 1):
        sealed = s.seal(kind, body, now=NOW, clock_synced=True, seq=seq)
        write("envelope", kind.value, sealed.token)
        leaf = "audit" if kind is Kind.AUDIT else "summary"
        topic = f"mynabox/amb-fuzz-01/{leaf}".encode()
        raw = bytes([0]) + frame([topic]) + sealed.token
        write("receiver", f"sealed-{kind.value}", raw)
        write(
            "receiver",
            f"body-{kind.value}",
            bytes([1 | (list(Kind).index(kind) << 1) | 0x10])
            + frame([topic])
            + json.dumps(body, ensure_ascii=False).encode(),
        )
        claims = {
            "jti": "a" * 32,
            "kind": kind.value,
            "device": "amb-fuzz-01",
            "iat": int(NOW.timestamp()),
            "clock_synced": True,
            "body": body,
        }
        write("envelope_claims", kind.value, b"\x00" + json.dumps(claims, ensure_ascii=False).encode())
    old = {
        "jti": "b" * 32,
        "kind": "audit",
        "device": "amb-fuzz-01",
        "iat": int((NOW - timedelta(days=30)).timestamp()),
        "clock_synced": True,
        "body": {},
    }
    write("envelope_claims", "expired", b"\x00" + json.dumps(old).encode())
    header = json.dumps({"alg": "ES256", "typ": "mynabox+jwt", "kid": "amb-fuzz-02"}).encode()
    write("envelope_claims", "other-kid", b"\x01" + frame([header]) + json.dumps(old).encode())


def summaries() -> None:
    from fuzzkeys import NOW

    from mynabox_testkit.patients import PATIENTS, summary_for

    for p in PATIENTS:
        s = summary_for(p, NOW.date())
        if s is not None:
            write("summary", p.key, json.dumps(s.to_json(), ensure_ascii=False).encode())


def pages() -> None:
    from fuzzkeys import NOW

    from mynabox_testkit.patients import PATIENTS, summary_for

    read = {
        "card_hash": "0123456789abcdef",
        "card_type": "my-number-card",
        "certificate_check": {"status": "ok"},
        "read_at": NOW.isoformat(),
        "consent": "oral-consent",
    }
    for p in PATIENTS:
        s = summary_for(p, NOW.date())
        if s is not None:
            body = {"summary": s.to_json(), "read": read}
            write("page", p.key, b"\x02" + json.dumps(body, ensure_ascii=False).encode())
    record = {"card_record": {"certificate": "AAAA", "reason": "lookup-unavailable"}, "read": read}
    write("page", "card-record", b"\x03" + json.dumps(record).encode())
    allergy = next(p for p in PATIENTS if p.key == "allergy")
    s = summary_for(allergy, NOW.date())
    assert s is not None
    doc = s.to_json()
    doc["allergies"]["allergies"][0]["substance"] = ("a" + "\u0301" * 45) * 4
    doc["medications"][0]["drug_name"] = "W" * 200
    doc["patient"]["name"] = '<img src=x onerror="alert(1)">'
    odd_read = {**read, "consent": "\u202e<b>", "read_at": "9999-12-31T23:59:59+14:00"}
    hostile = {"summary": doc, "read": odd_read}
    write("page", "hostile", b"\x00" + json.dumps(hostile, ensure_ascii=False).encode())


def config() -> None:
    text = resources.files("mynabox").joinpath("data", "config.example.toml").read_bytes()
    write("config", "example", text)
    write("config", "minimal", b'[device]\nid = "amb-1"\n[summary]\n[mqtt]\n[sealing]\n[audit]\n')


def audit() -> None:
    from datetime import UTC, datetime

    from mynabox.payload.audit import GENESIS, AuditRecord, chain, published_body
    from mynabox.payload.keys import Secret
    from mynabox.vocab import ConsentMode, Outcome

    key = Secret(b"k" * 32)
    prev, lines = GENESIS, []
    for n, outcome in enumerate([Outcome.DELIVERED_SUMMARY, Outcome.NO_CONSENT, Outcome.PURGED]):
        rec = AuditRecord(
            datetime(2026, 11, 25, 9, n, tzinfo=UTC),
            "amb-fuzz-01",
            "unit-1",
            None,
            ConsentMode.ORAL_CONSENT,
            outcome,
            f"{n:016x}",
            True,
            f"{n:032x}",
        )
        entry = chain(prev, rec, key=key)
        lines.append(entry.to_json_line())
        prev = entry.hash
    write("audit", "keyed-chain", b"\x01" + "\n".join(lines).encode() + b"\n")
    write("audit", "unkeyed-chain", b"\x00" + "\n".join(lines).encode() + b"\n")
    write("audit", "published", b"\x01" + json.dumps(published_body(entry, ("anticoagulant",))).encode())


def rig() -> None:
    """The committed rig files, one like the terminal test's, and the refusals of issue 23 item 11."""
    from harness import ROOT

    for name in ("rig", "virtual"):
        write("rig", name, (ROOT / f"hw/bench/{name}.toml").read_bytes())
    write(
        "rig",
        "hardware-bench",
        b'[rig]\nname = "t"\nmode = "hardware"\ntechnician = "T-1"\n[box]\nconfig = "box/config.toml"\n'
        b'[reader]\nname = "vpcd"\nread_timeout_s = 5\n[oled]\naddress = 0x3d\nport = 0\n'
        b"[parts]\noled = false\nwatchdog = true\n"
        b'[bench]\nbroker = "127.0.0.1:8883"\nsummary_url = "https://127.0.0.1:8443"\ngateway_ca = "ca.pem"\n'
        b'gateway_cert = "g.pem"\ngateway_key = "g.key"\ngateway_envelope_key = "e.key"\n'
        b'device_keys_dir = "keys"\n[operator]\ntimeout_s = 3\n'
        b"[limits.card_read_ms]\nhigh = 900\nmarginal_high = 500\n[limits.apdus_per_read]\nlow = 1\n"
        b'[virtual]\ndevice_id = "amb-virtual-02"\nfaults = ["dead-led", "silent-card"]\n',
    )
    virtual = b'[rig]\nmode = "virtual"\ntechnician = "T-1"\n'
    write("rig", "rig-not-a-table", b"rig = 5\n")
    write("rig", "port-a-string", virtual + b'[oled]\nport = "one"\n')
    write("rig", "port-inf", virtual + b"[oled]\nport = inf\n")
    write("rig", "limits-not-a-table", b"limits = 3\n" + virtual)


def topics() -> None:
    for t in ["mynabox/amb-fuzz-01/summary", "mynabox/amb-fuzz-01/audit", "mynabox/+/summary", "amb-1/state"]:
        write("topic", t.replace("/", "_").replace("+", "plus"), t.encode())


VEHICLE = """[device]
id = "amb-0001"
unit_id = "tokyo-12"

[mqtt]
host = "gateway.local"
port = 8883
ca_file = "mqtt/ca.pem"
client_cert = "mqtt/client-amb-0001.pem"
client_key = "mqtt/client-amb-0001.key"

[summary]
url = "https://summary.example.jp/v1"
ca_file = "summary/ca.pem"
client_cert = "summary/client-amb-0001.pem"
client_key = "summary/client-amb-0001.key"

[sealing]
gateway_public_key = "gateway.pem"
device_key = "device-key.pem"

[audit]
key = "audit-key"
"""


def vehicle() -> None:
    write("vehicle", "valid", VEHICLE.encode())
    write(
        "vehicle",
        "bench",
        (VEHICLE + '[display]\ndriver = "dummy"\n[panel]\npin_factory = "mock"\n').encode(),
    )
    write(
        "vehicle",
        "swapped-keys",
        VEHICLE.replace("mqtt/client-amb-0001.key", "summary/client-amb-0001.key").encode(),
    )
    write("vehicle", "unknown-section", (VEHICLE + '[mqt]\nhost = "x"\n').encode())


def bundle() -> None:
    """A real bundle.json, and /mynabox/credentials as mkfs.vfat and mcopy lay it out (FAT16)."""
    import subprocess
    import tempfile
    from pathlib import Path, PurePosixPath

    from fuzz_vehicle import vehicle_dir

    from mynabox.fleet.bundle import load_vehicle
    from mynabox.fleet.fatimage import FatImage
    from mynabox.fleet.provision import write_bundle

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        vehicle_dir(d)
        (d / "vehicle.toml").write_text(VEHICLE)
        made = load_vehicle(d / "vehicle.toml")
        image = d / "fat.img"
        with image.open("wb") as f:
            f.truncate(8 << 20)
        subprocess.run(["mkfs.vfat", "-F", "16", "-s", "1", str(image)], check=True, capture_output=True)
        fat = FatImage(image, offset=0)
        write_bundle(fat, made)
        g = fat.geometry
        raw = image.read_bytes()
        table = raw[g.fat_start : g.fat_start + 1024]
        for name in ("/mynabox", "/mynabox/credentials"):
            first = fat.clusters(PurePosixPath(name))[0]
            at = g.data_start + (first - 2) * g.cluster_bytes
            directory = raw[at : at + g.cluster_bytes][:4096]
            seed = bytes([1]) + frame([directory, table]) + made.manifest()
            write("bundle", name.strip("/").replace("/", "-"), seed)
    write("bundle", "manifest-only", bytes([1]) + frame([b"", b""]) + made.manifest())
    write("bundle", "not-json", bytes([0]) + frame([b"", b""]) + b"[" * 64)


def update() -> None:
    """The update path's outside inputs, made for real: boot-state copies as the backend writes them, a bundle
    built by image-build/make-bundle and RAUC's `info` of it, RAUC's `status` from the RAUC service the update
    tests start (when this machine can: else the RAUC 1.8 output recorded in tests/update), kept results."""
    import subprocess
    import tempfile
    from dataclasses import replace
    from datetime import UTC, datetime
    from pathlib import Path

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.serialization import pkcs7
    from harness import ROOT

    from mynabox.adapters.bootfiles import BootFiles
    from mynabox.update import bootstate as bs
    from mynabox.update import lastresult, verity

    if str(ROOT / "tests") not in sys.path:
        sys.path.insert(0, str(ROOT / "tests"))
    from update.conftest import make_signer, rauc_service, rauc_service_missing, system_conf_for_test
    from update.test_raucstatus import SAMPLE

    cmdline = b"console=ttyAMA0 root=/dev/mmcblk0p2 rauc.slot=A mynabox.bootstate=ok rootwait"
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        files = BootFiles(d)
        files.write(1, replace(bs.INITIAL, seq=bs.INITIAL.seq - 1))  # as `update init-bootstate`
        files.write(0, bs.INITIAL)

        def copies() -> bytes:
            return frame([files.path(0).read_bytes(), files.path(1).read_bytes()])

        write("bootstate", "initial", b"\x00" + copies() + cmdline)
        files.change(lambda s: bs.set_state(s, "A", True))  # mark-good at first boot
        write("bootstate", "marked-good", b"\x04" + copies() + cmdline)
        files.change(lambda s: bs.set_primary(s, "B"))  # after an install into B
        write("bootstate", "primary-b", b"\x10" + copies() + cmdline.replace(b"slot=A", b"slot=B"))
        files.change(lambda s: bs.set_state(s, "B", False))  # B failed its health check
        whole = files.path(0).read_bytes(), files.path(1).read_bytes()
        write("bootstate", "rolled-back", b"\x34" + copies() + cmdline)
        write("bootstate", "torn-copy", b"\x08" + frame([whole[0][:300], whole[1]]) + cmdline)
        write("bootstate", "copy1-missing", b"\x02" + frame([whole[0], b""]) + b"mynabox.bootstate=copy1-bad")
        body = b"BOOT_A_LEFT=0x3\0BOOT_B_LEFT=zz\0BOOT_ORDER=B C A\0BOOT_SEQ=ffffffff\0FOO=bar\0\0"
        write("bootstate", "forged-checksum", b"\x40" + frame([b"\0" * 4 + body.ljust(508, b"\0"), whole[1]]))
        write("bootstate", "both-bad", b"\x00" + frame([b"\0" * 512, whole[1][:4] + b"\1" * 508]))
        # BOOT_ORDER of only the trial word (names no slot), then A marked bad.
        body = b"BOOT_A_LEFT=3\0BOOT_B_LEFT=3\0BOOT_ORDER=trialB\0BOOT_SEQ=7\0\0"
        write("bootstate", "trial-word-only", b"\x44" + frame([b"\0" * 4 + body.ljust(508, b"\0"), whole[1]]))

        signer = make_signer(d / "pki", "fuzz")
        tree = d / "tree"
        (tree / "etc").mkdir(parents=True)
        (tree / "etc" / "mynabox-release").write_text("slot root of a fuzz seed bundle\n")
        raucb = d / "seed.raucb"
        subprocess.run(
            [str(ROOT / "image-build" / "make-bundle"), "--tree", str(tree), "--cert", str(signer.cert),
             "--key", str(signer.key), "--version", "0.3.0", "--build", "fuzzseed", "--out", str(raucb)],
            check=True, capture_output=True, timeout=300,
        )  # fmt: skip
        (d / "box").mkdir()
        conf = system_conf_for_test(d / "box", signer.ca, d / "box" / "backend", (d / "a", d / "b"))
        info = subprocess.run(
            ["rauc", "-c", str(conf), "info", "--output-format=json", str(raucb)],
            check=True, capture_output=True, timeout=120,
        ).stdout  # fmt: skip
        write("update_bundle", "rauc-info-newer", b"\x00" + frame([b"0.2.0"]) + info)
        write("update_bundle", "rauc-info-older-forced", b"\x01" + frame([b"0.4.1"]) + info)
        write(
            "update_bundle",
            "rauc-info-other-board",
            b"\x00" + frame([b"0.3.0"]) + info.replace(b"rpi", b"rpX"),
        )
        write(
            "update_bundle",
            "version-not-dotted",
            b"\x00" + frame([b"0.1"]) + info.replace(b"0.3.0", b"0.3.0rc1"),
        )

        raw = raucb.read_bytes()
        size = int.from_bytes(raw[-8:], "big")
        cms = raw[-8 - size : -8]
        manifest = verity.signed_manifest(cms)
        # The real bundle's signature on a payload cut short (its layout is refused, its DER is read whole),
        write("verity", "real-signature-short-payload", raw[:4096] + raw[-8 - size :])
        # and a one-block bundle signed over the same manifest with its own verity parameters (fits -max_len).
        salt = bytes(range(32))
        payload = b"hsqs" + bytes(4092)
        stored, root = verity.tree(lambda at, n: payload[at : at + n], len(payload), salt)
        lines = []
        for line in manifest.splitlines():
            key = line.partition("=")[0]
            value = {"verity-hash": root.hex(), "verity-salt": salt.hex(), "verity-size": str(len(stored))}
            lines.append(f"{key}={value[key]}" if key in value else line)
        signed = (
            pkcs7.PKCS7SignatureBuilder()
            .set_data("\n".join(lines).encode() + b"\n")
            .add_signer(
                x509.load_pem_x509_certificate(signer.cert.read_bytes()),
                serialization.load_pem_private_key(signer.key.read_bytes(), None),  # type: ignore[arg-type]
                hashes.SHA256(),
            )
            .sign(serialization.Encoding.DER, [])
        )
        one_block = payload + stored + signed + len(signed).to_bytes(8, "big")
        verity.verify(
            lambda at, n: one_block[at : at + n],
            verity.layout(verity.signed_manifest(signed), len(one_block), len(payload) + len(stored)),
        )
        write("verity", "one-block", one_block)
        damaged = bytearray(one_block)
        damaged[100] ^= 1
        write("verity", "one-block-damaged", bytes(damaged))

        status = json.dumps(SAMPLE).encode()
        if rauc_service_missing() is None:
            (d / "rauc").mkdir()
            with rauc_service(d / "rauc", signer.ca) as box:
                status = box.rauc("status", "--detailed", "--output-format=json").stdout.encode()
        write("raucstatus", "rauc-status", status)
    write("raucstatus", "recorded-1.8", json.dumps(SAMPLE).encode())
    write(
        "raucstatus",
        "escapes",
        json.dumps({"compatible": "x\x1b]0;owned\x07", "slots": [{"a": []}]}).encode(),
    )

    at = datetime(2026, 12, 6, 22, 52, 48, tzinfo=UTC)
    for result in lastresult.RESULTS:
        write(
            "lastresult",
            result,
            lastresult.Result(result, "0.3.0", at, f"{result}: detail").encode().encode(),
        )
    # The health check's input: `mynabox selftest` on the example config (its real refusals), and every part
    # ok beside the optional ones failing, in the lines selftest prints.
    example = resources.files("mynabox").joinpath("data", "config.example.toml")
    with resources.as_file(example) as path:
        done = subprocess.run(
            [sys.executable, "-m", "mynabox.cli", "selftest", "--config", path.name, "--timeout", "1"],
            capture_output=True, timeout=120, check=False, cwd=path.parent,
        )  # fmt: skip
    write("selftest", "example-config", bytes([128 + done.returncode]) + done.stdout)
    from update.test_health import ALL_OK

    optional = "FAIL clock: not synced\nFAIL summary service: timed out\nFAIL broker: refused\n"
    write("selftest", "healthy", bytes([129]) + (ALL_OK + optional).encode())
    write(
        "selftest",
        "reader-missing",
        bytes([129]) + ALL_OK.replace("ok   reader", "FAIL reader: none").encode(),
    )
    write("lastresult", "naive-time", b'{"result": "good", "version": "0.3.0", "at": "2026-12-06T22:52:48"}')
    # A new slot's storage-formats.json: the one this firmware ships, one it must refuse, one inverted.
    shipped = resources.files("mynabox").joinpath("data", "storage-formats.json").read_bytes()
    write("formats", "shipped.json", shipped)
    write("formats", "needs-2.json", b'{"outbox": {"schema": 2, "oldest_reader": 2}}')
    write("formats", "inverted.json", b'{"outbox": {"schema": 1, "oldest_reader": 3}}')


if __name__ == "__main__":
    for old in CORPUS.glob("*/*"):
        if not old.name.startswith("crash-"):  # regression inputs stay
            old.unlink()
    for make in (
        card_session,
        certcheck,
        envelopes,
        summaries,
        pages,
        config,
        audit,
        rig,
        topics,
        vehicle,
        bundle,
        update,
    ):
        make()
    for d in sorted(CORPUS.iterdir()):
        print(d.name, len(list(d.iterdir())), sum(f.stat().st_size for f in d.iterdir()))
