"""What reading and caching a large KB file costs: the content hash of the cache key (several hash
functions, 1 MiB blocks), reading lines with and without the UTF-8 check of
``kgqa_kernels.kb_file.text_lines``, parsing (``read_triples``), and a load from the cache.
Backs the comments on ``kgqa.kb.content_hash`` and ``text_lines``. Best of ``--repeats`` runs,
page cache warm.

    python experiments/kb_file_costs.py [--lines 10000000] [--parse-lines 1000000] [--dir /tmp]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
from pathlib import Path


def best(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def write_triples(path: Path, lines: int) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for start in range(0, lines, 100_000):
            f.write("".join(f"film {i}|starred_actors|actor {(i * 7919) % 1_000_003}\n"
                            for i in range(start, min(lines, start + 100_000))))


def hash_file(path: Path, make) -> None:
    digest, buf = make(), bytearray(1 << 20)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            digest.update(view[:n])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=10_000_000, help="triples in the file that is hashed")
    ap.add_argument("--parse-lines", type=int, default=1_000_000, help="triples in the file that is read and parsed")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dir", default=tempfile.gettempdir())
    args = ap.parse_args()

    from kgqa.kb import KnowledgeBase, content_hash
    from kgqa_kernels.kb_file import read_triples, text_lines

    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        big, small = Path(d) / "big.txt", Path(d) / "small.txt"
        write_triples(big, args.lines)
        write_triples(small, args.parse_lines)
        mb = big.stat().st_size / 1e6
        print(f"hashing {args.lines} triples ({mb:.0f} MB):")
        for name in ("sha256", "sha1", "blake2b", "md5"):
            s = best(lambda: hash_file(big, getattr(hashlib, name)), args.repeats)
            print(f"  {name:8} {mb / s:6.0f} MB/s  ({s:.2f} s)")
        s = best(lambda: content_hash(big), args.repeats)
        print(f"  content_hash (kgqa.kb) {s:.2f} s")

        def plain():
            with open(small, encoding="utf-8") as f:
                for _ in f:
                    pass

        print(f"reading {args.parse_lines} triples ({small.stat().st_size / 1e6:.0f} MB):")
        print(f"  lines, no check        {best(plain, args.repeats):.2f} s")
        print(f"  text_lines             {best(lambda: sum(1 for _ in text_lines(small)), args.repeats):.2f} s")
        print(f"  read_triples           {best(lambda: read_triples(small), args.repeats):.2f} s")
        os.environ["KGQA_CACHE"] = str(Path(d) / "cache")
        KnowledgeBase.load(small)
        print(f"  KnowledgeBase.load, cached (hash included) "
              f"{best(lambda: KnowledgeBase.load(small), args.repeats):.2f} s")


if __name__ == "__main__":
    main()
