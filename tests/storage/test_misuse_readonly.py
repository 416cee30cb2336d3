"""The misuse tier for read-only data, file modes and the errors a user meets (issue 9, items
10 and 13).

Read-only data is tested as another user: we run as root, and root ignores file modes, so a
``chmod`` alone proves nothing. A child process imports everything it needs, then drops to
uid 65534 (``nobody``) and runs the readers against a copy of a data directory; the tests
skip with the reason when not run as root. Each test is named after what went wrong.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator

import logq
import pytest
from click.testing import CliRunner
from logq import Admin, Consumer, Producer, TopicPartition
from logq.cli.app import main as cli_main
from logq.errors import (
    CorruptTopicMetadataError,
    InvalidTopicError,
    LogqError,
    MissingPartitionError,
    StorageError,
    StoragePermissionError,
    TooManyOpenFilesError,
    TopicExistsError,
    UnknownPartitionError,
    UnknownTopicError,
    storage_error,
)
from logq.storage import files as fs
from logq.storage.topics import META_DIR

NOBODY = 65534
needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root: a child drops to uid 65534 to be a user who cannot write the data"
)


# ----------------------------------------------------------------------------- helpers


@pytest.fixture
def shared_tmp() -> Iterator[str]:
    """A directory uid 65534 can reach (pytest's tmp_path is inside root's 0700 folder)."""
    d = tempfile.mkdtemp(prefix="logq-ro-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def make_data(root: str, shared_read: str | None = None) -> None:
    """A topic of 2 partitions, 10 records, and a group 'g' that committed all of them."""
    with Admin(root, shared_read=shared_read) as a:
        a.create_topic("t", 2)
    with Producer(root) as p:
        for i in range(10):
            p.send("t", b"v%d" % i, partition=i % 2)
    with Consumer(root, group_id="g", auto_offset_reset="earliest") as c:
        c.subscribe(["t"])
        got = 0
        for _ in range(50):
            got += len(c.poll(timeout=0.2))
            if got == 10:
                break
        c.commit()
    assert got == 10


def tree(root: str) -> dict[str, tuple[int, int, int]]:
    """path -> (mode, size, mtime_ns) of everything under ``root``."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            out[os.path.relpath(p, root)] = (stat.S_IMODE(st.st_mode), st.st_size, st.st_mtime_ns)
    return out


# What the child runs as another user: every read-only use, each reported as a JSON line.
_READERS = """
import json, os, sys
import logq
from logq import Admin, Consumer, TopicPartition
from logq.cli.app import main
import logq.cli.dump, logq.cli.groups, logq.cli.seek, logq.cli.topics
from click.testing import CliRunner
import encodings.idna, encodings.ascii, encodings.latin_1  # loaded before the drop: root's files

root, uid, gid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if uid >= 0:  # else: stay root, on a read-only mount
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)

def run(name, fn):
    try:
        out = {"name": name, "ok": True, "value": fn()}
    except Exception as e:
        out = {"name": name, "ok": False, "error": type(e).__name__, "message": str(e),
               "logq": isinstance(e, logq.LogqError)}
    print(json.dumps(out, default=repr), flush=True)

def consume():
    with Consumer(root) as c:  # no group: reading needs no write access
        c.assign([TopicPartition("t", 0), TopicPartition("t", 1)])
        c.seek_to_beginning()
        got = []
        for _ in range(20):
            got += [r.value.decode() for r in c.poll(timeout=0.2)]
            if len(got) == 10:
                break
        return sorted(got)

def group_consume():
    with Consumer(root, group_id="g2") as c:
        c.subscribe(["t"])
        return len(c.poll(timeout=0.2))

with Admin(root) as a:
    run("list_topics", a.list_topics)
    run("describe_topic", lambda: [(p.partition, p.log_end_offset) for p in a.describe_topic("t").partitions])
    run("log_offsets", lambda: a.log_offsets("t", 1))
    run("describe_group", lambda: [(r.topic, r.partition, r.committed, r.lag) for r in a.describe_group("g").partitions])
    run("committed_offsets", lambda: sorted(a.committed_offsets("g").items()))
    run("list_groups", a.list_groups)
run("consume", consume)
run("group_consume", group_consume)
runner = CliRunner()
for args in (["topics", "list"], ["topics", "describe", "t"], ["offsets", "t"], ["groups", "list"],
             ["groups", "describe", "g"], ["dump", os.path.join(root, "t-0")]):
    res = runner.invoke(main, ["--data", root] + args)
    print(json.dumps({"name": " ".join(args), "ok": res.exit_code == 0, "value": res.output}), flush=True)
"""


def run_as(root: str, uid: int = NOBODY, gid: int = NOBODY) -> dict[str, dict]:
    """Run the readers over ``root`` as ``uid``/``gid``; {name: result}."""
    return _results([sys.executable, "-c", textwrap.dedent(_READERS), root, str(uid), str(gid)])


def _results(argv: list[str]) -> dict[str, dict]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return {r["name"]: r for r in map(json.loads, proc.stdout.splitlines())}


def read_only_mount_works() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    d = tempfile.mkdtemp()
    try:
        probe = f"mount --bind {d} {d} && mount -o remount,ro,bind {d} {d} && ! touch {d}/x 2>/dev/null"
        return subprocess.run(["unshare", "--mount", "sh", "-c", probe], capture_output=True).returncode == 0
    finally:
        shutil.rmtree(d, ignore_errors=True)


def chmod_tree(root: str, file_mode: int, dir_mode: int) -> None:
    os.chmod(root, dir_mode)
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            os.chmod(os.path.join(dirpath, d), dir_mode)
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), file_mode)


def modes_under(root: str) -> tuple[set[int], set[int]]:
    """(file modes, directory modes) of everything under ``root``, itself included."""
    files, dirs = set(), {stat.S_IMODE(os.stat(root).st_mode)}
    for dirpath, dirnames, filenames in os.walk(root):
        dirs |= {stat.S_IMODE(os.lstat(os.path.join(dirpath, d)).st_mode) for d in dirnames}
        files |= {stat.S_IMODE(os.lstat(os.path.join(dirpath, f)).st_mode) for f in filenames}
    return files, dirs


def assert_readers_work(results: dict[str, dict]) -> None:
    ok = {k: v for k, v in results.items() if k != "group_consume"}
    failed = {k: v for k, v in ok.items() if not v["ok"]}
    assert not failed, failed
    assert results["list_topics"]["value"] == ["t"]
    assert results["describe_topic"]["value"] == [[0, 5], [1, 5]]
    assert results["log_offsets"]["value"] == [0, 5]
    assert results["describe_group"]["value"] == [["t", 0, 5, 0], ["t", 1, 5, 0]]
    assert results["committed_offsets"]["value"] == [[["t", 0], 5], [["t", 1], 5]]
    assert results["consume"]["value"] == sorted(f"v{i}" for i in range(10))
    assert results["topics list"]["value"].split() == ["t"]
    assert "EndOffset: 5" in results["topics describe t"]["value"]
    assert results["offsets t"]["value"].split() == ["t:0:5", "t:1:5"]
    assert "g" in results["groups list"]["value"].split()
    dump = next(v for k, v in results.items() if k.startswith("dump "))
    assert "isvalid: true" in dump["value"]


# ----------------------------------------------------------------------------- item 13: read-only data


@needs_root
def test_readers_work_on_data_the_user_cannot_write(shared_tmp):
    """Was: every reader but dump failed opening __logq/topics.lock for writing."""
    root = os.path.join(shared_tmp, "data")
    make_data(root)
    chmod_tree(root, 0o644, 0o755)  # readable by all, writable by its owner (root) only
    before = tree(root)
    results = run_as(root)
    assert_readers_work(results)
    assert tree(root) == before  # reading changed nothing: no file, mode, size or mtime


@pytest.mark.skipif(not read_only_mount_works(), reason="needs root, unshare and a read-only bind mount")
def test_readers_work_on_a_read_only_mount_even_as_root(shared_tmp):
    """Root ignores modes but not EROFS: a backup mounted read-only."""
    root = os.path.join(shared_tmp, "data")
    make_data(root)
    before = tree(root)
    script = 'mount --bind "$2" "$2" && mount -o remount,ro,bind "$2" "$2" && exec "$0" -c "$1" "$2" -1 -1'
    results = _results(["unshare", "--mount", "sh", "-c", script, sys.executable, textwrap.dedent(_READERS), root])
    assert_readers_work(results)
    r = results["group_consume"]  # a group member must write: refused, saying why
    assert not r["ok"] and r["error"] == "StoragePermissionError" and "Read-only file system" in r["message"]
    assert tree(root) == before


@needs_root
def test_a_group_consumer_on_data_it_cannot_write_fails_with_a_permission_error_naming_the_path(shared_tmp):
    root = os.path.join(shared_tmp, "data")
    make_data(root)
    chmod_tree(root, 0o644, 0o755)
    r = run_as(root)["group_consume"]
    assert not r["ok"] and r["logq"], r
    assert r["error"] == "StoragePermissionError"
    assert os.path.join(root, META_DIR, "groups") in r["message"]
    assert "group_id" in r["message"]  # the hint: read without a group


@needs_root
def test_data_is_private_by_default_so_another_user_cannot_read_it(shared_tmp):
    root = os.path.join(shared_tmp, "data")
    make_data(root)
    files, dirs = modes_under(root)
    assert files == {0o600} and dirs == {0o700}
    r = run_as(root)["list_topics"]
    assert not r["ok"] and r["error"] == "StoragePermissionError", r
    assert root in r["message"]


@needs_root
def test_shared_read_group_lets_the_group_read_and_no_other_user(shared_tmp):
    root = os.path.join(shared_tmp, "data")
    make_data(root, shared_read="group")
    files, dirs = modes_under(root)
    # every file logq made: segments, indexes, state, metadata, locks, group and offsets files
    assert files == {0o640} and dirs == {0o750}
    names = {os.path.basename(p) for p in tree(root)}
    assert {"meta", "logq.state", "offsets", "group.lock", "00000000000000000000.log"} <= names
    os.chown(root, 0, NOBODY)
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            os.chown(os.path.join(dirpath, n), 0, NOBODY, follow_symlinks=False)
    assert_readers_work(run_as(root, NOBODY, NOBODY))  # a member of the group reads
    stranger = run_as(root, NOBODY, NOBODY - 1)["list_topics"]  # the same user in another group cannot
    assert not stranger["ok"] and stranger["error"] == "StoragePermissionError"


def test_group_sharing_holds_under_a_umask_that_removes_group_bits(tmp_path):
    root = str(tmp_path / "data")
    old = os.umask(0o077)
    try:
        make_data(root, shared_read="group")
    finally:
        os.umask(old)
    assert modes_under(root) == ({0o640}, {0o750})


def test_changing_shared_read_applies_to_the_files_already_there(tmp_path):
    root = str(tmp_path / "data")
    make_data(root)
    assert modes_under(root) == ({0o600}, {0o700})
    with Admin(root, shared_read="group") as a:
        assert a.shared_read == "group"
    assert modes_under(root) == ({0o640}, {0o750})
    with Producer(root) as p:  # a later writer follows the directory's setting
        p.send("t", b"more", partition=0).result()
    assert modes_under(root) == ({0o640}, {0o750})
    with Admin(root, shared_read="private") as a:
        assert a.shared_read == "private"
    assert modes_under(root) == ({0o600}, {0o700})


def test_cli_shared_read_option_sets_the_modes(tmp_path):
    root = str(tmp_path / "data")
    res = CliRunner().invoke(cli_main, ["--data", root, "--shared-read", "group", "topics", "create", "t"])
    assert res.exit_code == 0, res.output
    assert modes_under(root) == ({0o640}, {0o750})
    res = CliRunner().invoke(cli_main, ["--data", root, "--shared-read", "private", "topics", "list"])
    assert res.exit_code == 0 and res.output.split() == ["t"]
    assert modes_under(root) == ({0o600}, {0o700})


def test_a_parent_directory_open_to_everyone_does_not_make_new_files_group_readable(tmp_path):
    d = tmp_path / "open"
    d.mkdir()
    os.chmod(d, 0o755)  # like /tmp or a home directory: not a logq sharing setting
    fs.make_dir(str(d / "p"))
    os.close(fs.open_file(str(d / "p" / "f"), os.O_RDWR | os.O_CREAT))
    os.close(fs.open_file(str(d / "f"), os.O_RDWR | os.O_CREAT))
    assert stat.S_IMODE(os.stat(d / "p").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(d / "f").st_mode) == 0o600


def test_an_invalid_shared_read_value_is_refused_before_anything_is_created(tmp_path):
    root = tmp_path / "data"
    with pytest.raises(logq.ConfigError, match="shared_read"):
        Admin(str(root), shared_read="world")
    assert not root.exists()


# ----------------------------------------------------------------------------- item 10: partitions


@pytest.fixture
def topic(root: str) -> Iterator[Admin]:
    with Admin(root) as a:
        a.create_topic("t", 2)
        yield a


def test_a_partition_the_topic_lacks_is_an_unknown_partition_not_an_invalid_topic_name(topic, root):
    """Was: "invalid topic 't-5': partition must be an int in [0, 2) (topic names are 1-249 characters ...)"."""
    with pytest.raises(UnknownPartitionError) as e:
        topic.log_offsets("t", 5)
    assert (e.value.topic, e.value.partition, e.value.partitions) == ("t", 5, 2)
    assert str(e.value).startswith("topic 't' has no partition 5 (it has 2 (0-1))")
    assert "topic names are" not in str(e.value) and "logq topics describe t" in str(e.value)
    assert isinstance(e.value, InvalidTopicError)  # code that caught the old error still does
    with Producer(root) as p, pytest.raises(UnknownPartitionError, match="has no partition 5"):
        p.send("t", b"x", partition=5)
    with Consumer(root) as c, pytest.raises(UnknownPartitionError, match="has no partition 2"):
        c.assign([TopicPartition("t", 2)])


def test_a_partition_that_is_not_an_int_is_named_as_a_partition(topic):
    with pytest.raises(UnknownPartitionError, match=r"invalid partition '1' of topic 't': a partition is an int"):
        topic.log_offsets("t", "1")  # type: ignore[arg-type]


def test_a_missing_partition_directory_names_the_partition_and_a_repair_not_disk_permissions(topic, root):
    """Was: "open directory failed on .../t-1: No such file or directory (check the disk, permissions ...)"."""
    shutil.rmtree(os.path.join(root, "t-1"))
    with pytest.raises(MissingPartitionError) as e:
        topic.describe_topic("t")
    assert (e.value.topic, e.value.partition) == ("t", 1)
    assert "permissions" not in str(e.value)
    assert "logq topics repair t" in str(e.value) and os.path.join(root, "t-1") in str(e.value)
    with Consumer(root) as c, pytest.raises(MissingPartitionError, match="partition 't-1' has no directory"):
        c.assign([TopicPartition("t", 1)])
        c.poll(timeout=0.1)
    r = topic.repair_topic("t")
    assert r.created_partitions == (1,) and not r.rewritten
    assert [p.log_end_offset for p in topic.describe_topic("t").partitions] == [0, 0]


# ----------------------------------------------------------------------------- item 10: too many open files


def test_emfile_becomes_an_error_naming_rlimit_nofile_and_how_to_raise_it():
    import resource

    e = storage_error("open", "/data/t-0/x.log", OSError(errno.EMFILE, "Too many open files"))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert isinstance(e, TooManyOpenFilesError) and isinstance(e, StorageError)
    assert (e.limit, e.hard_limit, e.errno, e.path) == (soft, hard, errno.EMFILE, "/data/t-0/x.log")
    text = str(e)
    assert "RLIMIT_NOFILE" in text and str(soft) in text and "ulimit -n" in text and "fewer partitions" in text
    e2 = storage_error("open", "/data/t-0/x.log", OSError(errno.ENFILE, "Too many open files in system"))
    assert isinstance(e2, TooManyOpenFilesError) and "fs.file-max" in str(e2)


_EMFILE_CHILD = """
import json, os, resource, sys
import logq
from logq import Admin, Consumer, Producer, TopicPartition
root = sys.argv[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
admin = Admin(root)
held = []
try:  # use up every descriptor: whatever logq opens next meets EMFILE
    while True:
        held.append(os.open(os.devnull, os.O_RDONLY))
except OSError:
    pass
def run(fn):
    try:
        fn()
        return "ok"
    except logq.RecordsFailedError as e:
        return [type(e.first).__name__, str(e)]
    except logq.LogqError as e:
        return [type(e).__name__, str(e)]
    except OSError as e:
        return ["raw " + type(e).__name__, str(e)]
def consume():
    with Consumer(root) as c:
        c.assign([TopicPartition("t", 0)])
        c.poll(timeout=0.05)
def produce():
    with Producer(root) as p:
        p.send("t", b"y", partition=1)
        p.flush()
out = {"describe": run(lambda: admin.describe_topic("t")), "consumer": run(consume), "producer": run(produce)}
for fd in held:
    os.close(fd)
print(json.dumps(out))
"""


def test_every_client_past_the_open_files_limit_gets_an_error_naming_the_limit(topic, root):
    """Was: a raw ``OSError: [Errno 24] Too many open files`` (mapping an index, opening a file)."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_EMFILE_CHILD), root], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    for what in ("describe", "consumer", "producer"):
        kind, message = got[what]
        assert kind == "TooManyOpenFilesError", got
        assert "RLIMIT_NOFILE is 256" in message and "ulimit -n" in message and "fewer partitions" in message


# ----------------------------------------------------------------------------- item 10: corrupt topic metadata


def corrupt_meta(root: str, name: str) -> str:
    path = os.path.join(root, META_DIR, "topics", name, "meta")
    for p in (path, path + ".bak"):
        if os.path.exists(p):
            data = bytearray(open(p, "rb").read())
            data[-3] ^= 0xFF
            with open(p, "wb") as f:
                f.write(data)
    return path


def test_a_corrupt_topic_metadata_file_is_reported_alike_by_every_command(topic, root):
    """Was: listed, but describe/produce/consume said it does not exist and create said it exists."""
    path = corrupt_meta(root, "t")
    assert topic.list_topics() == ["t"]
    with Admin(root) as a:
        for call in (
            lambda: a.describe_topic("t"),
            lambda: a.create_topic("t", 2),
            lambda: a.log_offsets("t", 0),
            lambda: a.topic_config("t"),
        ):
            with pytest.raises(CorruptTopicMetadataError) as e:
                call()
            assert e.value.path == path and e.value.topic == "t"
            assert "logq topics repair t" in str(e.value) and "logq topics delete t" in str(e.value)
            assert not isinstance(e.value, (UnknownTopicError, TopicExistsError))
    with Producer(root) as p, pytest.raises(CorruptTopicMetadataError):
        p.send("t", b"x", partition=0).result()
    with Consumer(root) as c, pytest.raises(CorruptTopicMetadataError):
        c.assign([TopicPartition("t", 0)])
        c.poll(timeout=0.1)
    res = CliRunner().invoke(cli_main, ["--data", root, "topics", "describe", "t"])
    assert res.exit_code == 1 and path in res.output and "logq topics repair t" in res.output


def test_delete_removes_a_topic_whose_metadata_is_corrupt_and_create_works_again(topic, root):
    corrupt_meta(root, "t")
    with Admin(root) as other:  # another process: nothing cached
        other.delete_topic("t")
    assert topic.list_topics() == []
    assert not os.path.exists(os.path.join(root, "t-0")) and not os.path.exists(os.path.join(root, "t-1"))
    topic.create_topic("t", 3)
    assert len(topic.describe_topic("t").partitions) == 3


def test_repair_rewrites_corrupt_topic_metadata_and_keeps_records_and_committed_offsets(root):
    make_data(root)
    with Admin(root) as a:
        tid = a.describe_topic("t").topic_id
    path = corrupt_meta(root, "t")
    res = CliRunner().invoke(cli_main, ["--data", root, "topics", "repair", "t", "--config", "retention_ms=-1"])
    assert res.exit_code == 0, res.output
    assert "Repaired topic t: 2 partition(s)" in res.output and tid in res.output
    assert os.path.exists(path + ".corrupt")  # the damaged file is kept for inspection
    with Admin(root) as a:
        d = a.describe_topic("t")
        assert d.topic_id == tid and [p.log_end_offset for p in d.partitions] == [5, 5]
        assert a.topic_config("t").retention_ms == -1
        assert [r.committed for r in a.describe_group("g").partitions] == [5, 5]  # same id: offsets still count
        again = a.repair_topic("t")
    assert not again.rewritten and again.created_partitions == ()


def test_repair_without_any_recorded_offsets_gives_a_new_id_and_says_so(topic, root):
    old = topic.describe_topic("t").topic_id
    corrupt_meta(root, "t")
    r = topic.repair_topic("t")
    assert r.rewritten and r.partitions == 2 and r.topic_id != old
    assert any("new topic id" in p for p in r.problems) and any("overrides" in p for p in r.problems)


def test_repair_of_a_topic_that_has_neither_metadata_nor_partitions_is_unknown(topic):
    with pytest.raises(UnknownTopicError):
        topic.repair_topic("nothing")


def test_every_new_error_is_a_logq_error_with_a_hint():
    for cls in (UnknownPartitionError, MissingPartitionError, TooManyOpenFilesError, StoragePermissionError):
        assert issubclass(cls, LogqError)
    e = storage_error("open", "/x", OSError(errno.EROFS, "Read-only file system"))
    assert isinstance(e, StoragePermissionError) and "group_id" in str(e)
