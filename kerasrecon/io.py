"""Crash-safe file system helpers: atomic directories and files, checksums, run-directory locks.

Every command that writes something a user keeps (prepared datasets, exports, reconstructions,
checkpoints) writes it next to its final place under a temporary name and renames it when complete,
so a crash, SIGKILL or full disk never leaves a half-written result under the final name:

* temporary siblings are named ``.<kind>-<pid>-<random>``; the next command of that kind removes the
  ones whose process is gone (a live concurrent process keeps its own);
* a finished directory gets the permissions any new directory would get under the user's umask
  (``tempfile.mkdtemp`` creates 0700).

A run directory is guarded by ``fcntl.flock`` on ``RUN/.lock``: ``kerasrecon fit`` holds it
exclusively, ``export``/``evaluate``/``compare`` share it. The OS drops the lock when the process
dies, so a killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from kerasrecon.errors import ConfigError

LOCK_FILE = ".lock"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def stale_temporaries(parent: Path, kind: str) -> list[Path]:
    """Temporary siblings ``.<kind>-<pid>-*`` in ``parent`` whose process no longer runs."""
    parent = Path(parent)
    if not parent.is_dir():
        return []
    stale = []
    for p in parent.glob(f".{kind}-*"):
        parts = p.name.split("-")
        try:
            pid = int(parts[1])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            stale.append(p)
    return stale


def remove_stale_temporaries(parent: Path, kind: str) -> list[Path]:
    """Delete what :func:`stale_temporaries` finds; returns the removed paths."""
    removed = stale_temporaries(parent, kind)
    for p in removed:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    return removed


def _remove(path: Path):
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def atomic_dir(final, kind: str, replace: bool = False):
    """Build a directory under a temporary name and move it to ``final`` when the block succeeds.

    Args:
        final: the directory to create.
        kind: short name of the producer (``prepare``, ``export``...), used in the temporary name.
        replace: replace an existing ``final`` (the caller has checked ``--force``); otherwise an
            existing empty directory is replaced and anything else is an error.

    Yields:
        the temporary directory (same file system as ``final``). On any exception (also
        ``KeyboardInterrupt``/``SystemExit``) it is removed and ``final`` is untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(final.parent, kind)
    tmp = Path(tempfile.mkdtemp(prefix=f".{kind}-{os.getpid()}-", dir=final.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
        if final.exists() or final.is_symlink():
            if replace:
                _remove(final)
            elif final.is_dir() and not any(final.iterdir()):
                final.rmdir()
            else:
                raise ConfigError(f"{final}: appeared while it was being written; nothing was replaced")
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(final, kind: str = "write"):
    """Write a file under a temporary sibling name, fsync it and rename it to ``final`` on success.

    Yields the temporary path; it is removed if the block raises.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(final.parent, kind)
    fd, name = tempfile.mkstemp(prefix=f".{kind}-{os.getpid()}-", suffix=final.suffix, dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path, text: str):
    """Replace ``path`` with ``text`` atomically (:func:`atomic_file`: temporary sibling, fsync, rename)."""
    with atomic_file(path) as tmp:
        tmp.write_text(text)


def sha256_file(path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class RunLock:
    """An ``fcntl.flock`` lock on ``RUN/.lock`` (exclusive for writers, shared for readers).

    Use as a context manager; the lock is released on exit or when the process dies.

    Args:
        run_dir: the run directory (must exist for an exclusive lock).
        exclusive: ``True`` for ``fit``, ``False`` for readers (export, evaluate, compare).
        option: how error messages name the directory (``--out``, ``--model``, ``RUN_DIR``).
    """

    def __init__(self, run_dir, exclusive: bool, option: str = "--out"):
        self.run_dir, self.exclusive, self.option = Path(run_dir), exclusive, option
        self._fd = None

    def acquire(self) -> "RunLock":
        """Take the lock or raise ``ConfigError`` naming the process that holds it."""
        path = self.run_dir / LOCK_FILE
        if not self.exclusive and not (self.run_dir / "config.json").is_file():
            return self  # not a run: the reader's own checks say so in their words
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        except OSError as exc:
            if self.exclusive:
                raise ConfigError(f"{self.option} {self.run_dir}: cannot create {LOCK_FILE} "
                                  f"({exc.strerror or exc})") from None
            if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):  # read-only run: no writer can run there
                return self
            raise ConfigError(f"{self.option} {self.run_dir}: cannot open {LOCK_FILE} ({exc.strerror or exc})") from None
        try:
            fcntl.flock(self._fd, (fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder()
            os.close(self._fd)
            self._fd = None
            who = f"PID {holder}" if holder else "another process"
            if self.exclusive:
                raise ConfigError(f"{self.option} {self.run_dir}: in use by another kerasrecon process ({who}); "
                                  "wait for it to finish or choose another directory") from None
            raise ConfigError(f"{self.option} {self.run_dir}: a training run ({who}) is writing it; "
                              "wait for it to finish (or export/evaluate a copy)") from None
        if self.exclusive:
            os.ftruncate(self._fd, 0)
            os.write(self._fd, f"{os.getpid()}\n".encode())
        return self

    def _holder(self):
        try:
            text = os.pread(self._fd, 64, 0).decode().strip()
            pid = int(text) if text else None
        except (OSError, ValueError):
            return None
        return pid if pid and _pid_alive(pid) else None  # a reader holds it; the file names the last writer

    def release(self):
        """Drop the lock (also done by the OS when the process ends)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
