"""Fuzz target: what first boot reads off the card's FAT partition (fleet/bundle.py, fleet/fatimage.py).

Input: a byte choosing FAT12/16/32, a u16-prefixed directory (the raw 32-byte entries of /mynabox or its
credentials/, as `FatImage.tree_files` reads them to wipe by clusters), a u16-prefixed FAT, then bundle.json.
``dir_entries`` and ``chain`` may never raise and stay within the FAT's clusters; ``parse_manifest`` returns
the id and digests of the expected files or raises BundleError.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from harness import Reader, main


def setup() -> Callable[[bytes], None]:
    from mynabox.fleet.bundle import BundleError, expected_files, parse_manifest
    from mynabox.fleet.fatimage import chain, dir_entries

    def one_input(data: bytes) -> None:
        r = Reader(data)
        bits = (12, 16, 32)[r.byte() % 3]
        directory, fat = r.chunk(), r.chunk()
        clusters = len(fat) * 8 // bits
        for entry in dir_entries(directory, bits):
            clusters_of = chain(fat, bits, entry.start, clusters)
            assert len(clusters_of) == len(set(clusters_of))
            assert all(2 <= c < clusters + 2 for c in clusters_of)
        try:
            bundle_id, digests = parse_manifest(r.rest())
        except BundleError as err:
            str(err)
            return
        assert set(digests) == expected_files() and len(bundle_id) == 32

    return one_input


if __name__ == "__main__":
    main(setup)
    sys.exit(0)
