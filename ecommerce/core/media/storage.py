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

    def delete(self, name: str) -> None:
        """Remove the file; a file already gone is no error."""

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
        if path.exists():
            # The same content: keep the file, but mark it as just written, so a prune running
            # now (which spares recent files) cannot remove it under the row about to name it.
            os.utime(path)
            return
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

    def delete(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)

    def names(self) -> Iterator[tuple[str, float]]:
        if not self.root.is_dir():
            return
        for path in self.root.rglob("*"):
            if path.is_file() and not path.name.startswith(".upload-"):
                yield path.relative_to(self.root).as_posix(), path.stat().st_mtime

    def url(self, name: str) -> str:
        return self.base_url + name


STORAGES: dict[str, type] = {"local": LocalMediaStorage}
