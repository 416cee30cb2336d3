#!/usr/bin/env python3
"""The long reliability tier of the storage core (reliability.md section 9, "soak").

Runs the same harness as tests/storage/test_crash.py, tests/storage/test_multiprocess.py and
tests/storage/test_power_cut.py (tests/support/harness.py), many times over, and prints the figures:

  t1         kill -9 battery: random kills and every LOGQ_CRASH_AT site >= 20 times
  recovery   crashes during recovery, at every recovery site
  contention writer processes sharing a partition, one killed every few seconds
  t9         reader processes under rolls, retention and recovery truncation
  t2         power cuts on loop-mounted ext4 (and XFS if mkfs.xfs is installed):
             fsync="always" (no loss allowed), the default mode (loss window reported),
             and the negative control (fdatasync disabled: loss must be detected)
  t6         full disk on a 1 MiB tmpfs

t2 and t6 need root (they mount inside a private mount namespace) and are skipped, with
the reason, otherwise. Exit status 1 if any check failed.

    python tools/soak.py                    # everything, default sizes (about 30-45 min)
    python tools/soak.py --only t1,t9 --kills 400
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # run as a script: the repository root holds the tests package
    sys.path.insert(0, REPO)
from tests.support import harness as h  # noqa: E402

KIB = 1024
T1_CONFIGS: dict[str, dict[str, Any]] = {
    "seg64k": dict(segment_bytes=64 * KIB, index_interval_bytes=512),
    "seg256k-retention": dict(segment_bytes=256 * KIB, index_interval_bytes=512, retention_bytes=768 * KIB),
    "seg1m-interval-flush": dict(
        segment_bytes=1024 * KIB, index_interval_bytes=512, fsync="interval", fsync_interval_ms=50
    ),
    "seg128k-always": dict(segment_bytes=128 * KIB, index_interval_bytes=512, fsync="always"),
}
RETENTION_CFG = dict(segment_bytes=64 * KIB, index_interval_bytes=512, retention_bytes=192 * KIB)
WRITER_SITES = {
    "append-after-write": (T1_CONFIGS["seg64k"], 300),
    "roll-after-seal": (T1_CONFIGS["seg64k"], 12),
    "roll-after-create": (T1_CONFIGS["seg64k"], 12),
    "retention-after-state": (RETENTION_CFG, 6),
    "retention-after-unlink": (RETENTION_CFG, 6),
    "meta-before-rename": (RETENTION_CFG, 12),
}
CHAIN = 10  # kills per directory before starting afresh (checks reread the whole log)

failures: list[str] = []


def say(msg: str) -> None:
    print(msg, flush=True)


def fail(section: str, problems: list[str]) -> None:
    for p in problems[:10]:
        failures.append(f"{section}: {p}")
        say(f"  FAIL {p}")


def section_t1(work: str, kills: int, per_site: int, seed: int) -> None:
    say(f"\n== T1 kill -9 battery: {kills} kills, each of {len(WRITER_SITES)} sites {per_site} times among them")
    rng = random.Random(seed)
    total = h.CycleStats()
    plan: list[tuple] = []
    for site, (cfg, max_n) in WRITER_SITES.items():
        plan += [(site, cfg, max_n)] * per_site
    names = sorted(T1_CONFIGS)
    while len(plan) < kills:
        plan.append((None, T1_CONFIGS[names[len(plan) % len(names)]], 0))
    rng.shuffle(plan)
    groups: dict[tuple, int] = {}
    for site, cfg, max_n in plan:
        key = (site, tuple(sorted(cfg.items())), max_n)
        groups[key] = groups.get(key, 0) + 1
    t0 = time.monotonic()
    n = 0
    for (site, cfg_items, max_n), count in sorted(groups.items(), key=lambda kv: str(kv[0])):
        cfg = dict(cfg_items)
        while count > 0:
            k = min(CHAIN, count)
            d = tempfile.mkdtemp(prefix="t1-", dir=work)
            st = h.kill_chain(
                os.path.join(d, "t-0"),
                cfg,
                kills=k,
                seed=rng.randrange(1 << 30),
                logdir=d,
                site=site,
                site_max_n=max_n or 40,
                retention="retention_bytes" in cfg,
            )
            total.merge(st)
            n += st.kills
            if st.problems:
                fail("t1", st.problems)
            else:
                shutil.rmtree(d, ignore_errors=True)
            count -= k
            say(
                f"  {n}/{kills} kills, {total.acked_records} acked records, lost {total.lost_records}, "
                f"{time.monotonic() - t0:.0f} s"
            )
    say(
        f"T1: {total.kills} kills ({sum(total.targeted.values())} targeted: "
        + ", ".join(f"{s} {c}" for s, c in sorted(total.targeted.items()))
        + ")"
    )
    say(
        f"T1: {total.lost_records} lost of {total.acked_records} acked records ({total.acked_batches} batches); "
        f"{total.retained_away} acked batches later removed by retention; {total.torn_tails} torn tails cut"
    )
    say(
        f"T1: recovery p50={h.percentile(total.recovery_ms, 50):.1f} ms p99={h.percentile(total.recovery_ms, 99):.1f} ms "
        f"max={max(total.recovery_ms or [0]):.1f} ms; violations of C1-C5/C7: {len(total.problems)}"
    )


def section_recovery(work: str, per_site: int, seed: int) -> None:
    say(f"\n== crashes during recovery: every recovery site {per_site} times, plus chained crashes")
    rng = random.Random(seed)
    bad = 0
    runs = 0
    for site in h.RECOVERY_SITES:
        for _ in range(per_site):
            d = tempfile.mkdtemp(prefix="rec-", dir=work)
            cfg = T1_CONFIGS[rng.choice(sorted(T1_CONFIGS))]
            problems = h.recovery_crash_cycle(os.path.join(d, "t-0"), cfg, [site], rng, d)
            runs += 1
            if problems:
                bad += 1
                fail(f"recovery/{site}", problems)
            else:
                shutil.rmtree(d, ignore_errors=True)
    for _ in range(per_site):
        d = tempfile.mkdtemp(prefix="rec-", dir=work)
        chosen = set(rng.sample(list(h.RECOVERY_SITES), rng.randint(2, len(h.RECOVERY_SITES))))
        sites = [s for s in h.RECOVERY_SITES if s in chosen]  # in the order recovery reaches them
        problems = h.recovery_crash_cycle(os.path.join(d, "t-0"), T1_CONFIGS["seg64k"], sites, rng, d)
        runs += 1
        if problems:
            bad += 1
            fail("recovery/chained", problems)
        else:
            shutil.rmtree(d, ignore_errors=True)
    say(f"recovery crashes: {runs} runs, {bad} differed from an uninterrupted recovery or lost data")


def section_contention(work: str, seconds: float, seed: int) -> None:
    say(
        f"\n== contention: 3 writer processes + follower, {seconds:.0f} s fault-free, then {seconds:.0f} s "
        f"with a writer killed every 1-3 s"
    )
    for label, kill in (("fault-free", None), ("with kills", (1.0, 3.0))):
        d = tempfile.mkdtemp(prefix="t5-", dir=work)
        res = h.contention_run(
            os.path.join(d, "t-0"),
            dict(segment_bytes=128 * KIB, index_interval_bytes=512),
            seconds=seconds,
            writers=3,
            seed=seed,
            logdir=d,
            kill_every_s=kill,
        )
        say(
            f"contention {label}: writers={res['writers']} killed={res['killed']} torn={res['torn']} "
            f"acked={res['acked_records']} records ({res['acked_batches']} batches) "
            f"unacknowledged batches kept={res['unacked_batches']} problems={len(res['problems'])}"
        )
        if res["problems"]:
            fail(f"contention/{label}", res["problems"])
        else:
            shutil.rmtree(d, ignore_errors=True)


def section_t9(work: str, generations: int, seed: int) -> None:
    say(f"\n== T9: 3 reader processes under {generations} writer generations (roll, retention, recovery truncation)")
    d = tempfile.mkdtemp(prefix="t9-", dir=work)
    cfg = dict(segment_bytes=64 * KIB, index_interval_bytes=512, retention_bytes=256 * KIB)
    res = h.readers_under_churn(
        os.path.join(d, "t-0"), cfg, generations=generations, readers=3, seed=seed, logdir=d, kill_s=(0.05, 0.6)
    )
    c = res["counts"]
    say(
        f"T9: generations={res['generations']} recovery truncations={res['truncations']} reads={c.get('reads')} "
        f"batches={c.get('batches')} out_of_range={c.get('out_of_range')} reopens={c.get('opens')} "
        f"SIGBUS/SIGSEGV={res['fatal_signals']} other errors={len(res['problems'])}"
    )
    if res["problems"] or res["fatal_signals"]:
        fail("t9", res["problems"])
    else:
        shutil.rmtree(d, ignore_errors=True)


def _cut_figures(label: str, res: dict[str, Any], must_lose_nothing: bool, must_lose: bool) -> None:
    if "skip" in res:
        say(f"{label}: skipped ({res['skip']})")
        return
    if "error" in res:
        fail(label, [f"{res['error']}: {res.get('stderr', '')[-800:]}"])
        return
    cuts = res["cuts"]
    lost = [c["lost_records"] for c in cuts]
    acked = sum(c["acked_records"] for c in cuts)
    integrity = [f"cut {i}: {p}" for i, c in enumerate(cuts) for p in c["problems"]]
    integrity += [
        f"cut {i}: {c['holes']} acked batches missing below the recovered end" for i, c in enumerate(cuts) if c["holes"]
    ]
    integrity += [f"cut {i}: not idempotent" for i, c in enumerate(cuts) if not c["idempotent"]]
    say(
        f"{label}: cuts={len(cuts)} acked={acked} lost={sum(lost)} (per cut median {statistics.median(lost) if lost else 0}, "
        f"max {max(lost or [0])}) recovery p50={h.percentile([c['recovery_ms'] for c in cuts], 50):.1f} ms "
        f"integrity violations={len(integrity)}"
    )
    if integrity:
        fail(label, integrity)
    if must_lose_nothing and sum(lost):
        fail(label, [f"{sum(lost)} acknowledged records lost with fsync=always"])
    if must_lose and not sum(lost):
        fail(label, ["the negative control lost nothing: the harness would not see a missing fdatasync"])


def section_t2(work: str, cuts: int, d0_cuts: int, neg_cuts: int, seed: int) -> None:
    say(
        f"\n== T2 power cuts: {cuts} with fsync=always, {d0_cuts} in the default mode, {neg_cuts} negative controls, per filesystem"
    )
    d1 = dict(segment_bytes=64 * KIB, index_interval_bytes=512, fsync="always")
    d0 = dict(segment_bytes=64 * KIB, index_interval_bytes=512)
    for fs, mb in (("ext4", 64), ("xfs", 320)):
        for label, cfg, n, kw, nothing, some in (
            ("D1 fsync=always", d1, cuts, {}, True, False),
            ("D0 default", d0, d0_cuts, {}, False, False),
            ("negative control (no fdatasync)", d1, neg_cuts, {"disable_fdatasync": True}, False, True),
        ):
            if n <= 0:
                continue
            d = tempfile.mkdtemp(prefix=f"t2-{fs}-", dir=work)
            res = h.in_namespace(
                "power_cut", {"work": d, "cuts": n, "seed": seed, "config": cfg, "fs": fs, "image_mb": mb, **kw}
            )
            _cut_figures(f"T2 {fs} {label}", res, nothing, some)
            shutil.rmtree(d, ignore_errors=True)


def section_t6(work: str, cycles: int, seed: int) -> None:
    say(f"\n== T6.1 full disk: {cycles} fill/free cycles on a 1 MiB tmpfs")
    d = tempfile.mkdtemp(prefix="t6-", dir=work)
    res = h.in_namespace("full_disk", {"mnt": os.path.join(d, "mnt"), "cycles": cycles, "seed": seed, "size": "1m"})
    if "skip" in res:
        say(f"T6.1: skipped ({res['skip']})")
        return
    if res.get("rc") in h.FATAL_SIGNAL_RCS:
        fail("t6", [f"died of signal {-res['rc']} (SIGBUS is 7)"])
        return
    if "error" in res:
        fail("t6", [f"{res['error']}: {res.get('stderr', '')[-800:]}"])
        return
    st = res["stats"]
    say(
        f"T6.1: cycles={st['cycles']} DiskFullError={st['disk_full_errors']} resumed={st['resumed']} "
        f"acked={st['acked_records']} records, retention at 100% full refused {st['retention_at_full_refused']} "
        f"times (the state file needs a page) / ok {st['retention_at_full_ok']}; SIGBUS=0; problems={len(res['problems'])}"
    )
    if res["problems"]:
        fail("t6", res["problems"])
    shutil.rmtree(d, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="t1,recovery,contention,t9,t2,t6", help="comma-separated sections")
    ap.add_argument("--kills", type=int, default=200)
    ap.add_argument("--per-site", type=int, default=20, help="targeted kills per LOGQ_CRASH_AT site")
    ap.add_argument("--recovery-per-site", type=int, default=20)
    ap.add_argument("--contention-seconds", type=float, default=60)
    ap.add_argument("--t9-generations", type=int, default=300)
    ap.add_argument("--cuts", type=int, default=100, help="fsync=always power cuts per filesystem")
    ap.add_argument("--d0-cuts", type=int, default=30)
    ap.add_argument("--negative-cuts", type=int, default=10)
    ap.add_argument("--full-disk-cycles", type=int, default=50)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--workdir", default=None, help="where to put the data (default: a new temporary directory)")
    args = ap.parse_args()
    only = set(args.only.split(","))
    work = args.workdir or tempfile.mkdtemp(prefix="logq-soak-")
    os.makedirs(work, exist_ok=True)
    say(f"logq soak: seed={args.seed} work={work} sections={','.join(sorted(only))}")
    t0 = time.monotonic()
    if "t1" in only:
        section_t1(work, args.kills, args.per_site, args.seed)
    if "recovery" in only:
        section_recovery(work, args.recovery_per_site, args.seed)
    if "contention" in only:
        section_contention(work, args.contention_seconds, args.seed)
    if "t9" in only:
        section_t9(work, args.t9_generations, args.seed)
    if "t2" in only:
        section_t2(work, args.cuts, args.d0_cuts, args.negative_cuts, args.seed)
    if "t6" in only:
        section_t6(work, args.full_disk_cycles, args.seed)
    say(f"\nsoak finished in {time.monotonic() - t0:.0f} s: {len(failures)} failures (seed {args.seed})")
    for f in failures[:40]:
        say(f"  {f}")
    if not failures and not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
