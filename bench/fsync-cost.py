#!/usr/bin/env python3
"""What one group commit costs this machine's kernel and disk, without credgate.

    python3 bench/fsync-cost.py [DIR]

Writes records of 1, 4, 12, 40 and 120 KiB into a preallocated, fsynced
file of zeros (as the embedded log's write-ahead file is) and fdatasyncs
after each, 300 times per size; prints the CPU time (user + system, this
process) and the wall time per commit. The fixed part is what a larger
batch would save per entry; the per-KiB part is what it would not.

DIR defaults to a new temporary directory under /tmp (the log's data
directory is the one that matters: pass a directory on its file system).
About 100 MiB is written and removed; it takes a few seconds.
"""

import os
import resource
import sys
import tempfile
import time

SIZES_KIB = (1, 4, 12, 40, 120)
COMMITS = 300


def main() -> None:
    parent = sys.argv[1] if len(sys.argv) > 1 else None
    with tempfile.TemporaryDirectory(prefix="credgate-fsync-", dir=parent) as d:
        path = os.path.join(d, "wal")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            zeros = b"\0" * (1 << 20)
            need = sum(SIZES_KIB) * 1024 * COMMITS
            for _ in range(need // len(zeros) + 1):
                os.write(fd, zeros)
            os.fsync(fd)
            off = 0
            print(f"{COMMITS} commits per size, file on {d}")
            for kib in SIZES_KIB:
                rec = b"x" * (kib * 1024)
                r0 = resource.getrusage(resource.RUSAGE_SELF)
                t0 = time.perf_counter()
                for _ in range(COMMITS):
                    os.pwrite(fd, rec, off)
                    off += len(rec)
                    os.fdatasync(fd)
                t1 = time.perf_counter()
                r1 = resource.getrusage(resource.RUSAGE_SELF)
                cpu = (r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime) / COMMITS * 1e6
                wall = (t1 - t0) / COMMITS * 1e6
                print(
                    f"{kib:4d} KiB per commit: CPU {cpu:6.1f} µs ({cpu / kib:6.2f} µs per KiB), "
                    f"wall {wall:6.0f} µs"
                )
        finally:
            os.close(fd)


if __name__ == "__main__":
    main()
