"""Reading an untrusted file: only a regular file (never a FIFO, a device or a folder), at most so many bytes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import ConfigError, clip

MAX_FILE_BYTES = 1 << 20      # 1 MiB: a real .devswitchrc is well under 10 KiB


_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISSOCK, "a socket"))


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
        raise ConfigError(f"cannot open the file: {'a broken symbolic link' if broken else why(exc)}", where=name,
                          hint="make it a readable file, or remove it") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = next((label for test, label in _FILE_KINDS if test(info.st_mode)), "not a regular file")
            raise ConfigError(f"is {kind}, not a regular file: devswitch reads only regular files", where=name,
                              hint="replace it with a YAML file, or remove it")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 16, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {why(exc)}", where=name,
                          hint="make it a readable file, or remove it") from None
    finally:
        os.close(fd)
    if size > limit:
        raise ConfigError(f"the file is larger than {limit // 1024} KiB (a .devswitchrc holds a few settings)",
                          where=name, hint="is this the right file? keep only devswitch's settings in it")
    return b"".join(chunks)


def why(exc: BaseException) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else clip(str(exc))
