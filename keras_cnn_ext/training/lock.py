"""One writer per run folder: a lock that a second process on the same folder cannot take.

``keras-cnn-ext train``, ``tune`` (the chief) and ``export`` hold `folder_lock(DIR)` while they
run, so a double-submitted job (``train ... --output runA --resume`` started twice) fails at
once instead of training the same epochs into the same folder twice. The lock is the file
``.<name>.lock`` *beside* the folder (so it neither makes the folder "non-empty" nor stands in
the way of an export renamed into place), holding the pid, host, command and start time of its
holder as JSON.

How it is made (and why):

* **Exclusion is `fcntl.flock`** on that file, not the file's existence. The kernel drops the
  lock when its process dies, however it dies (SIGKILL included), so a crashed run never leaves
  a lock that only a human can clear, and there is no "is the old holder still alive?" race
  between two processes taking over the same stale lock: the kernel lets exactly one of them
  have it. The file left by a killed holder still names it, so its successor says that it takes
  the lock over from that pid and host.
* **Clusters**: Linux NFS clients (v3 through NLM, v4 natively) turn `flock` into an NFS
  byte-range lock that the server arbitrates between hosts, and a client that dies loses it
  when its lease ends. Mounts with ``nolock`` / ``local_lock=flock`` lock per host only; on
  file systems without `flock` (ENOLCK, EOPNOTSUPP) the lock falls back to a file created with
  ``O_CREAT | O_EXCL`` (atomic there too), which a process on the same host may take over once
  the pid it names is gone; a fallback lock of another host is never taken over: delete it by
  hand if that host's job is dead (the error names the file).
* **Release** unlinks the file before closing it. A process that opened the old file just
  before and wins its `flock` afterwards would lock a file no longer in the folder, so every
  acquisition checks that the path still names the inode it locked, and retries otherwise.
* A process may take the same folder's lock again (nested use: the command line and the Python
  function it calls); the lock is released when the outermost holder leaves.

>>> import os, tempfile
>>> run = os.path.join(tempfile.mkdtemp(), "runA")
>>> with folder_lock(run):
...     holder = read_holder(run)
>>> holder["pid"] == os.getpid(), os.path.exists(lock_path(run))
(True, False)
"""

import contextlib
import datetime
import errno
import json
import os
import socket
import sys
import time

from keras_cnn_ext._process import pid_alive

try:
    import fcntl
except ImportError:  # Windows: no flock; the O_EXCL fallback below serves
    fcntl = None

__all__ = ["folder_lock", "FolderLockedError", "lock_path", "read_holder"]

# errors of a file system that cannot flock (the exclusive-create fallback is used instead)
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
_HELD = {}  # lock file -> [fd or None, depth, kind]; this process's locks


class FolderLockedError(RuntimeError):
    """The folder is in use by another process (its pid and host are in `holder`).

    The command line reports it with exit code 2, like a bad argument: nothing was written.
    """

    def __init__(self, folder, holder, path):
        self.folder, self.holder, self.lock_file = folder, holder or {}, path
        pid, host = self.holder.get("pid", "?"), self.holder.get("host", "?")
        what = self.holder.get("command") or "another keras_cnn_ext process"
        since = self.holder.get("since")
        super().__init__(
            f"{folder} is in use by pid {pid} on host {host} ({what}"
            + (f", since {since}" if since else "") + "): one process writes a run folder at "
            "a time. Wait for it to finish, stop it, or choose another folder. (Nothing was "
            f"written; the lock is {path}.)")


def lock_path(folder):
    """The lock file of `folder`: ``.<name>.lock`` beside it (symbolic links resolved, so every
    spelling of one folder shares one lock)."""
    folder = os.path.realpath(os.path.abspath(os.fspath(folder)))
    parent, name = os.path.split(folder)
    return os.path.join(parent, f".{name}.lock")


def _parse(text):
    try:
        holder = json.loads(text)
    except ValueError:
        return None
    return holder if isinstance(holder, dict) else None


def read_holder(folder):
    """The holder recorded in `folder`'s lock file (a dict with pid, host, ...), or None."""
    try:
        with open(lock_path(folder), encoding="utf-8") as f:
            return _parse(f.read())
    except OSError:
        return None


def _record(command):
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "command": command or " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
            "since": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}


def _gone(holder):
    """Whether `holder` is a process of this host that no longer runs."""
    return (holder is not None and holder.get("host") == socket.gethostname()
            and not pid_alive(holder.get("pid")))


def _refusal(folder, path):
    # The holder writes its record right after it wins the lock: give it a moment.
    holder = None
    for _ in range(20):
        with contextlib.suppress(OSError):
            with open(path, encoding="utf-8") as f:
                holder = _parse(f.read())
        if holder is not None and not _gone(holder):
            break
        time.sleep(0.05)
    return FolderLockedError(folder, holder, path)


def _announce(folder, previous, announce):
    if previous is not None and announce is not None:
        announce(f"Taking over the lock on {folder} left by pid {previous.get('pid', '?')} on "
                 f"host {previous.get('host', '?')} (that process is no longer running).")


def _acquire_flock(folder, path, record, announce):
    """The flock'ed descriptor of `path`; None when the file system cannot flock."""
    for _ in range(100):  # a retry only follows a release racing with us: bounded anyway
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in _NO_FLOCK:
                return None
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise _refusal(folder, path) from None
            raise
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # its holder unlinked it while we waited: lock the current file
            os.close(fd)
            continue
        previous = _parse(os.pread(fd, 1 << 16, 0).decode("utf-8", "replace"))
        _announce(folder, previous, announce)
        data = json.dumps(record).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.fsync(fd)
        return fd
    raise OSError(f"could not lock {path}: it kept being replaced")


def _acquire_exclusive(folder, path, record, announce):
    """The fallback: the lock is the file's existence, created atomically (O_CREAT | O_EXCL)."""
    data = json.dumps(record).encode()
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            previous = None
            with contextlib.suppress(OSError):
                with open(path, encoding="utf-8") as f:
                    previous = _parse(f.read())
            if not _gone(previous):
                raise _refusal(folder, path) from None
            # Two processes may both find the same dead holder; the unlink + O_EXCL create
            # lets one of them win (the other's create fails and it reports the winner) unless
            # the second unlinks the winner's fresh file between the two steps. That window is
            # a few microseconds on one host, and this path only serves file systems that
            # cannot flock.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            _announce(folder, previous, announce)
            continue
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        return
    raise _refusal(folder, path)


def _stderr(message):
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def folder_lock(folder, command=None, announce=_stderr):
    """Holds the lock of `folder` for the duration of a ``with`` block.

    Args:
        folder: the run (or export) folder; it need not exist. Its parent is created.
        command: what the holder does, for the message of a refused process (default: this
            process's command line).
        announce: called with the message when a killed process's lock is taken over (default:
            print to stderr); None for silence.

    Raises:
        FolderLockedError: another process holds the folder (nothing was written).
    """
    folder = os.fspath(folder)
    path = lock_path(folder)
    held = _HELD.get(path)
    if held is not None:
        held[1] += 1
    else:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        record = _record(command)
        fd = _acquire_flock(folder, path, record, announce) if fcntl is not None else None
        if fd is None:
            _acquire_exclusive(folder, path, record, announce)
        held = _HELD[path] = [fd, 1]
    try:
        yield path
    finally:
        held[1] -= 1
        if held[1] == 0:
            del _HELD[path]
            # unlink first, then close: see "Release" in the module docstring
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            if held[0] is not None:
                os.close(held[0])
