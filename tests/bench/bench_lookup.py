"""Summary lookup figures: HTTPS+mTLS round trip to the reference service on loopback, strict parsing and
flag derivation. Prints figures; asserts nothing. Last line: JSON."""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from datetime import date

from mynabox.adapters.summary_client import HttpsSummaryClient
from mynabox.summary.flags import derive_flags
from mynabox.summary.model import Summary
from mynabox.summary.port import Found
from mynabox.testing import patients
from mynabox.testing.refsvc import ReferenceService
from mynabox.testing.tlsfiles import certificate_with_cn, make_test_pki

ROUNDS = 200


def p(values: list[float], q: float) -> float:
    return round(sorted(values)[min(len(values) - 1, int(q * len(values)))], 3)


def main() -> None:
    today = date.today()
    with tempfile.TemporaryDirectory() as d:
        pki = make_test_pki(d)
        files = pki.client("device-1")
        with ReferenceService(
            cert_file=pki.server_cert, key_file=pki.server_key, client_ca_file=pki.ca_cert
        ) as service:
            client = HttpsSummaryClient(
                service.base_url, ca_file=pki.ca_cert, client_cert=files.cert, client_key=files.key
            )
            cert = certificate_with_cn(patients.patient("warfarin-elderly").card_id)
            lookups = []
            for _ in range(ROUNDS):
                t = time.perf_counter()
                result = client.lookup(cert)
                lookups.append((time.perf_counter() - t) * 1000)
                if not isinstance(result, Found):
                    raise SystemExit(f"lookup failed: {result}")
    summary = patients.summary_for(patients.patient("dialysis"), today)
    assert summary is not None
    text = json.dumps(summary.to_json(), ensure_ascii=False)
    parse, flags = [], []
    for _ in range(ROUNDS):
        t = time.perf_counter()
        Summary.from_json(json.loads(text))
        parse.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        derive_flags(summary, today=today)
        flags.append((time.perf_counter() - t) * 1000)
    figures = {
        "lookup_ms_p50": round(statistics.median(lookups), 3),
        "lookup_ms_p95": p(lookups, 0.95),
        "summary_parse_ms_p50": round(statistics.median(parse), 3),
        "derive_flags_ms_p50": round(statistics.median(flags), 3),
        "summary_json_bytes": len(text.encode()),
    }
    print(f"summary lookup over HTTPS+mTLS on loopback, {ROUNDS} rounds, new connection each")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
