"""`mynabox receive --pages` refuses, with a reason and exit 2, what would serve pages unbounded or open."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from mynabox.commands import receive
from mynabox_testkit.broker import DeliveryKit
from mynabox_testkit.ports import free_port

TLS = ("--page-tls-cert", "{pki}/server.pem", "--page-tls-key", "{pki}/server.key")


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> DeliveryKit:
    return DeliveryKit.create(tmp_path_factory.mktemp("kit"), devices=("amb-1",))


def _run(kit: DeliveryKit, tmp_path: Path, *extra: str) -> int:
    parser = argparse.ArgumentParser()
    receive.add_arguments(parser)
    gw = kit.pki.client(kit.gateway)
    args = parser.parse_args(
        [
            *("--broker", f"127.0.0.1:{free_port()}", "--ca", str(kit.pki.ca_cert)),
            *("--cert", str(gw.cert), "--key", str(gw.key), "--gateway-key", str(kit.gateway_key_file)),
            *("--device-keys", str(kit.device_keys_dir), "--state-dir", str(tmp_path / "gw")),
            *extra,
        ]
    )
    return receive.run(args)


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        (("--pages", "0.0.0.0:0"), "off loopback"),
        (("--pages", "192.0.2.1:0"), "off loopback"),
        (("--pages", "0.0.0.0:0", *TLS), "off loopback"),  # TLS without client certificates
        (("--pages", "0", "--page-tls-cert", "{pki}/server.pem"), "go together"),
        (("--pages", "0", "--page-tls-cert", "{pki}/missing.pem", "--page-tls-key", "{pki}/server.key"),
         "TLS files"),
        (("--pages", "0", "--page-tls-cert", "{pki}/ca.pem", "--page-tls-key", "{pki}/server.key"),
         "TLS files"),
        (("--pages", "0", "--page-retention-hours", "inf"), "pages:"),
        (("--pages", "0", "--page-retention-hours", "nan"), "pages:"),
        (("--pages", "0", "--page-retention-hours", "0"), "positive"),
        (("--pages", "0", "--page-device-mb", "0"), "positive"),
        (("--pages", "0", "--page-total-mb", "-1"), "positive"),
        (("--pages", "0", "--page-max-connections", "0"), "at least 1"),
        (("--pages", "host:port"), "[HOST:]PORT"),
    ],
)  # fmt: skip
def test_refused_with_a_reason(
    kit: DeliveryKit, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: tuple[str, ...], reason: str
) -> None:
    extra = tuple(e.format(pki=kit.pki.dir) for e in extra)
    assert _run(kit, tmp_path, *extra) == 2
    err = capsys.readouterr().err
    assert reason in err and "Traceback" not in err
