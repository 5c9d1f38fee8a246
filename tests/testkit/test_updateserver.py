"""The test kit's update server over real HTTPS on loopback: range requests as RAUC's streaming makes them
(curl, the library RAUC streams with), client certificates of the fleet's CA only, bytes counted."""

from __future__ import annotations

import http.client
import random
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mynabox_testkit.tlsfiles import TestPki, make_test_pki
from mynabox_testkit.updateserver import UpdateServer

SIZE = 300_000


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return make_test_pki(tmp_path_factory.mktemp("pki"), clients=("box-1",))


@pytest.fixture
def served(tmp_path: Path, pki: TestPki) -> Iterator[tuple[UpdateServer, bytes]]:
    root = tmp_path / "www"
    root.mkdir()
    data = random.Random(7).randbytes(SIZE)
    (root / "b.raucb").write_bytes(data)
    (root / ".hidden").write_bytes(b"x")
    with UpdateServer(root, cert=pki.server_cert, key=pki.server_key, client_ca=pki.ca_cert) as server:
        yield server, data


def client(pki: TestPki, server: UpdateServer, *, cert: bool = True) -> http.client.HTTPSConnection:
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    if cert:
        me = pki.client("box-1")
        context.load_cert_chain(me.cert, me.key)
    return http.client.HTTPSConnection("127.0.0.1", server.port, context=context, timeout=10)


def get(conn: http.client.HTTPSConnection, path: str, range_: str | None = None) -> http.client.HTTPResponse:
    conn.request("GET", path, headers={"Range": range_} if range_ else {})
    return conn.getresponse()


def test_ranges_on_one_kept_alive_connection(served: tuple[UpdateServer, bytes], pki: TestPki) -> None:
    server, data = served
    conn = client(pki, server)
    answer = get(conn, "/b.raucb", "bytes=0-3")  # RAUC's first request: the size from Content-Range
    assert answer.status == 206 and answer.read() == data[:4]
    assert answer.getheader("Content-Range") == f"bytes 0-3/{SIZE}"
    answer = get(conn, "/b.raucb", "bytes=1000-")
    assert answer.status == 206 and answer.read() == data[1000:]
    answer = get(conn, "/b.raucb", "bytes=-10")
    assert answer.status == 206 and answer.read() == data[-10:]
    answer = get(conn, "/b.raucb", f"bytes=10-{SIZE * 2}")  # clipped at the end
    assert answer.status == 206 and answer.read() == data[10:]
    assert server.sent("b.raucb") == 4 + (SIZE - 1000) + 10 + (SIZE - 10)
    assert server.requests("b.raucb") == 4
    conn.close()


def test_whole_file_unsatisfiable_and_odd_ranges(served: tuple[UpdateServer, bytes], pki: TestPki) -> None:
    server, data = served
    conn = client(pki, server)
    answer = get(conn, "/b.raucb")
    assert answer.status == 200 and answer.read() == data
    answer = get(conn, "/b.raucb", f"bytes={SIZE}-")
    assert answer.status == 416 and answer.getheader("Content-Range") == f"bytes */{SIZE}"
    answer.read()
    for odd in ("bytes=0-1,5-9", "lines=1-2", "bytes=9-2x", "bytes=-"):
        answer = get(conn, "/b.raucb", odd)
        assert answer.status == 200 and answer.read() == data, odd  # ignored: the whole file
    for bad in ("/.hidden", "/../b.raucb", "/nope.raucb", "/sub/b.raucb", "/%2e%2e/etc/passwd"):
        answer = get(conn, bad)
        assert answer.status == 404, bad
        answer.read()
    assert server.sent("b.raucb") == 5 * SIZE
    conn.close()


def test_no_client_certificate_no_bytes(served: tuple[UpdateServer, bytes], pki: TestPki) -> None:
    server, _ = served
    conn = client(pki, server, cert=False)
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        get(conn, "/b.raucb").read()
    conn.close()
    assert server.sent("b.raucb") == 0


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl missing")
def test_curl_reads_ranges_with_the_box_certificate(
    served: tuple[UpdateServer, bytes], pki: TestPki, tmp_path: Path
) -> None:
    server, data = served
    me = pki.client("box-1")
    out = tmp_path / "part"
    subprocess.run(
        ["curl", "-sS", "--fail", "--cacert", str(pki.ca_cert), "--cert", str(me.cert), "--key", str(me.key),
         "--range", "4096-8191", "-o", str(out), server.url("b.raucb")],
        check=True, timeout=30,
    )  # fmt: skip
    assert out.read_bytes() == data[4096:8192]
    assert server.sent("b.raucb") == 4096
