"""The verity payload check on synthetic layouts (real RAUC bundles: tests/update/test_bundle.py)."""

from __future__ import annotations

import random

import pytest

from mynabox.update import verity

SALT = bytes(range(32))


def bundle_parts(blocks: int) -> tuple[bytes, verity.Layout]:
    data = random.Random(blocks).randbytes(blocks * verity.BLOCK)
    stored, root = verity.tree(lambda at, n: data[at : at + n], len(data), SALT)
    assert len(stored) == verity.tree_size(blocks) * verity.BLOCK
    return data + stored, verity.Layout(len(data), len(stored), root, SALT)


@pytest.mark.parametrize("blocks", [1, 128, 129, 128 * 128 + 1])
def test_trees_of_one_to_three_levels_verify(blocks: int) -> None:
    image, lay = bundle_parts(blocks)
    verity.verify(lambda at, n: image[at : at + n], lay)


def test_a_payload_rehashed_consistently_still_fails_the_signed_root() -> None:
    image, lay = bundle_parts(200)
    forged = bytearray(image[: lay.data_size])
    forged[5000] ^= 1
    stored, _ = verity.tree(lambda at, n: bytes(forged[at : at + n]), len(forged), SALT)
    fake = bytes(forged) + stored
    with pytest.raises(verity.VerityError, match="signed root hash"):
        verity.verify(lambda at, n: fake[at : at + n], lay)


def test_layout_and_signature_are_checked() -> None:
    with pytest.raises(verity.VerityError):
        verity.signature_span(100, (200).to_bytes(8, "big"))
    with pytest.raises(verity.VerityError):
        verity.signed_manifest(b"\x30\x03\x06\x01\x00")
    manifest = f"[bundle]\nformat=verity\nverity-hash={'00' * 32}\nverity-salt=01\nverity-size=4096\n"
    assert verity.layout(manifest, 10_000, 8192).data_size == 4096
    wrong_size = manifest.replace("verity-size=4096", "verity-size=8192")
    for bad in (
        wrong_size,
        manifest.replace("=verity\n", "=plain\n"),
        "[bundle]\nformat=verity\n",
        "not ini",
    ):
        with pytest.raises(verity.VerityError):
            verity.layout(bad, 10_000, 8192)
