"""Produce to and consume from N partitions under a low file-descriptor limit (issue 9 item 11).

    python tools/many_partitions.py [--partitions 10000] [--nofile 1024] [--max-open 256]

Creates one topic with N partitions in a temporary directory, then in a child process
limited to ``--nofile`` descriptors (RLIMIT_NOFILE) sends one record to every partition and
reads every one back with a group-less Consumer, then again with a group consumer (one
member owning all N partitions, committing its offsets). Prints the open descriptors
(counted in /proc/self/fd) after producing and after each consume, and the time each phase
took. A phase that fails (too many open files) is reported with its error instead.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

CHILD = """
import json, os, resource, sys, time
from logq import Consumer, Producer
root, n, nofile, max_open = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
fds = lambda: len(os.listdir("/proc/self/fd"))
out = {"fds_start": fds()}

def consume(key, **kw):
    t = time.perf_counter()
    got = {}
    try:
        with Consumer(root, "t", auto_offset_reset="earliest", max_open_partitions=max_open, **kw) as c:
            while len(got) < n:
                for r in c.poll(5):
                    got[r.partition] = r.value
            out[f"fds_{key}_open"] = fds()
            out[f"{key}_owned"] = len(c.assignment())
            if kw.get("group_id"):
                c.commit()
    except Exception as e:
        out[f"{key}_error"] = f"{type(e).__name__}: {e}"[:300]
    out[f"{key}_s"] = round(time.perf_counter() - t, 2)
    out[f"{key}_all_read"] = all(got.get(i) == b"%d" % i for i in range(n))

t = time.perf_counter()
p = Producer(root, max_open_partitions=max_open)
for i in range(n):
    p.send("t", b"%d" % i, partition=i)
p.flush()
out["fds_producer_open"] = fds()
p.close()
out["produce_s"] = round(time.perf_counter() - t, 2)
consume("consumer")
consume("group_consumer", group_id="g")
print(json.dumps(out))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--partitions", type=int, default=10_000)
    ap.add_argument("--nofile", type=int, default=1024)
    ap.add_argument("--max-open", type=int, default=256)
    args = ap.parse_args()
    from logq import Admin

    with tempfile.TemporaryDirectory() as root:
        t = time.perf_counter()
        with Admin(root) as a:
            a.create_topic("t", partitions=args.partitions)
        create_s = round(time.perf_counter() - t, 2)
        res = subprocess.run(
            [sys.executable, "-c", CHILD, root, str(args.partitions), str(args.nofile), str(args.max_open)],
            capture_output=True,
            text=True,
        )
        if res.returncode != 0:
            sys.exit(res.stderr)
        out = {"partitions": args.partitions, "nofile": args.nofile, "create_s": create_s, **json.loads(res.stdout)}
        print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
