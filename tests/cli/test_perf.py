"""The benchmark harness: `logq perf` output shapes, the benchmark suites, the peer
comparison (benchmarks/compare.py), the plot tool.

Nothing here checks a timing: figures depend on the machine. What is checked is that every
benchmark runs (once, on tiny sizes), that each command's output parses into the shape of
the Kafka tool it copies (or into JSON), and that counts add up.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from logq.cli import main
from logq.cli.options import TerminalProgress
from logq.cli.perf import CONSUMER_HEADER, latency_line
from logq.client.admin import Admin

from tests import support

ROOT = support.REPO
NUM = r"[0-9]+(?:\.[0-9]+)?"
WINDOW = re.compile(
    rf"^(\d+) records sent, ({NUM}) records/sec \(({NUM}) MB/sec\), ({NUM}) ms avg latency, ({NUM}) ms max latency\.$"
)
TOTAL = re.compile(
    rf"^(\d+) records sent, ({NUM}) records/sec \(({NUM}) MB/sec\), ({NUM}) ms avg latency, ({NUM}) ms max latency, "
    rf"({NUM}) ms 50th, ({NUM}) ms 95th, ({NUM}) ms 99th, ({NUM}) ms 99\.9th\.$"
)
STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d:\d{3}"


def run(*args: str, data: Path | None = None) -> object:
    argv = (["--data", str(data)] if data is not None else []) + ["perf", *args]
    return CliRunner().invoke(main, argv, catch_exceptions=False)


def compare(*args: str) -> subprocess.CompletedProcess:
    """benchmarks/compare.py run as `make compare` runs it: a script, from the repository root."""
    return subprocess.run(
        [sys.executable, "benchmarks/compare.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def _load(relpath: str):
    """A script outside the package (benchmarks/, tools/), imported from its file."""
    path = ROOT / relpath
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# --------------------------------------------------------------------------- benchmark suites
def test_every_benchmark_runs_once_on_tiny_sizes() -> None:
    env = dict(os.environ, LOGQ_BENCH_SCALE="tiny")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks", "-v", "-p", "no:cacheprovider", "--benchmark-disable"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    passed = set(re.findall(r"^benchmarks/(bench_\w+)\.py::\S+ PASSED", proc.stdout, re.M))
    files = {p.stem for p in (ROOT / "benchmarks").glob("bench_*.py")}
    assert {
        "bench_codec",
        "bench_index",
        "bench_segment",
        "bench_log",
        "bench_producer",
        "bench_consumer",
        "bench_commit",
        "bench_recovery",
    } <= files
    assert passed == files
    assert "recovery" in proc.stdout and "tail" in proc.stdout


def test_benchmarks_are_not_collected_by_the_test_suite() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert conf["testpaths"] == ["tests"]
    assert not list((ROOT / "benchmarks").glob("test_*.py"))


# --------------------------------------------------------------------------- produce
@pytest.mark.parametrize("mode", ["send", "send_batch"])
def test_produce_prints_kafka_producer_perf_test_lines(tmp_path: Path, mode: str) -> None:
    r = run(
        "produce",
        "--topic",
        "t",
        "--num-records",
        "3000",
        "--record-size",
        "100",
        "--mode",
        mode,
        "--batch-size",
        "100",
        "--throughput",
        "20000",
        "--reporting-interval",
        "20",
        data=tmp_path,
    )
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    total = TOTAL.match(lines[-1])
    assert total, lines[-1]
    assert int(total.group(1)) == 3000
    p50, p95, p99, p999 = (float(total.group(i)) for i in (6, 7, 8, 9))
    assert p50 <= p95 <= p99 <= p999 <= float(total.group(5)) + 1e-3
    windows = [WINDOW.match(line) for line in lines[:-1]]
    assert windows and all(windows), lines  # 3000 records at 20,000/s take ~150 ms: windows of 20 ms
    assert sum(int(w.group(1)) for w in windows) <= 3000
    with Admin(str(tmp_path)) as admin:
        assert admin.log_offsets("t", 0) == (0, 3000)


def test_produce_json_and_partitions(tmp_path: Path) -> None:
    r = run(
        "produce",
        "--topic",
        "t",
        "--num-records",
        "2500",
        "--record-size",
        "10",
        "--partitions",
        "3",
        "--fsync",
        "interval",
        "--json",
        data=tmp_path,
    )
    assert r.exit_code == 0, r.output
    objs = json_lines(r.stdout)
    assert [o["type"] for o in objs][-1] == "total"
    tot = objs[-1]
    assert tot["records"] == 2500 and tot["partitions"] == 3 and tot["fsync"] == "interval"
    assert {
        "records_per_sec",
        "mb_per_sec",
        "avg_latency_ms",
        "max_latency_ms",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "p999_ms",
    } <= set(tot)
    with Admin(str(tmp_path)) as admin:
        assert admin.describe_topic("t").records == 2500


# --------------------------------------------------------------------------- consume
def _parse_consumer_output(text: str) -> dict:
    header, row = text.splitlines()
    assert header == CONSUMER_HEADER
    names = [h.strip() for h in header.split(",")]
    cells = [c.strip() for c in row.split(",")]
    assert len(cells) == len(names) == 10
    rec = dict(zip(names, cells))
    assert re.fullmatch(STAMP, rec["start.time"]) and re.fullmatch(STAMP, rec["end.time"])
    for k in ("data.consumed.in.MB", "MB.sec", "nMsg.sec", "fetch.MB.sec", "fetch.nMsg.sec"):
        assert re.fullmatch(r"\d+\.\d{4}", rec[k]), (k, rec[k])
    return rec


def test_consume_prints_kafka_consumer_perf_test_csv(tmp_path: Path) -> None:
    assert run("produce", "--topic", "t", "--num-records", "4000", "--record-size", "100", data=tmp_path).exit_code == 0
    r = run("consume", "--topic", "t", "--messages", "4000", data=tmp_path)
    assert r.exit_code == 0, r.output
    rec = _parse_consumer_output(r.stdout)
    assert int(rec["data.consumed.in.nMsg"]) == 4000
    assert float(rec["data.consumed.in.MB"]) == pytest.approx(4000 * 100 / 2**20, abs=1e-4)

    r = run("consume", "--topic", "t", "--messages", "1000", "--group", "g", "--json", data=tmp_path)
    assert r.exit_code == 0, r.output
    (obj,) = json_lines(r.stdout)
    assert obj["data.consumed.in.nMsg"] == 1000 and not obj["timed_out"]
    with Admin(str(tmp_path)) as admin:
        assert admin.committed_offsets("g") == {("t", 0): 1000}


def test_consume_gives_up_after_timeout_with_kafkas_warning(tmp_path: Path) -> None:
    run("produce", "--topic", "t", "--num-records", "100", "--record-size", "5", data=tmp_path)
    r = run("consume", "--topic", "t", "--messages", "500", "--timeout", "200", data=tmp_path)
    assert r.exit_code == 0
    assert int(_parse_consumer_output(r.stdout)["data.consumed.in.nMsg"]) == 100
    assert "Exiting before consuming the expected number of messages" in r.stderr


# --------------------------------------------------------------------------- latency and seek
def test_latency_between_two_processes(tmp_path: Path) -> None:
    r = run("latency", "--rate", "400", "--seconds", "0.5", "--work-dir", str(tmp_path), "--json")
    assert r.exit_code == 0, r.output
    (s,) = json_lines(r.stdout)
    assert s["records_sent"] == s["records_received"] == 200
    assert 0 < s["p50_us"] <= s["p99_us"] <= s["p999_us"] <= s["max_us"]
    assert not list(tmp_path.iterdir())  # the temporary data is gone
    line = latency_line(s)
    assert re.fullmatch(
        rf"200 records received of 200 sent at 400 records/sec, {NUM} us avg latency, "
        rf"{NUM} us max latency, {NUM} us 50th, {NUM} us 99th, {NUM} us 99\.9th\.",
        line,
    ), line


def test_seek_reports_each_size_and_the_growth(tmp_path: Path) -> None:
    r = run("seek", "--sizes", "1000,3500", "--targets", "20", "--work-dir", str(tmp_path))
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    size_line = re.compile(
        rf"^(\d+) records \({NUM} MB, (\d+) segments\): seek by offset ({NUM}) us median "
        rf"\(min {NUM}, max {NUM}\), by timestamp ({NUM}) us median \(min {NUM}, max {NUM}\), "
        rf"over 20 random targets\.$"
    )
    assert [size_line.match(x).group(1) for x in lines[:2]] == ["1000", "3500"]  # type: ignore[union-attr]
    assert re.fullmatch(rf"growth from 1000 to 3500 records: offset x{NUM}, timestamp x{NUM}\.", lines[2])
    r = run("seek", "--sizes", "1500", "--targets", "5", "--json", "--work-dir", str(tmp_path))
    (obj,) = json_lines(r.stdout)
    assert obj["records"] == 1500 and obj["offset_min_us"] <= obj["offset_median_us"] <= obj["offset_max_us"]


# --------------------------------------------------------------------------- compare
def test_compare_json_markdown_and_skips(tmp_path: Path) -> None:
    md = tmp_path / "page.md"
    before = "# Page\n\nProse quoting `<!-- perf:begin -->` and `<!-- perf:end -->`.\n\n"
    md.write_text(before + "<!-- perf:begin -->\nold figures\n<!-- perf:end -->\n\nProse after.\n")
    r = compare(
        "--records",
        "1000",
        "--runs",
        "1",
        "--latency-seconds",
        "0.2",
        "--systems",
        "logq-never,sqlite-normal,redis",
        "--markdown",
        str(md),
        "--json",
        "--work-dir",
        str(tmp_path),
    )
    assert r.returncode == 0, r.stdout + r.stderr
    objs = json_lines(r.stdout)
    kinds = {o["type"] for o in objs}
    assert {"machine", "figure", "ratio", "seek", "target"} <= kinds
    figs = {(o["workload"], o["system"]): o for o in objs if o["type"] == "figure"}
    for w in (
        "produce 100 B",
        "consume 100 B",
        "produce 1 KiB",
        "consume 1 KiB",
        "seek to middle + read 1,000",
        "latency p50 at 5,000/s",
        "latency p99 at 5,000/s",
    ):
        for system in ("logq (never)", "SQLite (NORMAL)"):
            f = figs[(w, system)]
            assert f["min"] <= f["median"] <= f["max"] and len(f["runs"]) == 1 and f["durability"]
    assert ("produce 100 B, send()", "logq (never)") in figs
    ratios = [o for o in objs if o["type"] == "ratio"]
    assert {(o["logq"], o["peer"]) for o in ratios} >= {("logq (never)", "SQLite (NORMAL)")}
    redis_skipped = [o for o in objs if o["type"] == "skipped"]
    if redis_skipped:
        assert "redis" in redis_skipped[0]["reason"] and "skipping Redis Streams" in r.stderr
    page = md.read_text()
    assert page.startswith(before + "<!-- perf:begin -->\n") and page.endswith("Prose after.\n")
    assert "old figures" not in page and "| workload | system | durability | median | min | max | unit |" in page
    assert "#### Targets" in page and "| logq (never) |" in page


def test_compare_text_without_latency() -> None:
    r = compare("--records", "1000", "--runs", "1", "--latency-seconds", "0", "--systems", "logq-always,sqlite-full")
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "| produce 100 B | logq (always) | fsync=always" in out
    assert "| produce 100 B | SQLite (FULL) | WAL, synchronous=FULL" in out
    assert re.search(r"\| consume 100 B \| logq \(always\) \| x\d+\.\d\d \|", out)
    assert "latency" not in out.split("#### Ratios")[1].split("#### Seek")[0]


def test_compare_quick_has_the_replay_columnar_and_pure_codec_rows(tmp_path: Path) -> None:
    r = compare(
        "--quick",
        "--records",
        "1000",
        "--runs",
        "1",
        "--latency-seconds",
        "0",
        "--systems",
        "logq-never,logq-never-pure,sqlite-normal",
        "--json",
        "--work-dir",
        str(tmp_path),
    )
    assert r.returncode == 0, r.stdout + r.stderr
    objs = json_lines(r.stdout)
    figs = {(o["workload"], o["system"]): o for o in objs if o["type"] == "figure"}
    for system in ("logq (never)", "logq (never, pure)"):
        for w in (
            "consume 100 B, poll + commit",
            "consume 100 B, poll_columns + commit",
            "produce 100 B, send()",
            "replay: first record",
            "replay: next 1,000 records",
        ):
            f = figs[(w, system)]
            assert f["min"] <= f["median"] <= f["max"] and f["median"] > 0
    for w in ("replay: first record", "replay: next 1,000 records"):
        assert figs[(w, "SQLite (NORMAL)")]["unit"] == "us"
    assert ("consume 100 B, poll_columns + commit", "SQLite (NORMAL)") not in figs
    ratios = {(o["workload"], o["logq"], o["peer"]) for o in objs if o["type"] == "ratio"}
    for w in ("consume 100 B, poll_columns + commit", "produce 100 B, send()", "replay: first record"):
        assert {(w, "logq (never)", "SQLite (NORMAL)"), (w, "logq (never, pure)", "SQLite (NORMAL)")} <= ratios
    targets = {o["target"]: o for o in objs if o["type"] == "target"}
    issue_rows = [t for name, t in targets.items() if "compiled / pure" in name]
    assert len(issue_rows) == 6
    for t in issue_rows:
        assert "compiled x" in t["measured"] and "pure x" in t["measured"] and t["met"] in (True, False)


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["seek", "--sizes", "abc"], 2, "--sizes"),
        (["seek", "--sizes", "0"], 2, "--sizes"),
        (["consume", "--topic", "nope", "--messages", "5"], 1, "nope"),
        (["produce", "--topic", "t", "--num-records", "0", "--record-size", "1"], 2, "--num-records"),
    ],
)
def test_errors_are_one_line(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    r = run(*args, data=tmp_path)
    assert r.exit_code == code
    assert r.stdout == ""
    (line,) = r.stderr.splitlines()
    assert line.startswith("logq: ") and message in line


def test_compare_errors_are_one_line_like_the_cli() -> None:
    r = compare("--systems", "mongodb")
    assert r.returncode == 2
    assert r.stdout == ""
    (line,) = r.stderr.splitlines()
    assert line.startswith("logq: ") and "--systems" in line


# --------------------------------------------------------------------------- pieces
def test_machine_info_names_the_machine() -> None:
    info = _load("benchmarks/machine.py").machine_info()
    for key in ("cpu", "cores", "memory_gib", "disk", "os", "python", "numpy", "crc32c", "logq", "date"):
        assert info[key], key
    assert info["python"].count(".") == 2


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_only_on_a_terminal() -> None:
    tty, pipe = _Tty(), io.StringIO()
    for stream in (tty, pipe):
        bar = TerminalProgress.counting("produce", 100, stream=stream, delay_s=0)
        bar.update(50)
        bar.clear()
    assert "produce:  50.0% (50 of 100)" in tty.getvalue() and tty.getvalue().endswith("\r\x1b[K")
    assert pipe.getvalue() == ""


def test_plot_tool_reads_both_formats_and_needs_matplotlib(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    tool = _load("tools/plot_bench.py")
    bench = {
        "benchmarks": [
            {"name": "test_encode_values[100]", "stats": {"median": 0.001}, "extra_info": {"records": 1000}},
            {
                "name": "test_reopen[a]",
                "stats": {"median": 0.02},
                "extra_info": {"tail_bytes": 2 << 20, "crash": "reboot", "log_bytes": 1},
            },
            {
                "name": "test_reopen[b]",
                "stats": {"median": 0.01},
                "extra_info": {"tail_bytes": 0, "crash": "reboot", "log_bytes": 1},
            },
        ]
    }
    (tmp_path / "bench.json").write_text(json.dumps(bench))
    lines = [
        {
            "type": "figure",
            "workload": "produce 100 B",
            "system": "logq (never)",
            "unit": "records/s",
            "median": 5.0,
            "min": 4.0,
            "max": 6.0,
        },
        {
            "type": "seek",
            "records": 1000,
            "offset_median_us": 50.0,
            "offset_min_us": 40.0,
            "offset_max_us": 60.0,
            "timestamp_median_us": 70.0,
            "timestamp_min_us": 60.0,
            "timestamp_max_us": 80.0,
        },
    ]
    (tmp_path / "compare.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    series = tool.load([str(tmp_path / "bench.json"), str(tmp_path / "compare.jsonl")])
    assert series["throughput"] == [("test_encode_values[100]", pytest.approx(1e6))]
    assert series["recovery"] == {"reboot": [(0.0, 10.0), (2.0, 20.0)]}
    assert len(series["seek"]) == 1 and len(series["figures"]) == 1
    out = tmp_path / "img"
    code = tool.main([str(tmp_path / "bench.json"), str(tmp_path / "compare.jsonl"), "--out", str(out)])
    if importlib.util.find_spec("matplotlib") is None:
        assert code == 2 and "matplotlib is not installed" in capsys.readouterr().err
        assert not out.exists()
    else:
        assert code == 0
        assert {p.name for p in out.iterdir()} == {
            "bench_throughput.png",
            "bench_recovery.png",
            "seek_growth.png",
            "compare_throughput.png",
        }


def test_benchmarks_page_has_the_generated_block_and_the_command() -> None:
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    assert "<!-- perf:begin -->" in page and "<!-- perf:end -->" in page
    assert "make compare" in page and "python benchmarks/compare.py" in page
    assert not re.search(r"(/work/|/home/|/root/|/tmp/)", page)
