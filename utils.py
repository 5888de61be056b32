"""Small helpers shared by the trainer and the tools. Importing this module does
not load Paddle, so that before_paddle() can run before Paddle does."""
import contextlib
import os
import warnings


STOPS = (2, 15)  # SIGINT, SIGTERM (the same numbers on every POSIX system)


def before_paddle(quiet=False, hold_signals=False):
    """The set-up of every entry point that must run before `import paddle`: MKL's fast
    code path on AMD (fast_mkl_on_amd), glibc keeping freed memory (keep_freed_memory),
    Paddle's import notice about ccache silenced; with quiet, also the notes Paddle's
    C++ prints while tracing or predicting (GLOG). With hold_signals (a script, not an
    import), SIGINT and SIGTERM are held until exit_on_signals takes them: the handlers
    Paddle installs while it is imported dump a fatal error, or hang, on them."""
    fast_mkl_on_amd()
    keep_freed_memory()
    warnings.filterwarnings("ignore", message="No ccache found")  # irrelevant here
    if quiet:
        os.environ.setdefault("GLOG_minloglevel", "2")
    if hold_signals:
        import signal

        signal.pthread_sigmask(signal.SIG_BLOCK, STOPS)


def fast_mkl_on_amd(cpuinfo="/proc/cpuinfo"):
    """On an AMD CPU, make Paddle's bundled MKL take its AVX2 code path.

    That MKL picks a slow generic path on CPUs it does not recognise as Intel's:
    on this project's 2-core AMD EPYC its sgemm ran at 46 GFLOP/s, and at 121 with
    MKL_DEBUG_CPU_TYPE=5. MKL reads the variable when Paddle loads, so call this
    before `import paddle`. Intel CPUs and a value already set are left alone.
    """
    try:
        with open(cpuinfo) as f:
            amd = "AuthenticAMD" in f.read()
    except OSError:  # not Linux: nothing known to fix
        return
    if amd:
        os.environ.setdefault("MKL_DEBUG_CPU_TYPE", "5")


def keep_freed_memory():
    """Make glibc keep freed memory for reuse instead of unmapping it.

    glibc hands every freed block over 128 KiB back to the system and maps fresh,
    zeroed pages for the next one; the retina's arrays of a batch (index, corners,
    sums: megabytes each, made anew at every glimpse) then pay page faults on every
    call. Raising the two thresholds to 1 GiB halved the time of an M=10
    evaluation glimpse at 60x60 here (9 to 4 ms), at the cost of a process that
    keeps its peak memory. Returns whether it applied (glibc only)."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing known to tune
        return False
    trim_threshold, mmap_threshold = -1, -3  # M_TRIM_THRESHOLD, M_MMAP_THRESHOLD of malloc.h
    return bool(libc.mallopt(mmap_threshold, 2**30)) and bool(libc.mallopt(trim_threshold, 2**30))


def usable_cores():
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def atomic_write(path, write):
    """write(tmp) to a temporary file beside `path`, flushed to disk, then renamed
    over `path`: a crash or a full disk leaves the old file or the new one, never
    half of one, and no temporary file."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        err.filename = err.filename or path  # some writers (paddle.save) leave it None
        raise
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_save(state, path):
    """paddle.save, atomically (see atomic_write)."""
    import paddle

    atomic_write(path, lambda tmp: paddle.save(state, tmp))


def atomic_write_text(text, path):
    """A text file, atomically (see atomic_write)."""
    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)

    atomic_write(path, write)


def append_line(path, line):
    """Append one line to a text file, whole or not at all: a write that fails (a full
    disk) is cut back to where the file ended, so no half line is left to be glued to
    the next one."""
    with open(path, "a") as f:
        end = f.tell()
        try:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
        except OSError as err:
            f.truncate(end)
            err.filename = err.filename or path
            raise


class FolderLocked(Exception):
    """Another live process writes this run's files; the message is one line."""


def lock_folder(folder):
    """Claim folder for this process until it ends: an exclusive lock on folder/.lock,
    which the kernel releases when the process ends in any way (a kill -9 included), so a
    dead run's lock is simply taken over. The lock file is never followed if it is a link
    (a link's target is never written). Returns the open lock file, to keep; raises
    FolderLocked while another process holds it, or if it cannot be a lock file."""
    import fcntl

    path = os.path.join(folder, ".lock")
    try:
        os.makedirs(folder, exist_ok=True)
        lock = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644), "r+")
    except OSError as err:
        raise FolderLocked(f"cannot claim {folder}: {path} cannot be its lock file "
                           f"({err.strerror})") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = lock.read().strip() or "another process"
        lock.close()
        raise FolderLocked(f"{folder} is in use by a run (pid {holder}): wait for it to end, "
                           f"or give this run other folders") from None
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    return lock


class StopSignals:
    """While entered, SIGINT and SIGTERM stop a run after its current step: the first
    is recorded in `received` for the loop to see; a second one leaves at once
    (checkpoints are written to a temporary file and renamed, so none on disk is ever
    half-written)."""

    def __init__(self):
        self.received = None

    def __enter__(self):
        import signal

        self.handlers = {sig: signal.signal(sig, self.on_signal)
                         for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc):
        import signal

        if self.received is None:  # after a signal this handler stays, for a second one
            for sig, handler in self.handlers.items():
                signal.signal(sig, handler)

    def on_signal(self, signum, frame):
        import signal

        if self.received is not None:
            os.write(2, f"[!] {signal.Signals(signum).name} again: stopped at once; every "
                        f"checkpoint on disk is whole\n".encode())
            raise SystemExit(128 + signum)  # unwinds: a write in progress removes its temporary file
        self.received = signum
        from tqdm import tqdm  # the line above a progress bar, not through it

        tqdm.write(f"[!] {signal.Signals(signum).name}: stopping after this step "
                   f"(send it again to stop at once)")


class PipeSafeStream:
    """A text stream whose reader may go away (`python main.py | head -1`): once it
    has, what is written is dropped, instead of a BrokenPipeError ending the run."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text):
        try:
            return self.stream.write(text)
        except BrokenPipeError:
            self.drop()
            return len(text)

    def flush(self):
        try:
            self.stream.flush()
        except BrokenPipeError:
            self.drop()

    def drop(self):
        """Point the stream's descriptor at /dev/null, so that its buffer, and the flush
        at exit, find a reader."""
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self.stream.fileno())
        os.close(devnull)

    def __getattr__(self, name):
        return getattr(self.stream, name)


def sum_over_processes(*numbers):
    """numbers summed over the processes of a data-parallel run (unchanged in one)."""
    import paddle

    if paddle.distributed.get_world_size() == 1:
        return numbers
    total = paddle.to_tensor(numbers, dtype="float64")
    paddle.distributed.all_reduce(total)
    return tuple(total.tolist())


def max_over_processes(numbers):
    """The largest tuple of numbers (by its first) over the processes of a data-parallel
    run (numbers itself in one)."""
    import paddle

    if paddle.distributed.get_world_size() == 1:
        return numbers
    gathered = []
    paddle.distributed.all_gather(gathered, paddle.to_tensor(numbers, dtype="float64"))
    return max(tuple(part.tolist()) for part in gathered)


@contextlib.contextmanager
def same_rng_everywhere():
    """Leaves the RNG as it was in a data-parallel run. Its processes draw the same
    numbers while training (same seed, same batch sizes), so that the checkpoint's RNG
    state, rank 0's, is every process's; their validation shards can differ in size."""
    import paddle

    state = paddle.get_rng_state() if paddle.distributed.get_world_size() > 1 else None
    yield
    if state is not None:
        paddle.set_rng_state(state)


def exit_on_signals(consequence):
    """Make SIGINT and SIGTERM end this tool at once with one line on stderr, which says
    what the stop leaves (`consequence`), instead of a traceback (KeyboardInterrupt) or
    Paddle's dump of a fatal error; then let through those that before_paddle held. Call
    it after `import paddle`, which installs its own handlers."""
    import signal

    def stop(signum, frame):
        os.write(2, f"[!] stopped by {signal.Signals(signum).name}; {consequence}\n".encode())
        os._exit(128 + signum)

    for sig in STOPS:
        signal.signal(sig, stop)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPS)


def die_with_parent():
    """Have the kernel send this process SIGTERM when its parent dies (Linux's
    PR_SET_PDEATHSIG), which stops a run after its current step: a data-parallel worker
    then ends with its launcher, even one killed with -9, rather than train on alone.
    Returns whether it applied."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:  # not glibc: not Linux, nothing known to do
        return False
    pr_set_pdeathsig = 1
    return libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0) == 0


def remove_orphans(pattern):
    """Delete the temporary files matching pattern (a glob; their names hold ".tmp<pid>")
    of writes whose process is gone (a kill -9 mid-write); those of a live process are its
    writes in progress."""
    import glob
    import re

    for path in glob.glob(pattern):
        found = re.search(r"\.tmp(\d+)", os.path.basename(path))
        if not found:
            continue
        try:
            os.kill(int(found.group(1)), 0)
        except ProcessLookupError:
            os.remove(path)
        except PermissionError:  # alive, another user's
            pass


# within's watchdog: a process of its own, as Paddle's C++ waits hold the GIL (a thread of
# this process could not run) and its handlers of SIGTERM are Python's (they would not either).
WATCHDOG = ("import os, sys, time; time.sleep(float(sys.argv[1])); "
            "os.write(2, sys.argv[2].encode()); os.kill(int(sys.argv[3]), 9)")


@contextlib.contextmanager
def within(seconds, reason):
    """Kill this process with `reason` in one line on stderr if the block has not ended
    within `seconds`: for the waits of Paddle's C++ that nothing else ends (a TCP store
    waiting for processes that never start holds the GIL, so no thread here could)."""
    import subprocess
    import sys

    watchdog = subprocess.Popen([sys.executable, "-c", WATCHDOG, str(seconds), f"[!] {reason}\n",
                                 str(os.getpid())])
    try:
        yield
    finally:
        watchdog.kill()
        watchdog.wait()


class Meeting:
    """The meeting of a run's machines at --master, as one machine sees it: Paddle's launcher
    keeps its peers in a key-value server there (a pod a machine, /<job>/info/<pod>/<rank>),
    beside which every machine's launch_machines notes its --nnodes (/ram-paddle/<rank>/...)."""

    def __init__(self, config):
        self.master, self.nnodes, self.rank = config.master, config.nnodes, config.rank
        self.timeout = config.meet_timeout
        self.noted = False

    def read(self, key):
        """The entries under key (a dict; {} if none), or None if the master does not answer
        as Paddle's launcher."""
        import json
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://{self.master}{key}", timeout=2) as answer:
                entries = json.loads(answer.read())
            return entries if isinstance(entries, dict) else None
        except urllib.error.HTTPError as err:
            return {} if err.code == 404 else None
        except (OSError, ValueError):
            return None

    def note(self):
        """Note this machine's --nnodes at the master, once it answers."""
        import socket
        import urllib.request

        key = f"/ram-paddle/{self.rank}/{socket.gethostname()}-{os.getpid()}"
        try:
            urllib.request.urlopen(urllib.request.Request(
                f"http://{self.master}{key}", data=str(self.nnodes).encode()), timeout=2).close()
            self.noted = True
        except OSError:
            pass

    def verdict(self):
        """True once every machine is there, the one-line reason they cannot meet, or None."""
        if not self.noted:
            self.note()
        fronts, pods = self.read("/ram-paddle/"), self.read("/default/info/")
        if not self.noted or fronts is None or pods is None:
            return None
        try:
            nnodes = [(int(key.split("/")[2]), int(value)) for key, value in sorted(fronts.items())]
            joined = sorted(int(key.rsplit("/", 1)[1]) for key in pods)  # the launchers' ranks
        except (ValueError, IndexError):  # not what launch_machines and Paddle write there
            return None
        for rank, n in nnodes:
            if n != self.nnodes:
                return (f"the machine of rank {rank} was started with --nnodes {n}, this one "
                        f"(rank {self.rank}) with --nnodes {self.nnodes}: give every machine "
                        f"the same")
        noted = sorted(rank for rank, _ in nnodes)
        for ranks in (noted, joined):
            if twice := [rank for rank in set(ranks) if ranks.count(rank) > 1]:
                return (f"two machines were given --rank {twice[0]}: give each machine its own "
                        f"rank, 0 to {self.nnodes - 1}")
        return noted == joined == list(range(self.nnodes)) or None

    def why_not_met(self):
        """The one-line reason the machines have not met, once the time is up."""
        import socket

        where = f"--master {self.master}"
        if isinstance(verdict := self.verdict(), str):
            return verdict
        if not self.answers_as_launcher():
            host, port = self.master.rsplit(":", 1)
            try:
                socket.create_connection((host, int(port)), timeout=2).close()
            except ConnectionRefusedError:
                return (f"nothing listens at {where} within --meet_timeout {self.timeout} s: "
                        f"start the machine of rank 0 there, or check the address")
            except OSError:  # no answer at all: a firewall, or a program that never accepts
                return (f"nothing answers at {where} within --meet_timeout {self.timeout} s: "
                        f"start the machine of rank 0 there, or check the address, its firewall "
                        f"and whether another program holds the port (ss -ltn there)")
            return (f"{where} answers, but not as Paddle's launcher: another program holds the "
                    f"port (ss -ltn on that machine); give another port, the same everywhere")
        ranks = sorted({key.split("/")[2] for key in self.read("/ram-paddle/") or {}
                        if key.count("/") >= 3}, key=lambda rank: (len(rank), rank))
        missing = [str(rank) for rank in range(self.nnodes) if str(rank) not in ranks]
        return (f"{len(ranks)} of the {self.nnodes} machines (--nnodes) met at {where} within "
                f"--meet_timeout {self.timeout} s (ranks {', '.join(ranks) or 'none'}): "
                f"start rank {', '.join(missing)} with main.py --nnodes {self.nnodes}")

    def answers_as_launcher(self):
        """Whether Paddle's key-value server answers at --master."""
        return self.read("/healthy") == {"/healthy": "ok"}

    def port_held_by_another_program(self):
        """Whether --master's port is taken on this machine, and not by a Paddle launcher
        (which takes any program there for its own key-value server, and waits)."""
        import errno
        import socket
        import time

        host, port = self.master.rsplit(":", 1)
        with socket.socket() as probe:
            try:
                probe.bind((host, int(port)))
                return False
            except OSError as err:
                if err.errno != errno.EADDRINUSE:  # not this machine's address, or free
                    return False
        deadline = time.monotonic() + 5  # a launcher starting here answers within seconds
        while time.monotonic() < deadline:
            if self.answers_as_launcher():
                return False
            time.sleep(0.5)
        return True


def launch_machines(config, argv, script):
    """Train on config.nnodes machines, this one config.rank: Paddle's launcher runs one
    process of `script` with argv here. The launcher waits for ever for machines that never
    meet (a wrong --nnodes, a taken port, a missing or repeated rank); this stops instead,
    in one line saying what is wrong, after config.meet_timeout seconds or as soon as the
    master shows it. Exits with the launcher's exit code."""
    import sys
    import threading
    import time

    meeting = Meeting(config)

    failing = threading.Lock()  # the watch and the launcher can both fail: one line

    def fail(reason, seen_at_master=False):
        if not failing.acquire(blocking=False):
            threading.Event().wait()  # the first failure ends this process within seconds
        os.write(2, f"[!] {reason}\n".encode())
        if seen_at_master:  # keep the master up for the other machines to see it and say it too
            time.sleep(2)
        os._exit(1)  # Paddle's key-value server is a thread that would keep this process

    if config.rank == 0 and meeting.port_held_by_another_program():
        fail(f"--master {config.master}: its port is taken on this machine by another program "
             f"(ss -ltn): give another port, the same on every machine")

    def watch():
        deadline = time.monotonic() + config.meet_timeout
        try:
            while time.monotonic() < deadline:
                verdict = meeting.verdict()
                if verdict is True:
                    return
                if verdict:
                    fail(verdict, seen_at_master=True)
                time.sleep(0.5)
            fail(meeting.why_not_met())
        except Exception as err:  # the wait stays bounded whatever the master answered
            fail(f"the machines' meeting at --master {config.master} could not be followed: {err}")

    threading.Thread(target=watch, daemon=True).start()
    from paddle.distributed.launch.main import launch

    sys.argv = ["paddle.distributed.launch", "--master", config.master, "--nnodes",
                str(config.nnodes), "--rank", str(config.rank), "--nproc_per_node", "1",
                "--log_dir", os.path.join(config.logs_dir or "logs", "launch"), script, *argv]
    try:
        launch()  # ends with sys.exit(the processes' exit code)
    except Exception as err:  # how Paddle's launcher ends on two machines of one rank
        verdict = meeting.verdict()
        fail(verdict if isinstance(verdict, str) else f"Paddle's launcher stopped: {err}",
             seen_at_master=True)
    sys.exit(0)
