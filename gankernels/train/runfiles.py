"""Which files in a run folder belong to the run: the list in ``gankernels-run.json``.

A run writes this list before anything else and names in it every file it will write
(temporary files included).  A name goes on the list only if no such file exists yet,
so a run never writes over a file it did not create; a folder holding the list is a
gankernels run folder.
"""
from __future__ import annotations

import json
import math
import os
from typing import Iterable, Optional, Set

from .errors import ConfigError

__all__ = ["MANIFEST", "json_safe", "atomic_write", "read_manifest", "check_folder", "claim"]

MANIFEST = "gankernels-run.json"
KIND = "gankernels.run-files/1"
OWN = (MANIFEST, MANIFEST + ".tmp")


def json_safe(obj):
    """``obj`` with every non-finite float replaced by None (strict JSON has no NaN or infinity)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def atomic_write(path: str, write) -> None:
    """Write ``path`` through ``path.tmp`` + fsync + rename, so a kill leaves the old file or the new one."""
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_manifest(out: str) -> Optional[Set[str]]:
    """The names listed in ``out``'s manifest; None when there is none."""
    path = os.path.join(out, MANIFEST)
    if not os.path.lexists(path):
        return None
    files = None
    try:
        with open(path) as f:
            doc = json.load(f)
        if isinstance(doc, dict) and doc.get("format") == KIND:
            files = doc.get("files")
    except (OSError, ValueError):
        pass
    if not isinstance(files, list) or not all(isinstance(n, str) for n in files):
        raise ConfigError(f"{path}: not a list of run files written by gankernels; "
                          "move it away or use another folder")
    return set(files)


def _taken(out: str, owned: Set[str], names: Iterable[str]):
    taken = {n for n in names if n not in owned and os.path.lexists(os.path.join(out, n))}
    for d in {os.path.dirname(n) for n in names} - {""}:
        if os.path.lexists(os.path.join(out, d)) and not os.path.isdir(os.path.join(out, d)):
            taken.add(d)
    return sorted(taken)


def check_folder(out: str, names: Iterable[str], new: bool = False, allow_nonempty: bool = False,
                 flag: str = "--out") -> None:
    """Raise a ConfigError unless a run may write ``names`` (relative paths) in folder ``out``.

    ``new``: a new run, which refuses a non-empty folder that is not a run folder unless
    ``allow_nonempty``.  Nothing is written.
    """
    if os.path.lexists(out) and not os.path.isdir(out):
        raise ConfigError(f"{flag} {out}: is a file, not a folder; name a folder for the run")
    if not os.path.isdir(out):
        return
    owned = read_manifest(out)
    if new and owned is None and os.listdir(out) and not allow_nonempty:
        raise ConfigError(f"{flag} {out}: the folder is not empty and is not a gankernels run (no {MANIFEST}); "
                          "choose a new or empty folder, or pass --allow-nonempty-out to put the run beside "
                          "its files")
    taken = _taken(out, owned or set(), list(names) + list(OWN))
    if taken:
        more = f" and {len(taken) - 5} more" if len(taken) > 5 else ""
        hint = f" ({MANIFEST}, the list of the run's files, is missing)" if owned is None else ""
        raise ConfigError(f"{flag} {out}: the run would write over {', '.join(taken[:5])}{more}, which it did not "
                          f"create{hint}; move them away or choose another folder")


def claim(out: str, names: Iterable[str]) -> None:
    """Add ``names`` to ``out``'s manifest (created, with the folder, if missing) before writing them.

    Raises a ConfigError, writing nothing, if one of them exists and is not listed.
    """
    names = set(names) | set(OWN)
    owned = read_manifest(out) if os.path.isdir(out) else None
    owned = owned or set()
    taken = _taken(out, owned, names)
    if taken:
        raise ConfigError(f"{out}: the run would write over {', '.join(taken[:5])}, which it did not create; "
                          "move them away or choose another folder")
    if names <= owned and os.path.isfile(os.path.join(out, MANIFEST)):
        return
    os.makedirs(out, exist_ok=True)
    doc = {"format": KIND, "files": sorted(owned | names)}
    atomic_write(os.path.join(out, MANIFEST), lambda f: f.write((json.dumps(doc, indent=0) + "\n").encode()))
