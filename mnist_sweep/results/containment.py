"""Paths in a results directory that stay inside it, whatever links or names the directory holds.

A results directory may hold symbolic links, put there by hand or by a copy, and its files record
names (a trial id in best_model.json). Nothing mnist-sweep writes, deletes, reads into a report or
exports may leave the directory it was given, so every reader and writer of results goes through
here:

- no symbolic link below the results directory is followed, wherever it points: a reader leaves the
  file out and says which (a `Warning:`), a writer refuses, and `run` refuses before any work;
- a file is read only when it is a regular file, so a FIFO named history.csv never blocks a reader;
- a name read from a results file is used only when it is one plain file name.

The directory given may itself be a link (results on another disk): only what lies below it counts.
Hard links are not links in this sense; nothing here writes into an existing file (writes replace a
name, see `store.atomic_write`), so a hard link cannot carry a write outside.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from ..errors import UnsafePathError, excerpt

NOT_FOLLOWED = "mnist-sweep follows no link inside a results directory"


def plain_name(name) -> bool:
    """Whether `name` is one plain file name: a non-empty string, not `.` or `..`, without a slash or NUL."""
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\0" not in name


def link_text(path: Path) -> str:
    """'PATH is a symbolic link (to TARGET)': the link's own name and target, never what it points to."""
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    return f"{path} is a symbolic link (to {excerpt(target, 80)})"


def problem(root: str | Path, path: str | Path) -> str | None:
    """Why `path` cannot be used as a path inside `root`, or None when it can.

    It cannot when it is not below `root` (or goes up with `..`), or when it, or a folder between `root`
    and it, is a symbolic link. Parts that do not exist yet are fine: a writer creates them.
    """
    root, path = Path(root), Path(path)
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        return f"{path} is not inside {root}"
    here = root
    for part in parts:
        if part == "..":
            return f"{path} leaves {root} (it goes up with '..')"
        here = here / part
        try:
            mode = os.lstat(here).st_mode
        except OSError:  # missing (to be created), or unreadable: the read or write itself says so
            return None
        if stat.S_ISLNK(mode):
            return f"{link_text(here)}, and {NOT_FOLLOWED}"
    return None


def refuse(root: str | Path, path: str | Path) -> Path:
    """`path`, or UnsafePathError when it cannot be used inside `root` (see `problem`)."""
    reason = problem(root, path)
    if reason is not None:
        raise UnsafePathError(reason)
    return Path(path)


def inside(root: str | Path, *names: str) -> Path:
    """root/names, each name one plain file name (a trial id read from a file, say), checked with `refuse`."""
    for name in names:
        if not plain_name(name):
            raise UnsafePathError(f"{excerpt(str(name), 80)} is not a plain file name, so it cannot name "
                                  f"anything inside {root}")
    return refuse(root, Path(root, *names))


def _file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file"


def read_bytes(root: str | Path, path: str | Path) -> bytes:
    """A regular file's bytes, reached from `root` without a link.

    UnsafePathError when a link lies on the way or the file is not a regular file (nothing is read
    from it); OSError when it cannot be read.
    """
    refuse(root, path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # became a link since the check
            raise UnsafePathError(f"{link_text(Path(path))}, and {NOT_FOLLOWED}") from None
        raise
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise UnsafePathError(f"{path} is {_file_kind(mode)}, not a results file")
        return handle.read()


def read_text(root: str | Path, path: str | Path) -> str:
    """`read_bytes` as UTF-8 text (undecodable bytes replaced)."""
    return read_bytes(root, path).decode("utf-8", errors="replace")


def is_file(root: str | Path, path: str | Path) -> bool:
    """Whether `path` is a regular file reached from `root` without a link."""
    if problem(root, path) is not None:
        return False
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def links(root: str | Path) -> list[Path]:
    """Every symbolic link at any depth below `root`, found without following any; sorted."""
    found, folders = [], [Path(root)]
    while folders:
        folder = folders.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.is_symlink():
                found.append(Path(entry.path))
            elif entry.is_dir(follow_symlinks=False):
                folders.append(Path(entry.path))
    return sorted(found)


def refuse_links(root: str | Path, fix: str) -> None:
    """UnsafePathError naming the symbolic links below `root` (at most 5), if there are any, and `fix`."""
    found = links(root)
    if found:
        named = "; ".join(link_text(p) for p in found[:5]) + (f"; and {len(found) - 5} more" if len(found) > 5 else "")
        raise UnsafePathError(f"{root} holds {len(found)} symbolic link(s), and {NOT_FOLLOWED}: {named}. {fix}")


def open_lock(path: Path) -> int:
    """A lock file's descriptor, for reading and writing: created when missing, never opened through a link
    (O_NOFOLLOW) and never truncated; UnsafePathError when `path` is a link or not a regular file."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePathError(f"{link_text(path)}, and {NOT_FOLLOWED}: remove the link ({path}) and run "
                                  "again") from None
        if exc.errno == errno.EISDIR:
            raise UnsafePathError(f"{path} is a folder, not a lock file: remove it and run again") from None
        raise
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise UnsafePathError(f"{path} is {_file_kind(mode)}, not a lock file: remove it and run again")
    return fd
