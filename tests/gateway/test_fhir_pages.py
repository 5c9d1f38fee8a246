"""The page server hands out each summary's FHIR Bundle beside its page: /m/<id>.fhir.json."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
from fhir.resources.R4B.bundle import Bundle

from gateway.conftest import NOW, seal_and_open  # tests/ is on sys.path
from mynabox.gateway.pages import PageServer, PageStore
from mynabox_testkit.messages import patient_body
from mynabox_testkit.patients import patient


def test_the_page_server_serves_a_summary_as_fhir() -> None:
    store = PageStore(retention=timedelta(hours=24), clock=lambda: NOW)
    summary = seal_and_open(*patient_body(patient("dialysis"), NOW)[:2])
    card = seal_and_open(*patient_body(patient("not-registered"), NOW)[:2])
    store.add(summary)
    store.add(card)
    server = PageServer(store)
    server.start()
    base = f"http://127.0.0.1:{server.port}/m/"
    try:
        with urllib.request.urlopen(f"{base}{summary.message_id}", timeout=10) as response:
            link = re.search(r'<a href="([0-9a-f]{32}\.fhir\.json)" download>', response.read().decode())
        assert link is not None and link.group(1) == f"{summary.message_id}.fhir.json"  # the page links it
        with urllib.request.urlopen(f"{base}{link.group(1)}", timeout=10) as response:
            assert response.headers["Content-Type"].startswith("application/fhir+json")
            doc = json.loads(response.read())
        bundle = Bundle.model_validate(doc)
        assert bundle.identifier is not None and bundle.identifier.value == summary.message_id
        for missing in (card.message_id, "0" * 32):  # a card record has none; nor has an unknown id
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(f"{base}{missing}.fhir.json", timeout=10)
            assert err.value.code == 404
    finally:
        server.stop()
