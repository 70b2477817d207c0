"""Where media files live: an interface, and the local disk behind it.

Files are written under names derived from their content (``ab/<hash>.jpg``), so a name never
changes meaning: a writer never overwrites another file, readers may cache for ever, and the
same picture uploaded twice is one file. An S3-compatible store would be one more class with
these four methods (a ``PUT`` of the object, a ``DELETE``, a listing, and the bucket's URL),
named in ``STORAGES`` and chosen with ``MEDIA_STORAGE``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol


class MediaStorage(Protocol):
    def save(self, name: str, data: bytes) -> None:
        """Store ``data`` under ``name`` (a content-hashed name: an existing file is the same)."""

    def delete(self, name: str, *, unless_written_after: float | None = None) -> None:
        """Remove the file; a file already gone is no error. With ``unless_written_after`` (epoch
        seconds), a file written or saved again since then is kept."""

    def names(self) -> Iterator[tuple[str, float]]:
        """Every stored name with its last write time (epoch seconds), for pruning."""

    def url(self, name: str) -> str:
        """Where a client fetches the file."""


class LocalMediaStorage:
    """Files under ``MEDIA_ROOT``, served at ``MEDIA_URL`` (by nginx in the stack, else by the app)."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.root = Path(config["MEDIA_ROOT"])
        self.base_url = config["MEDIA_URL"].rstrip("/") + "/"

    def _path(self, name: str) -> Path:
        path = (self.root / name).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"media name outside the media root: {name!r}")
        return path

    def save(self, name: str, data: bytes) -> None:
        path = self._path(name)
        try:
            # The same content: keep the file, but mark it as just written, so a prune running
            # now (which spares recent files) cannot remove it under the row about to name it.
            os.utime(path)
            return
        except FileNotFoundError:
            pass  # not there (or pruned this instant): write it
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written beside its final name, then renamed: a reader never sees half a file.
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
            os.chmod(temporary, 0o644)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def delete(self, name: str, *, unless_written_after: float | None = None) -> None:
        path = self._path(name)
        try:
            # Looked at again just before the unlink: a save of the same content since the
            # listing touched it, and a row may be about to name it.
            if unless_written_after is not None and path.stat().st_mtime > unless_written_after:
                return
            path.unlink()
        except FileNotFoundError:
            pass

    def names(self) -> Iterator[tuple[str, float]]:
        """Every file, the temporary ones of interrupted writes (``.upload-*``) included."""
        if not self.root.is_dir():
            return
        for path in self.root.rglob("*"):
            if path.is_file():
                yield path.relative_to(self.root).as_posix(), path.stat().st_mtime

    def url(self, name: str) -> str:
        return self.base_url + name


STORAGES: dict[str, type] = {"local": LocalMediaStorage}
