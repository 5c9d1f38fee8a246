"""The virtual card through the real pcscd (vpcd), read by our reader and by OpenSC as a peer."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from mynabox.adapters.pcsc import PcscReader
from mynabox.card.jpki import read_auth_certificate
from mynabox.card.session import run
from mynabox_testkit import testca
from mynabox_testkit.mynacard import VirtualMyNumberCard
from mynabox_testkit.pcscd import PrivatePcscd
from mynabox_testkit.vpcd import VpcdCardServer

CARD = "VPCDTESTCARD00000000001"
pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def pcscd() -> Iterator[PrivatePcscd]:
    with PrivatePcscd() as daemon:
        daemon.use_in_process()
        yield daemon


def test_our_reader_reads_the_virtual_card_in_four_apdus(pcscd: PrivatePcscd) -> None:
    card = VirtualMyNumberCard(CARD)
    with VpcdCardServer(card, port=pcscd.vpcd_port), PcscReader() as reader:
        connected = reader.wait_for_card(timeout=10)
        assert connected is not None
        with connected:
            assert connected.atr == card.atr
            result = run(read_auth_certificate(), connected)
    assert result.certificate == testca.auth_certificate(CARD)
    assert result.apdus == card.apdu_count == 4  # SELECT, token, 256 bytes, the rest


def test_opensc_reads_it_as_a_jpki_card(pcscd: PrivatePcscd) -> None:
    card = VirtualMyNumberCard(CARD)
    with VpcdCardServer(card, port=pcscd.vpcd_port):
        env = dict(os.environ, **pcscd.env)
        out = None
        for _ in range(20):  # pcscd notices the card on its next presence poll
            out = subprocess.run(
                ["pkcs15-tool", "--read-certificate", "01"],
                check=False,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            if out.returncode == 0:
                break
            time.sleep(0.25)
        assert out is not None and out.returncode == 0, out.stderr
    pem = out.stdout[out.stdout.index("-----BEGIN CERTIFICATE-----") :].encode()
    assert x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER) == testca.auth_certificate(CARD)
    # OpenSC probes other card types first, then reads 000A in 256-byte chunks.
    assert card.apdu_count > 10


def test_vcard_command_serves_a_patient_card(pcscd: PrivatePcscd) -> None:
    pcscd.wait_empty()
    proc = subprocess.Popen(
        [".venv/bin/mynabox", "vcard", "--port", str(pcscd.vpcd_port), "--patient", "dialysis"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with PcscReader() as reader:
            connected = reader.wait_for_card(timeout=15)
            assert connected is not None
            with connected:
                result = run(read_auth_certificate(), connected)
        from mynabox_testkit.patients import patient

        assert result.certificate == testca.auth_certificate(patient("dialysis").card_id)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert patient("dialysis").card_id not in out + err  # only a short hash is printed
