"""The CPU set-up and the atomic save."""
import os

import pytest

from utils import FolderLocked, Meeting, atomic_save, fast_mkl_on_amd, lock_folder, usable_cores


@pytest.mark.parametrize("vendor,expected", [("AuthenticAMD", "5"), ("GenuineIntel", None)])
def test_fast_mkl_only_on_amd(tmp_path, monkeypatch, vendor, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nvendor_id\t: {vendor}\n")
    monkeypatch.delenv("MKL_DEBUG_CPU_TYPE", raising=False)
    fast_mkl_on_amd(str(cpuinfo))
    assert os.environ.get("MKL_DEBUG_CPU_TYPE") == expected


def test_fast_mkl_keeps_the_users_choice_and_needs_no_cpuinfo(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("vendor_id\t: AuthenticAMD\n")
    monkeypatch.setenv("MKL_DEBUG_CPU_TYPE", "4")
    fast_mkl_on_amd(str(cpuinfo))
    assert os.environ["MKL_DEBUG_CPU_TYPE"] == "4"
    monkeypatch.delenv("MKL_DEBUG_CPU_TYPE")
    fast_mkl_on_amd(str(tmp_path / "missing"))
    assert "MKL_DEBUG_CPU_TYPE" not in os.environ


def test_usable_cores():
    assert 1 <= usable_cores() <= os.cpu_count()


def test_atomic_save_leaves_no_temporary_file(tmp_path):
    import paddle

    path = tmp_path / "state.pdparams"
    atomic_save({"a": paddle.ones([2])}, str(path))
    assert os.listdir(tmp_path) == ["state.pdparams"]
    assert paddle.load(str(path))["a"].numpy().tolist() == [1.0, 1.0]


def test_keep_freed_memory_applies_on_glibc():
    import platform

    from utils import keep_freed_memory

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    assert keep_freed_memory() is True


def test_a_signal_ends_a_tool_in_one_line_and_a_worker_with_its_parent(tmp_path):
    """D6: Ctrl-C or SIGTERM in export_model.py or infer.py prints one line, no traceback
    and no Paddle dump; D8: a data-parallel worker dies with its launcher, kill -9 included."""
    import signal
    import subprocess
    import sys
    import time

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tool = ("import os, signal, paddle, utils; utils.exit_on_signals('nothing is half-written'); "
            "os.kill(os.getpid(), signal.SIGTERM)")
    done = subprocess.run([sys.executable, "-c", tool], cwd=root, capture_output=True, text=True)
    assert done.returncode == 128 + signal.SIGTERM and done.stdout == ""
    assert done.stderr.endswith("[!] stopped by SIGTERM; nothing is half-written\n")
    assert "Traceback" not in done.stderr and "FatalError" not in done.stderr
    worker = "import time, utils; utils.die_with_parent(); print('ready', flush=True); time.sleep(60)"
    launcher = subprocess.Popen(["bash", "-c", f'{sys.executable} -c "{worker}" & echo $!; wait'],
                                cwd=root, stdout=subprocess.PIPE, text=True)
    pid = int(launcher.stdout.readline())
    assert launcher.stdout.readline() == "ready\n"
    launcher.kill()
    launcher.wait()
    for _ in range(100):  # the kernel's SIGTERM arrives at once; wait up to 10 s for the exit
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
        pytest.fail("the worker outlived its launcher")


def test_a_lock_file_that_is_a_link_is_refused_and_its_target_never_written(tmp_path):
    """N13: the lock followed links, writing a PID over a link's target and making a dangling
    link's target."""
    precious = tmp_path / "precious.txt"
    precious.write_text("precious text")
    for name, target in (("linked", precious), ("dangling", tmp_path / "made_elsewhere")):
        folder = tmp_path / name
        folder.mkdir()
        os.symlink(target, folder / ".lock")
        with pytest.raises(FolderLocked, match="cannot be its lock file"):
            lock_folder(str(folder))
    assert precious.read_text() == "precious text" and not (tmp_path / "made_elsewhere").exists()


def test_a_meeting_is_judged_from_the_masters_entries_whatever_they_hold():
    """utils.Meeting reads Paddle's key-value server at --master (here the launcher's own
    server class on the loopback address): the machines met, a wrong --nnodes or a repeated
    rank is named, and entries no launcher writes leave it waiting, never raising (a raise
    would end the watch and leave the wait unbounded)."""
    import argparse
    import socket

    from paddle.distributed.launch.utils.kv_server import KVServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = KVServer(port)
    server.start()
    try:
        def judged(entries, nnodes=2, rank=0):
            server.kv = {"/healthy": b"ok", **{key: value.encode() for key, value in entries.items()}}
            meeting = Meeting(argparse.Namespace(master=f"127.0.0.1:{port}", nnodes=nnodes,
                                                 rank=rank, meet_timeout=1))
            meeting.noted = True  # as if this machine's note were among the entries
            return meeting.verdict(), meeting.why_not_met()

        both = {"/ram-paddle/0/a-1": "2", "/ram-paddle/1/b-2": "2",
                "/default/info/pod0/0": "{}", "/default/info/pod1/1": "{}"}
        assert judged(both)[0] is True
        assert judged({**both, "/ram-paddle/1/b-2": "3"})[0] == (
            "the machine of rank 1 was started with --nnodes 3, this one (rank 0) with --nnodes "
            "2: give every machine the same")
        assert judged({**both, "/default/info/pod1/0": "{}"})[0].startswith(
            "two machines were given --rank 0")
        alone = {"/ram-paddle/1/b-2": "2", "/default/info/pod1/1": "{}"}
        assert judged(alone, rank=1)[1].startswith(
            f"1 of the 2 machines (--nnodes) met at --master 127.0.0.1:{port} within "
            f"--meet_timeout 1 s (ranks 1): start rank 0")
        for garbage in ({"/ram-paddle/x": "2"}, {"/ram-paddle/0/a": "two"},
                        {"/default/info/pod": "{}"}, {"/ram-paddle/": ""}):
            verdict, why = judged({**alone, **garbage}, rank=1)
            assert verdict is None and " of the 2 machines (--nnodes) met at " in why
    finally:
        server.stop()


def test_within_ends_a_wait_that_holds_the_gil_in_one_line():
    """A worker whose TCP store waited for processes that never started held the GIL in
    Paddle's C++: a timer thread could not fire and the process waited for ever. within's
    watchdog is a process of its own. Here the wait is libc's sleep called with the GIL held."""
    import subprocess
    import sys

    code = ("import ctypes, sys; sys.path.insert(0, sys.argv[1]); from utils import within\n"
            "with within(1, 'the wait ended'):\n    ctypes.PyDLL(None).sleep(60)")
    ended = subprocess.run([sys.executable, "-c", code, os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))], capture_output=True, text=True, timeout=30)
    assert ended.returncode != 0 and ended.stderr == "[!] the wait ended\n"
