"""Files: reading an untrusted one bounded, and rewriting a user's one as a transaction (``edit``).

Reading takes only a regular file (never a FIFO, a device or a folder) of at most so many bytes.
Writing into a user's folder follows git's ``config.lock`` discipline: an exclusive lock held across
read-modify-write, the file re-read under it, a temporary file beside the target with the target's
mode, owner and group, fsync, then an atomic rename over the target (through a symbolic link, which
stays a link). What the user cannot write, or has marked read-only, is refused and left untouched.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import ConfigError, UsageError, clip

MAX_FILE_BYTES = 1 << 20  # 1 MiB: a real .devswitchrc is well under 10 KiB


_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def read_bounded(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; anything else is a ConfigError naming it.

    Opened non-blocking, so a FIFO in the file's place cannot hang us; /dev/zero and friends are
    refused by their type before a byte is read; the read stops at ``limit + 1`` bytes whatever the
    file claims its size is.
    """
    name = str(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except (OSError, ValueError) as exc:
        broken = isinstance(exc, FileNotFoundError) and os.path.islink(path)
        raise ConfigError(
            f"cannot open the file: {'a broken symbolic link' if broken else why(exc)}",
            where=name,
            hint="make it a readable file, or remove it",
        ) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = next((label for test, label in _FILE_KINDS if test(info.st_mode)), "not a regular file")
            raise ConfigError(
                f"is {kind}, not a regular file: devswitch reads only regular files",
                where=name,
                hint="replace it with a YAML file, or remove it",
            )
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 16, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise ConfigError(
            f"cannot read the file: {why(exc)}", where=name, hint="make it a readable file, or remove it"
        ) from None
    finally:
        os.close(fd)
    if size > limit:
        raise ConfigError(
            f"the file is larger than {limit // 1024} KiB (a .devswitchrc holds a few settings)",
            where=name,
            hint="is this the right file? keep only devswitch's settings in it",
        )
    return b"".join(chunks)


def why(exc: BaseException) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else clip(str(exc))


# --- writing a user's file: a transaction ------------------------------------------------------------
#
# The lock is a separate file, ``<target>.lock`` beside the real target, locked with flock(2): the target
# itself is no good, since the rename that ends a write replaces its inode (a writer waiting on the old
# one would then edit a file nobody reads any more). The lock file is removed when the write is done
# (nothing is left in the user's folder); a writer that locked a lock file someone removed meanwhile sees
# that the name now belongs to another inode and starts over, so two writers never both hold "the" lock.
# A lock left by a killed process is no lock: flock is released with the process.

LOCK_TIMEOUT_S = 10.0


def _access(path: Path, mode: int) -> bool:
    """os.access with the effective ids where the platform allows (what a write would actually be checked with)."""
    if os.access in os.supports_effective_ids:
        return os.access(path, mode, effective_ids=True)
    return os.access(path, mode)


def _refuse(message: str, path: Path, hint: str) -> UsageError:
    return UsageError(message, where=str(path), hint=hint)


def _check_folder(folder: Path, shown: Path) -> None:
    try:
        info = os.stat(folder)
    except FileNotFoundError:
        raise _refuse(
            f"cannot create the file: its folder {folder} does not exist",
            shown,
            "create the folder, or point the link at an existing one",
        ) from None
    except OSError as exc:
        raise _refuse(f"cannot check its folder {folder}: {why(exc)}", shown, "fix the folder's permissions") from None
    if not stat.S_ISDIR(info.st_mode):
        raise _refuse(f"cannot create the file: {folder} is not a folder", shown, "fix the path")
    # mode 0555 is the user saying "hands off", and devswitch honours it even when running as root
    if not info.st_mode & 0o222 or not _access(folder, os.W_OK | os.X_OK):
        raise _refuse(
            f"cannot write in its folder {folder} (read-only, mode {stat.S_IMODE(info.st_mode):04o})",
            shown,
            "make the folder writable (chmod u+w), or run in a folder you can write",
        )


def writable_target(path: Path) -> Path:
    """The file a write to ``path`` would change (a symbolic link followed to its final target), checked.

    Refused with a UsageError naming ``path``: a link loop, a dangling link (a link whose target does not
    exist: writing would create a file wherever the link points, such as a shell's start-up file, so
    devswitch creates files only under their own name), something that is not a regular file, a file with
    more than one name (hard links: the atomic rename that ends a rewrite would give this name the new text
    and leave the other names with the old, so devswitch refuses rather than split them; edit the file by
    hand, or replace the link by a copy), a file or folder the user cannot write or has marked read-only
    (mode without any write bit, honoured even as root), and a file whose owner or group a rewrite could
    not keep. A missing file is fine when its folder can take it.
    """
    path = Path(os.path.abspath(path))
    real = Path(os.path.realpath(path))
    if os.path.islink(real):
        raise _refuse("cannot follow the symbolic link: it points to itself (a loop)", path, "fix or remove the link")
    try:
        info = os.stat(real)
    except FileNotFoundError:
        if os.path.islink(path):
            raise _refuse(
                f"is a symbolic link to {real}, which does not exist: devswitch does not create a file "
                "through a link (it could be any file, a shell's start-up file included)",
                path,
                f"create {real} first if the link is yours, or remove the link",
            ) from None
        _check_folder(real.parent, path)
        return real
    except OSError as exc:
        raise _refuse(f"cannot check the file: {why(exc)}", path, "fix the path or its permissions") from None
    _check_file(info, real, path)
    _check_folder(real.parent, path)
    _check_owner(info, path)
    return real


def _check_file(info: os.stat_result, real: Path, path: Path) -> None:
    """A regular file with one name that the user may write."""
    if not stat.S_ISREG(info.st_mode):
        raise _refuse(f"{real} is not a regular file", path, "replace it with a YAML file, or remove it")
    if info.st_nlink > 1:
        raise _refuse(
            f"the file{'' if real == path else f' ({real})'} has {info.st_nlink} names (hard links): a rewrite "
            "replaces this name only and would leave the others with the old text; devswitch leaves it untouched",
            path,
            "add the lines by hand, or make this name a copy of its own (cp --remove-destination) first",
        )
    mode = stat.S_IMODE(info.st_mode)
    if not mode & 0o222 or not _access(real, os.W_OK):
        target = "" if real == path else f" (the link's target, {real})"
        state = (
            f"is read-only (mode {mode:04o})"
            if not mode & 0o222
            else f"is not writable by you (mode {mode:04o}, owner id {info.st_uid})"
        )
        raise _refuse(
            f"the file{target} {state}: devswitch leaves it untouched",
            path,
            "make it writable (chmod u+w) if devswitch may change it, or add the lines by hand",
        )


def _check_owner(info: os.stat_result, path: Path) -> None:
    """A rewrite (a new file renamed over this one) can keep the file's owner and group."""
    euid = os.geteuid()
    if euid != 0 and info.st_uid != euid:  # a rewritten file would be ours: refuse to change who owns it
        raise _refuse(
            f"the file belongs to user id {info.st_uid}: a rewrite would make it yours",
            path,
            "ask its owner, or add the lines by hand",
        )
    if euid != 0 and info.st_gid not in (os.getegid(), *os.getgroups()):
        raise _refuse(
            f"the file belongs to group id {info.st_gid}, which you are not in: a rewrite could not keep its group",
            path,
            "ask its owner, or add the lines by hand",
        )


def open_lock(lock: Path, shown: Path | None = None) -> int:
    """A descriptor on the lock file ``lock``, created if missing, for flock(2); a UsageError naming it when it
    cannot be one. Never truncated (a lock file holds nothing) and never through a symbolic link
    (O_NOFOLLOW): a link planted at a lock's name (``runs.jsonl.lock -> ~/.bashrc`` in a cloned repository)
    must not let devswitch create, open or empty the file it points to. Only a regular file is a lock:
    a FIFO, a device or a folder in its place is refused (non-blocking, so a FIFO cannot hang us)."""
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)
    where = str(shown if shown is not None else lock)
    hint = f"remove {lock}: devswitch makes its lock file itself"
    try:
        fd = os.open(lock, flags, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP or os.path.islink(lock):
            raise UsageError(
                f"the lock file {lock} is a symbolic link (to {os.readlink(lock) if os.path.islink(lock) else '?'}): "
                "devswitch never opens a lock through a link",
                where=where,
                hint=hint,
            ) from None
        raise UsageError(
            f"cannot create the lock file {lock}: {why(exc)}",
            where=where,
            hint="make the folder writable, or remove what is in the lock file's place",
        ) from None
    try:
        info = os.fstat(fd)
    except OSError:
        os.close(fd)
        raise
    if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
        os.close(fd)
        kind = (
            next((label for test, label in _FILE_KINDS if test(info.st_mode)), "not a regular file")
            if not stat.S_ISREG(info.st_mode)
            else f"a file with {info.st_nlink} names (hard links)"
        )
        raise UsageError(f"the lock file {lock} is {kind}, not a lock devswitch made", where=where, hint=hint)
    return fd


def _take(lock: Path, shown: Path | None, timeout: float | None) -> int:
    """A descriptor holding the exclusive flock of the file named ``lock`` now. A lock file removed (and maybe
    made anew) while we waited is no longer "the" lock: the one there now is taken instead. Without a
    ``timeout`` it waits as long as it takes; after it, a UsageError naming ``shown``."""
    import fcntl

    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        fd = open_lock(lock, shown)
        try:
            if timeout is None or deadline is None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            else:
                _flock_by(fd, lock, shown, timeout, deadline)
            try:
                named = os.stat(lock, follow_symlinks=False)
                held = os.fstat(fd)
                current = (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)
            except FileNotFoundError:
                current = False
        except BaseException:
            os.close(fd)
            raise
        if current:
            return fd
        os.close(fd)


def _flock_by(fd: int, lock: Path, shown: Path | None, timeout: float, deadline: float) -> None:
    import fcntl

    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise _refuse(
                    f"another process has held the lock {lock} for {timeout:.0f} s",
                    shown or lock,
                    "wait for the other devswitch to finish, and try again",
                ) from None
            time.sleep(0.005)


@contextlib.contextmanager
def hold_lock(lock: Path, shown: Path | None = None, timeout: float | None = None) -> Iterator[None]:
    """Hold the exclusive lock file ``lock`` (made if missing, never through a link) for the ``with`` block, and
    remove it after; ``shown`` is the file named in errors. ``timeout`` None waits as long as it takes, else
    after ``timeout`` s another process still holding it is a UsageError. One loop for every writer."""
    fd = _take(lock, shown, timeout)
    try:
        yield
    finally:
        # No empty lock file is left behind. It is removed while it is held, which is safe because every
        # taker checks, once it holds a lock, that the file it holds is still the one named ``lock`` (_take):
        # one that opened this file and waits on it finds it unnamed when it gets it, and takes the new one.
        # Removed after the release instead, it could take away the file another process has just locked.
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)  # releases the lock


def _locked(real: Path, shown: Path, timeout: float = LOCK_TIMEOUT_S) -> contextlib.AbstractContextManager[None]:
    return hold_lock(real.with_name(real.name + ".lock"), shown, timeout)


def _decode(data: bytes, shown: Path) -> tuple[str, bool, str]:
    """(text with LF line ends, whether it began with a UTF-8 BOM, the line end to write back)."""
    bom = data.startswith(b"\xef\xbb\xbf")
    try:
        text = data[3 if bom else 0 :].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _refuse(
            f"not a UTF-8 text file ({exc.reason} at byte {exc.start})", shown, "save the file as UTF-8"
        ) from None
    newline = "\r\n" if "\r\n" in text else "\n"
    return text.replace("\r\n", "\n"), bom, newline


def _write_beside(real: Path, payload: bytes, before: os.stat_result | None, verify) -> None:
    """Write ``payload`` to a new file beside ``real`` with ``before``'s mode, owner and group (a new file:
    as the umask says), check it, and rename it over ``real``; on any failure the temporary file is gone."""
    temporary = real.with_name(f".{real.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o666)
    try:
        try:
            if before is not None:
                made = os.fstat(fd)
                if (made.st_uid, made.st_gid) != (before.st_uid, before.st_gid):
                    try:  # before fchmod: chown clears the set-id bits
                        os.fchown(fd, before.st_uid, before.st_gid)
                    except OSError as exc:
                        raise UsageError(
                            f"cannot keep the file's owner and group ({before.st_uid}:{before.st_gid}): "
                            f"{why(exc)}; it is unchanged",
                            where=str(real),
                            hint="ask its owner, or add the lines by hand",
                        ) from None
                os.fchmod(fd, stat.S_IMODE(before.st_mode))
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if verify is not None:
            verify(temporary)
        os.replace(temporary, real)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    with contextlib.suppress(OSError):  # the rename itself durable; not possible everywhere, never an error
        folder = os.open(real.parent, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def edit(
    path: Path,
    change: Callable[[str | None], str],
    *,
    verify: Callable[[Path], None] | None = None,
    limit: int = MAX_FILE_BYTES,
) -> Path:
    """Rewrite the user's text file at ``path`` as one transaction; returns the file actually written.

    ``change`` gets the file's text as read under the lock (``None`` when there is no file yet), with LF
    line ends, and returns the new text; the file keeps its line ends (CRLF stays CRLF) and a UTF-8 BOM.
    ``verify`` may check the new file (a temporary path beside the target) before it replaces the old.
    A symbolic link is followed to its target and stays a link. Refusals and failures are UsageErrors
    naming ``path`` (never the temporary file), and leave the file as it was.
    """
    shown = Path(os.path.abspath(path))
    for _ in range(8):
        real = writable_target(shown)
        with _locked(real, shown):
            if writable_target(shown) != real:
                continue  # the link was pointed elsewhere while we waited for the lock: lock that one
            try:
                before = os.stat(real)
            except FileNotFoundError:
                before = None
            except OSError as exc:
                raise _refuse(f"cannot check the file: {why(exc)}", shown, "fix its permissions") from None
            text, bom, newline = _decode(read_bounded(real, limit), shown) if before else (None, False, "\n")
            new = change(text)
            payload = (b"\xef\xbb\xbf" if bom else b"") + new.replace("\n", newline).encode("utf-8")
            try:
                _write_beside(real, payload, before, verify)
            except OSError as exc:
                raise _refuse(
                    f"cannot write the file: {_write_why(exc)}; it is unchanged",
                    shown,
                    "make the file and its folder writable, or add the lines by hand",
                ) from None
            return real
    raise _refuse("the symbolic link keeps changing its target", shown, "try again")


def _write_why(exc: OSError) -> str:
    if exc.errno == errno.EROFS:
        return "the file system is read-only"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied ({why(exc)})"
    return why(exc)
