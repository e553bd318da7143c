"""Checkpoints durable against power loss, not only against a crashed process.

icechunk's local-filesystem backend writes every object to a temporary name and renames it into
place, but never calls ``fsync``: after a power cut the renamed file may be empty or missing even
though the branch reference already named it. (icechunk 1.1 has no setting for it; object_store
added one later.) So a durable commit here is done in two halves around an explicit sync:

1. ``Session.flush`` writes the snapshot, manifests and transaction log *without* moving the branch;
2. every object file written since the last sync, and the folders holding them, are fsynced;
3. ``Repository.reset_branch`` moves the reference (only if it still points at the session's base:
   one writer), and the reference file and its folder are fsynced.

A power cut before 3 leaves the reference on the previous checkpoint, whose objects were fsynced
by its own commit; after 3, everything the new reference names is on disk. Snapshot expiry
rewrites the oldest kept snapshot in place (its parent changes), so that file is synced too before
garbage collection deletes anything.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

#: Folders of an icechunk repository holding immutable objects (written once, under fresh names).
OBJECT_FOLDERS = ("chunks", "manifests", "snapshots", "transactions")
REFS_FOLDER = "refs"
#: Files fsynced at once: the calls release the GIL, and a disk serves concurrent flushes faster.
SYNC_THREADS = 16


def _fsync(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DiskSync:
    """Fsyncs what changed in a repository folder since the last call (files and their folders)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._seen: dict[str, tuple[int, int]] = {}
        self.files_synced = 0

    def _listing(self, folders: tuple[str, ...]) -> dict[str, tuple[int, int]]:
        found = {}
        for folder in folders:
            for dirpath, _, names in os.walk(self.root / folder):
                for name in names:
                    path = os.path.join(dirpath, name)
                    try:
                        st = os.stat(path)
                    except FileNotFoundError:  # a temporary name renamed meanwhile
                        continue
                    found[path] = (st.st_mtime_ns, st.st_size)
        return found

    def sync(self, folders: tuple[str, ...] = OBJECT_FOLDERS) -> int:
        """Fsync every file under ``folders`` that is new or changed since the last sync, then the
        folders that hold them; returns how many files."""
        now = self._listing(folders)
        changed = [path for path, stamp in now.items() if self._seen.get(path) != stamp]
        if len(changed) > 1:
            with ThreadPoolExecutor(min(SYNC_THREADS, len(changed))) as pool:
                list(pool.map(_fsync, map(Path, changed)))
        elif changed:
            _fsync(Path(changed[0]))
        for directory in {os.path.dirname(path) for path in changed} | {str(self.root / f) for f in folders}:
            if os.path.isdir(directory):
                _fsync(Path(directory), directory=True)
        self._seen.update(now)
        for gone in set(self._seen) - set(now):
            if any(gone.startswith(str(self.root / f) + os.sep) for f in folders):
                del self._seen[gone]
        self.files_synced += len(changed)
        return len(changed)

    def sync_refs(self) -> int:
        """Fsync the branch references (after one moved)."""
        return self.sync((REFS_FOLDER,))

    def sync_tree(self) -> int:
        """Fsync the whole repository and the folder holding it (a newly created store)."""
        count = self.sync((*OBJECT_FOLDERS, REFS_FOLDER))
        if (self.root / "config.yaml").exists():
            _fsync(self.root / "config.yaml")
        _fsync(self.root, directory=True)
        _fsync(self.root.parent, directory=True)
        return count
