"""Fuzz target: a verity bundle's layout, CMS-wrapped signed manifest and hash tree (update/verity.py), read
from the bundle file as `update check-bundle` / `install` read it (commands/update.py `_check_payload`).

Input: the whole bundle file. Only VerityError escapes; reads stay inside the file; a bundle that passes has
a payload whose tree is the stored one and whose root is the signed one.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from harness import main


def setup() -> Callable[[bytes], None]:
    from mynabox.update import verity

    def one_input(data: bytes) -> None:
        size = len(data)
        spent = 0

        def read(at: int, count: int) -> bytes:
            nonlocal spent
            assert 0 <= at <= size and count >= 0
            spent += count
            assert spent <= 2 * size + verity.BLOCK, "reads more than the file"
            return data[at : at + count]

        try:
            offset, length = verity.signature_span(size, data[max(0, size - 8) :])
            assert offset >= 0 and offset + length + 8 == size
            lay = verity.layout(verity.signed_manifest(data[offset : offset + length]), size, offset)
            assert lay.data_size + lay.hash_size == offset
            verity.verify(read, lay)
        except verity.VerityError as err:
            assert 0 < len(str(err)) <= 200
            return
        stored, root = verity.tree(read, lay.data_size, lay.salt)
        assert root == lay.root_hash and stored == data[lay.data_size : offset]

    return one_input


if __name__ == "__main__":
    main(setup)
    sys.exit(0)
