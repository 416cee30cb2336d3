"""Child processes of the asyncio multi-process tests: ``python -m tests.aio.children <name> <json args>``."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from logq import AIOConsumer, Producer


async def group_reader(data: str, group: str, out: str, stop_file: str, loop_kind: str) -> None:
    """Read topic "t" as a member of ``group``; append "partition offset value" lines to ``out``
    and the owned partitions to ``out``.assign after every read; stop once ``stop_file`` exists."""
    async with AIOConsumer(data, "t", group_id=group, auto_offset_reset="earliest", session_timeout_ms=1500) as c:
        with open(out, "a") as f:
            while not os.path.exists(stop_file):
                got = await c.getmany(timeout_ms=100)
                for recs in got.values():
                    for r in recs:
                        f.write(f"{r.partition} {r.offset} {r.value.decode()}\n")
                f.flush()
                await c.commit()
                tmp = out + ".assign.tmp"
                with open(tmp, "w") as a:
                    a.write(json.dumps(sorted(tp.partition for tp in c.assignment())))
                os.replace(tmp, out + ".assign")


def produce(data: str, values: list[str], partition: int) -> None:
    with Producer(data, linger_ms=0) as p:
        for v in values:
            p.send("t", v.encode(), partition=partition)


def main(name: str, args: dict[str, Any]) -> None:
    if name == "group_reader":
        kind = args.pop("loop_kind")
        if kind == "uvloop":
            import uvloop

            uvloop.run(group_reader(loop_kind=kind, **args))
        else:
            asyncio.run(group_reader(loop_kind=kind, **args))
    elif name == "produce":
        produce(**args)
    else:
        raise SystemExit(f"unknown child {name!r}")


if __name__ == "__main__":
    main(sys.argv[1], json.loads(sys.argv[2]))
