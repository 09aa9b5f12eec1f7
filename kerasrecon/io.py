"""The output policy, crash-safe writes, checksums and run-directory locks.

**Output policy.** Every command that writes goes through :func:`check_output` before it creates
anything, with every argument already validated:

* an output that is a symbolic link is refused (kerasrecon never writes through a link, and the
  run lock is opened with ``O_NOFOLLOW``);
* an output that equals, contains or lies inside an input or run the command reads is refused
  (resolved paths are compared, so ``..`` and links in parent folders cannot hide the overlap);
* an existing output is refused unless ``--force``; ``--force`` has one meaning everywhere: replace
  what this command would write (a file it writes, or a directory that holds a previous result of the
  same command), never delete anything else;
* two outputs of one command that map to the same name are refused (:func:`check_distinct`).

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

from kerasrecon.errors import ConfigError, OutputError, arg

LOCK_FILE = ".lock"


def _real(path) -> Path:
    """``path`` with every symbolic link and ``..`` resolved (also for paths that do not exist yet)."""
    return Path(os.path.realpath(os.path.abspath(os.fspath(path))))


def _within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def check_output(
    path, option: str, *, inputs=(), force: bool = False, kind: str = "file", replaceable=None, what: str = ""
) -> Path:
    """Validate one output of a command before anything is created; returns it as a ``Path``.

    Args:
        path: the file or directory the command will write.
        option: how messages name it (``--out``, ``OUT``, ``--output``).
        inputs: ``(label, path)`` pairs of everything the command reads (files, directories, runs);
            ``None`` paths and ``demo`` are skipped.
        force: the command's ``--force``: an existing output may be replaced.
        kind: ``file`` (replaced as a whole), ``dir`` (a directory the command creates as a whole:
            must not exist, be empty, or with ``force`` satisfy ``replaceable``) or ``folder`` (a
            directory the command writes named files into; the files are checked one by one).
        replaceable: for ``kind="dir"``: ``callable(Path) -> bool``, true when an existing directory
            holds a previous result of this command (only such a directory is replaced by ``force``).
        what: for messages, what ``replaceable`` recognises (``a kerasrecon export``).

    Raises:
        OutputError: one line naming ``option``: a link, an overlap with an input, an existing output
            without ``force``, or (``kind="dir"``) a directory ``force`` may not replace.
    """
    path = Path(path)
    if os.path.islink(path):
        raise OutputError(
            f"{option} {path}: is a symbolic link; kerasrecon does not write through links "
            "(give the link's target, or another path)"
        )
    real = _real(path)
    for label, inp in inputs:
        if inp is None or str(inp) == "demo":
            continue
        other = _real(inp)
        if _within(real, other) or _within(other, real):
            relation = "is" if real == other else "lies inside" if _within(real, other) else "contains"
            raise OutputError(
                f"{option} {path}: {relation} {label} {inp}, which this command reads; choose an output outside it"
            )
    parent = real.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"{option} {path}: {parent} is a file, not a directory")
    if not path.exists():
        return path
    if kind == "file":
        if path.is_dir():
            raise OutputError(f"{option} {path}: is a directory; expected a file name")
        if not force:
            raise OutputError(f"{option} {path}: exists; pass {arg('force=True')} to replace it")
        return path
    if not path.is_dir():
        raise OutputError(f"{option} {path}: exists and is not a directory")
    if kind == "dir" and any(path.iterdir()):
        if not force:
            raise OutputError(f"{option} {path}: exists and is not empty; pass {arg('force=True')} to replace it")
        if replaceable is None or not replaceable(path):
            raise OutputError(
                f"{option} {path}: is not {what or 'a previous result of this command'}; {arg('force=True')} "
                "replaces only that, never other files (choose a new path)"
            )
    return path


def check_outputs_in(folder, names, option: str, force: bool = False) -> list[Path]:
    """The files ``folder/name`` a command will write into an existing or new ``folder``: each checked as
    a ``kind="file"`` output (no link, exists only with ``force``); returns them."""
    folder = Path(folder)
    paths = [folder / n for n in names]
    for p in paths:
        check_output(p, option, force=force)
    return paths


def check_distinct(pairs, option: str):
    """Refuse two outputs of one command that map to the same file.

    Args:
        pairs: ``(source, output path)`` pairs.
        option: how the message names the output (``--output``).
    """
    seen = {}
    for src, out in pairs:
        key = _real(out)
        if key in seen:
            raise OutputError(
                f"{option} {out}: both {seen[key]} and {src} would be written there; "
                "rename one of them or reconstruct them separately"
            )
        seen[key] = src


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


def _fsync_files(root: Path):
    """fsync every regular file under ``root`` (what a crash after the rename must find complete)."""
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            with open(path, "rb") as f:
                os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_dir(final, kind: str, replace: bool = False, option: str = ""):
    """Build a directory under a temporary name and move it to ``final`` when the block succeeds.

    Args:
        final: the directory to create.
        kind: short name of the producer (``prepare``, ``export``...), used in the temporary name.
        replace: replace an existing ``final`` (the caller has checked ``--force``); otherwise an
            existing empty directory is replaced and anything else is an error.
        option: how a write error names ``final`` (``OUT``, ``--out``).

    Yields:
        the temporary directory (same file system as ``final``). Its files are fsynced before the
        rename. On any exception (also ``KeyboardInterrupt``/``SystemExit``) it is removed and ``final``
        is untouched.
    """
    final = Path(final)
    if final.is_symlink():
        raise OutputError(f"{final}: is a symbolic link; kerasrecon does not write through links")
    with _named_os_errors(final, option):
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(final.parent, kind)
        tmp = Path(tempfile.mkdtemp(prefix=f".{kind}-{os.getpid()}-", dir=final.parent))
    try:
        with _named_os_errors(final, option):
            os.chmod(tmp, 0o777 & ~_umask())
            yield tmp
            _fsync_files(tmp)
            if final.exists() or final.is_symlink():
                if replace and not final.is_symlink():
                    _remove(final)
                elif final.is_dir() and not final.is_symlink() and not any(final.iterdir()):
                    final.rmdir()
                else:
                    raise ConfigError(f"{final}: appeared while it was being written; nothing was replaced")
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(final, kind: str = "write", option: str = ""):
    """Write a file under a temporary sibling name, fsync it and rename it to ``final`` on success.

    Yields the temporary path; it is removed if the block raises. A write error (full disk) becomes
    one ``OutputError`` line naming ``option`` and ``final``.
    """
    final = Path(final)
    if final.is_symlink():
        raise OutputError(f"{final}: is a symbolic link; kerasrecon does not write through links")
    with _named_os_errors(final, option):
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(final.parent, kind)
        fd, name = tempfile.mkstemp(prefix=f".{kind}-{os.getpid()}-", suffix=final.suffix, dir=final.parent)
        os.close(fd)
    tmp = Path(name)
    try:
        with _named_os_errors(final, option):
            os.chmod(tmp, 0o666 & ~_umask())
            yield tmp
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            if final.is_symlink():
                raise OutputError(f"{final}: became a symbolic link while it was being written; nothing was replaced")
            os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


_WRITE_ERRORS = (
    "No space left on device",
    "File too large",
    "Disk quota exceeded",
    "Read-only file system",
    "Permission denied",
)


@contextlib.contextmanager
def _named_os_errors(final: Path, option: str = ""):
    """Turn an ``OSError`` (full disk, quota, permissions; h5py and TensorFlow wrap some of them) raised
    while ``final`` is written into one ``OutputError`` line naming ``final``."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        other = getattr(exc, "filename", None)
        if other and not str(other).startswith(str(final.parent)):  # an input failed, not the output
            raise OutputError(
                f"{other}: {reason} (while writing {final}; nothing was written under that name)"
            ) from None
        raise OutputError(
            f"{option + ' ' if option else ''}{final}: cannot write ({reason}); nothing was written under that name"
        ) from None
    except Exception as exc:  # TensorFlow reports ENOSPC/EFBIG as tf.errors.*Error naming the file, not OSError
        text = str(exc)
        if exc.__class__.__module__.startswith("tensorflow") and str(final.parent) in text:
            known = [r for r in _WRITE_ERRORS if r.lower() in text.lower()]
            reason = known[0] if known else exc.__class__.__name__
            raise OutputError(
                f"{option + ' ' if option else ''}{final}: cannot write ({reason}); nothing was written under that name"
            ) from None
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

    def __init__(self, run_dir, exclusive: bool, option: str | None = None):
        self.run_dir, self.exclusive, self.option = Path(run_dir), exclusive, option or arg("out")
        self._fd = None

    def acquire(self) -> RunLock:
        """Take the lock or raise ``ConfigError`` naming the process that holds it."""
        path = self.run_dir / LOCK_FILE
        if not self.exclusive and not (self.run_dir / "config.json").is_file():
            return self  # not a run: the reader's own checks say so in their words
        if os.path.islink(path):  # never follow it: the lock would truncate the link's target
            raise ConfigError(
                f"{self.option} {self.run_dir}: {LOCK_FILE} is a symbolic link; remove it "
                "(kerasrecon keeps its own lock file there)"
            )
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666 & ~_umask())
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ConfigError(f"{self.option} {self.run_dir}: {LOCK_FILE} is a symbolic link; remove it") from None
            if self.exclusive:
                raise ConfigError(
                    f"{self.option} {self.run_dir}: cannot create {LOCK_FILE} ({exc.strerror or exc})"
                ) from None
            if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):  # read-only run: no writer can run there
                return self
            raise ConfigError(
                f"{self.option} {self.run_dir}: cannot open {LOCK_FILE} ({exc.strerror or exc})"
            ) from None
        try:
            fcntl.flock(self._fd, (fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder()
            os.close(self._fd)
            self._fd = None
            who = f"PID {holder}" if holder else "another process"
            if self.exclusive:
                raise ConfigError(
                    f"{self.option} {self.run_dir}: in use by another kerasrecon process ({who}); "
                    "wait for it to finish or choose another directory"
                ) from None
            raise ConfigError(
                f"{self.option} {self.run_dir}: a training run ({who}) is writing it; "
                "wait for it to finish (or export/evaluate a copy)"
            ) from None
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
