"""A run folder is a transaction: one writer at a time, and a command's output appears whole or not at all.

`transaction(folder)` takes the folder's lock (`fcntl.flock` on `<folder>/.lock`), stages a copy of the
folder beside it (hard links: cheap, and every writer replaces files rather than editing them), lets the
command write there, and swaps the staging folder in only when the command succeeded (one atomic
`renameat2(RENAME_EXCHANGE)` where the kernel has it). On an error, Ctrl-C or SIGTERM the staging folder
is deleted and the folder is as it was. A writer killed outright (SIGKILL) leaves a hidden staging
folder that the next writer removes.

What a transaction may touch is toolkit/ownership.py's rule: a folder holding anything the toolkit did not
make is refused before the lock file is made; the staging copy holds no link (a link in place of one of the
toolkit's entries is replaced, never written through); the folder's mode, group and extended attributes (ACLs)
carry over to the copy that replaces it.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import shutil
import signal
import stat
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from toolkit import fileio, ownership
from toolkit.errors import InputError

LOCK = ownership.LOCK
# Set for a process that writes into a folder its parent staged (the container side of a host run):
# the parent holds the lock and swaps the folder in.
STAGED_ENV = "CENTERFACE_STAGED"
_STAGING, _OLD = "staging", "old"
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2

_outcome: list[str] = []  # what the last rolled-back transaction kept, for the CLI's message
_staged: dict[str, str] = {}  # staging folder -> the run folder it stands for, for messages


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (exit 143 instead of 130)."""


def handle_sigterm() -> None:
    """Make SIGTERM unwind like Ctrl-C, so every `finally` and rollback runs."""

    def raise_terminated(signum: int, frame: object) -> None:
        raise Terminated()

    signal.signal(signal.SIGTERM, raise_terminated)


@contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Ctrl-C and SIGTERM are noted inside, and raised on leaving. For native code that calls back into
    Python (PyTorch's import, tracing and ONNX export): an exception raised in such a callback aborts
    the whole process (pybind11 calls terminate), leaving the staging folder behind."""
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return
    noted: list[int] = []
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in (sig for sig, handler in previous.items() if handler is not signal.SIG_IGN):  # ignored stays so
        signal.signal(sig, lambda signum, _frame: noted.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if noted:
        raise Terminated() if noted[0] == signal.SIGTERM else KeyboardInterrupt()


def last_outcome() -> str | None:
    """What the last failed transaction left (e.g. 'runs/cpu kept as it was'), once."""
    return _outcome.pop() if _outcome else None


def public(text: str) -> str:
    """`text` with staging folders named as the run folders they stand for."""
    for staging, folder in _staged.items():
        text = text.replace(staging, folder)
    return text


def staging_path(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.{_STAGING}-{os.getpid()}"


@contextmanager
def transaction(folder: Path, command: str, fresh: Sequence[str] = (), reads: Path | None = None,
                kind: str = "run") -> Iterator[Path]:
    """Yield the staging folder for `folder`: a copy of its current files minus `fresh` (entries this
    command owns and writes anew). It replaces `folder` when the block succeeds. `reads`: the data set the
    command reads, which `folder` must not be or lie inside. `kind`: the family of commands that write such
    a folder (`run`: run, bench, calibrate, convert; `detect`): a folder of another kind is refused."""
    check_apart(folder, reads)
    if os.environ.get(STAGED_ENV):  # our parent staged `folder`, holds its lock and will swap it in
        folder.mkdir(parents=True, exist_ok=True)
        with fileio.writing_into(folder):
            for name in fresh:
                fileio.remove(folder / name)
            yield folder
        return
    folder = Path(os.path.realpath(folder))  # an --out that is a link: its target, staged beside the target
    if os.path.ismount(folder):
        raise InputError(f"{folder}: a mount point, which cannot be swapped for its staged copy by a rename",
                         "pass --out a folder inside it")
    ownership.check_folder(folder, kind)  # before the lock file: a folder that is not ours gets nothing
    created = _make_folder(folder)
    new_lock = not os.path.lexists(folder / LOCK)
    lock = _lock(folder, command)
    staging = staging_path(folder)
    staged_lock = None
    _outcome.clear()
    _staged[str(staging)] = str(folder)
    try:
        ownership.check_folder(folder, kind)  # again under the lock: what another writer did meanwhile
        _sweep(folder)
        _link_copy(folder, staging, skip={LOCK, *fresh})
        staged_lock = _lock(staging, command)  # the lock that holds the path once staging is swapped in
        with fileio.writing_into(staging):
            yield staging
        fileio.write_text(staging / ownership.RECORD, ownership.sealed(staging, kind))
        _commit(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created and _only_lock(folder):
            shutil.rmtree(folder, ignore_errors=True)
            _outcome.append(f"{folder} not created")
        else:
            if new_lock:  # byte for byte as before: the lock file too
                (folder / LOCK).unlink(missing_ok=True)
            _outcome.append(f"{folder} kept as it was")
        raise
    finally:
        for fd in (staged_lock, lock):
            if fd is not None:
                _release(fd)


def check_apart(out: Path, data: Path | None) -> None:
    """A run folder never is, or lies inside, the data set it reads (its staging copy would replace it)."""
    if data is None:
        return
    out_real, data_real = Path(os.path.realpath(out)), Path(os.path.realpath(data))
    if out_real == data_real or data_real in out_real.parents:
        raise InputError(f"{out}: the run folder is {'the data set' if out_real == data_real else 'inside the data set'} "
                         f"{data}, which a run only reads", "pass --out a folder outside --data")


def _make_folder(folder: Path) -> bool:
    """Create `folder` (and its parents); True when it did not exist. Bad paths are one line."""
    if folder.is_dir():
        return False
    if folder.exists():
        raise InputError(f"{folder}: exists and is not a folder")
    try:
        folder.mkdir(parents=True)
    except OSError as exc:
        raise InputError(f"{exc.filename or folder}: cannot create the run folder ({exc.strerror})") from None
    return True


def _holder(path: Path) -> str:
    for _ in range(20):  # the holder writes its line just after taking the lock
        try:
            info = json.loads(path.read_text() or "null")
        except (OSError, ValueError):
            info = None
        if info:
            return f"pid {info['pid']}, started {info['started']}, {info['command']}"
        time.sleep(0.01)
    return "a process that has not said which"


def _lock(folder: Path, command: str) -> int:
    """Take `folder`'s lock or fail at once naming the holder. A lock whose holder died is free (the
    kernel drops flock locks with their process)."""
    path = folder / LOCK
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o666)
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # a link put in the lock file's place: replaced, never written through
                os.unlink(path)
                continue
            raise InputError(f"{path}: cannot create the lock file ({exc.strerror})") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO or device in its place: not ours to write
            os.close(fd)
            raise InputError(f"{path}: not a regular file, so it cannot be the run folder's lock file")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InputError(f"{folder}: busy: another command is writing it ({_holder(path)})",
                             "wait for it to finish or pass another --out") from None
        try:
            current = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:  # else a commit swapped the folder between open and flock: take the new lock file
            break
        os.close(fd)
    info = {"pid": os.getpid(), "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": command}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    return fd


def _release(fd: int) -> None:
    """Clear the holder's line (a folder at rest has an empty lock file), then drop the lock."""
    try:
        os.ftruncate(fd, 0)
    except OSError:
        pass
    os.close(fd)


def _sweep(folder: Path) -> None:
    """Remove what writers killed outright left beside `folder` (their pid is gone)."""
    for stale in folder.parent.glob(f".{folder.name}.*-*"):
        kind, _, pid = stale.name.rpartition("-")
        if kind.endswith((f".{_STAGING}", f".{_OLD}")) and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _link_copy(src: Path, dst: Path, skip: set[str]) -> None:
    """Copy the tree `src` to `dst` with hard links (a plain copy where links are refused); folders keep their
    mode, group and extended attributes. Symbolic links are left out: the toolkit makes none, and a tool
    writing into the copy (atc, AMCT, TensorRT) must not write through one to files elsewhere; the new state
    has the toolkit's own entries in their place."""
    try:
        dst.mkdir()
    except OSError as exc:  # the parent's fault, named as such (the message would show `dst` as the run folder)
        raise InputError(f"{dst.parent}: cannot make the staging copy of {src.name} in it ({exc.strerror})",
                         "a run folder is staged beside itself: its parent must be writable") from None
    for root, dirs, files in os.walk(src):
        rel = Path(root).relative_to(src)
        _same_access(Path(root), dst / rel)
        if rel == Path("."):
            dirs[:] = [d for d in dirs if d not in skip]
            files = [f for f in files if f not in skip]
        for d in list(dirs):
            if (Path(root) / d).is_symlink():  # a link the toolkit did not make: left out, never followed
                dirs.remove(d)
            else:
                (dst / rel / d).mkdir()
        for f in files:
            source, target = Path(root) / f, dst / rel / f
            if source.is_symlink():
                continue
            try:
                os.link(source, target)
            except OSError:
                shutil.copy2(source, target)


def _same_access(src: Path, dst: Path) -> None:
    """`dst` with `src`'s mode bits (setgid too), group and extended attributes (ACLs), as far as this user
    may set them."""
    info = os.stat(src)
    try:
        os.chown(dst, -1, info.st_gid)
    except OSError:
        pass
    try:
        shutil.copystat(src, dst, follow_symlinks=False)
        os.chmod(dst, stat.S_IMODE(info.st_mode))
    except OSError:
        pass


def _only_lock(folder: Path) -> bool:
    try:
        return [p.name for p in folder.iterdir()] in ([LOCK], [])
    except OSError:
        return False


def _commit(staging: Path, folder: Path) -> None:
    """Swap `staging` in for `folder` with Ctrl-C and SIGTERM held back, then delete the old state."""
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        if _exchange(staging, folder):
            old = staging
        else:  # no RENAME_EXCHANGE here: two renames, the old state parked under a hidden name first
            old = folder.parent / f".{folder.name}.{_OLD}-{os.getpid()}"
            os.rename(folder, old)
            os.rename(staging, folder)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2); False where the system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))
