"""Atomic writes: a crash mid-write never leaves a file or folder that looks complete."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from seqmeta.errors import StorageError

FULL = (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def disk_space_errors(path: str | os.PathLike) -> Iterator[None]:
    """A full disk (or quota) while writing ``path`` becomes a ``StorageError`` that says so."""
    try:
        yield
    except OSError as e:
        if e.errno in FULL and not isinstance(e, StorageError):
            raise StorageError(
                f"no space left on the device while writing {path} ({e.strerror}); free some space and run the "
                f"same command again: {path} is unchanged"
            ) from e
        raise


def check_writable(path: str | os.PathLike, flag: str = "--output-dir") -> None:
    """Refuse, before any work, a folder to write (existing or not) that cannot be written: the nearest
    existing folder at or above it must take a new file (probed with a temporary one, deleted at once)."""
    target = Path(path).expanduser().absolute()
    existing = target
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise StorageError(f"{flag} {path}: {existing} is a file, not a folder; choose another {flag}")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise StorageError(
            f"{flag} {path} cannot be written ({e.strerror} in {existing}); choose a folder you can write to"
        ) from e


def atomic_write_file(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` a temporary file beside ``path``, then rename it over ``path``: a failed or
    interrupted write (a full disk) leaves the old file, never a truncated one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        with disk_space_errors(path):
            write(tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``."""
    atomic_write_file(path, lambda tmp: tmp.write_text(text))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


MARKER = ".seqmeta-output"  # in every folder atomic_directory writes: what --overwrite may replace


def written_by_seqmeta(path: Path) -> bool:
    """A folder seqmeta wrote: its marker, or (written before the marker) a dataset's seqmeta.json or a
    seqmeta model's config.json."""
    if not path.is_dir() or path.is_symlink():
        return False
    if (path / MARKER).is_file() or (path / "seqmeta.json").is_file():
        return True
    try:
        return str(json.loads((path / "config.json").read_text()).get("model_type", "")).startswith("seqmeta")
    except (OSError, ValueError, AttributeError):
        return False


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it is renamed to ``path``.

    If the block raises (or the process dies), ``path`` is untouched and only a hidden
    ``.<name>.*.partial`` folder is left behind, which no loader mistakes for the real one.
    With ``overwrite``, an existing ``path`` is replaced only after the new one is complete, and only
    if it is a folder seqmeta wrote: never a file, a link, or a folder of the user's own.
    """
    path = Path(path)
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise FileExistsError(
                f"{path} already exists; choose another output folder, or replace it (`--overwrite`, overwrite=True)"
            )
        if not written_by_seqmeta(path):
            raise FileExistsError(
                f"{path} exists and is not a folder seqmeta wrote; overwriting replaces only seqmeta's own output: "
                "choose another output folder (nothing was changed)"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial"))
    try:
        with disk_space_errors(path):
            (tmp / MARKER).write_text("written by seqmeta; `--overwrite` may replace this folder\n")
            yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)
