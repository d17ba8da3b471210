"""Check an adaptive archive's ``compression`` record against its bytes (tests only).

The record says ``block_bytes`` and how many blocks used each level. Cut the CSV into
those blocks, compress each one again at every level of the codec's ladder (gzip: primed
with the previous block's last 32 KiB) and find which one produced exactly the next
bytes of the archive. Two levels can give the very same bytes (a tiny tail block, say):
such a block may count for either, so the record matches when the blocks can be assigned
to its counts (a bipartite matching). Returns ``levels_used`` when it matches the bytes.
"""

from __future__ import annotations

import struct
import zlib

from tableship.archive.adaptive import LADDERS, compress_block


def check_record(blob: bytes, csv: bytes, record: dict) -> dict[str, int]:
    codec, size = record["codec"], record["block_bytes"]
    blocks = [csv[i : i + size] for i in range(0, len(csv), size)] or ([b""] if codec == "zstd" else [])
    pos = 10 if codec == "gzip" else 0
    if codec == "gzip":
        assert blob[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    candidates: list[set[str]] = []  # per block: the levels that give exactly its bytes
    prev = b""
    for n, block in enumerate(blocks):
        zdict = memoryview(prev)[-32768:] if codec == "gzip" else b""
        found, length = set(), None
        for level in LADDERS[codec]:
            data, _ = compress_block(codec, level, block, zdict)
            if blob[pos : pos + len(data)] == data and length in (None, len(data)):
                found.add(str(level))
                length = len(data)
        if not found:
            raise AssertionError(f"block {n} was not compressed at any level of {LADDERS[codec]}")
        candidates.append(found)
        pos += length
        prev = block
    if codec == "gzip":
        assert blob[pos:] == b"\x03\x00" + struct.pack("<II", zlib.crc32(csv), len(csv) & 0xFFFFFFFF)
    else:
        assert pos == len(blob)
    slots = [level for level, k in sorted(record["levels_used"].items()) for _ in range(k)]
    if len(slots) != len(candidates):
        raise AssertionError(f"{len(candidates)} blocks in the archive, the record counts {len(slots)}")
    if not _assignable(candidates, slots):
        raise AssertionError(
            f"the blocks' levels {candidates} do not match the record {record['levels_used']}"
        )
    return dict(record["levels_used"])


def _assignable(candidates: list[set[str]], slots: list[str]) -> bool:
    """Can every block take a distinct slot whose level it matches? (Kuhn's matching)"""
    owner: list[int | None] = [None] * len(slots)

    def place(b: int, seen: set[int]) -> bool:
        for s, level in enumerate(slots):
            if level in candidates[b] and s not in seen:
                seen.add(s)
                if owner[s] is None or place(owner[s], seen):
                    owner[s] = b
                    return True
        return False

    return all(place(b, set()) for b in range(len(candidates)))
