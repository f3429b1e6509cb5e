"""JSON files tagged with a format name and version: plans, calibration statistics, cost tables.

One rule for all three: files are written with ``indent=1``; reading names the file in every error
(missing, not JSON, not an object, another format, another version) as a :class:`DataError`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from olafhe.core.errors import DataError


def save_json(path: str | Path, doc: Any) -> Path:
    """Write ``doc`` to ``path`` (parents created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1))
    return path


def read_json(path: str | Path, what: str, hint: str = "") -> Any:
    """The parsed contents of ``path``; ``what`` names the kind of file, ``hint`` how to create one."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} {path} does not exist{f' ({hint})' if hint else ''}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{what} {path} is not valid JSON: {exc}") from exc


def check_format(doc: Any, fmt: str, version: int, origin: str, required: bool = True) -> dict:
    """``doc`` once it is an object of format ``fmt`` and version ``version``.

    With ``required=False`` a document without ``format``/``version`` keys passes (hand-written ones);
    present keys must still match.
    """
    if not isinstance(doc, dict):
        raise DataError(f"{origin} is not a JSON object")
    if doc.get("format", None if required else fmt) != fmt:
        raise DataError(f"{origin} is not an {fmt} file (format {doc.get('format')!r})")
    if doc.get("version", None if required else version) != version:
        raise DataError(f"{origin}: unsupported {fmt} version {doc.get('version')!r}")
    return doc


def load_json(path: str | Path, fmt: str, version: int, what: str, hint: str = "", required: bool = True) -> dict:
    """:func:`read_json` then :func:`check_format`, naming the file."""
    return check_format(read_json(path, what, hint), fmt, version, f"{what} {path}", required)
