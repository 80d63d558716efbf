"""File names from users: the name kept for an upload, the stem of a download's name, and the
``Content-Disposition`` header that carries it (RFC 6266, with RFC 5987's ``filename*``).

A name may hold any script, emoji, quotes, slashes, backslashes and control characters: the
name kept has none of the last three kinds, a download stem none of the characters a file
system refuses, and the header is ASCII whatever the name (HTTP headers are Latin-1 at best,
and a header Starlette cannot encode was a 500 after the job had been processed and stored).
"""
from __future__ import annotations

import re
import string
import unicodedata
from urllib.parse import quote

MAX_NAME_CHARS = 200  # an upload's name as kept
MAX_STEM_CHARS = 80  # the input's part of a download's name
# Characters that end or break a line, or hide or reorder the text around them (bidi overrides,
# zero-width characters), and lone surrogates, which UTF-8 cannot encode.
_INVISIBLE = {"Cc", "Cf", "Cs", "Zl", "Zp"}
_PATH = re.compile(r"[/\\]")
_NOT_IN_FILES = set('<>:"/\\|?*')  # what Windows refuses in a file name (and / everywhere)
# The ASCII fallback keeps what every header parser reads the same inside quotes: no quote,
# backslash, percent (some browsers decode it), semicolon or comma.
_FALLBACK = set(string.ascii_letters + string.digits + " -_.+()[]@=&!~")


def clean_name(name: str) -> str:
    """An upload's name as kept and shown: its last path component, without invisible
    characters, at most MAX_NAME_CHARS; "image" if nothing is left."""
    base = _PATH.split(name)[-1]
    kept = "".join(c for c in base if unicodedata.category(c) not in _INVISIBLE).strip()
    return kept[:MAX_NAME_CHARS] or "image"


def file_stem(name: str) -> str:
    """The stem of ``name`` (any script, emoji included) as part of a file name on any system."""
    stem = clean_name(name).rsplit(".", 1)[0]
    safe = "".join("_" if c in _NOT_IN_FILES or not c.isprintable() else c for c in stem)
    return safe[:MAX_STEM_CHARS].strip(" .") or "image"


def content_disposition(kind: str, filename: str) -> str:
    """``kind; filename="<ASCII fallback>"; filename*=UTF-8''<percent-encoded UTF-8>``: browsers
    use ``filename*`` (RFC 6266), older clients the fallback, where anything else is "_"."""
    fallback = "".join(c if c in _FALLBACK else "_" for c in filename)
    encoded = quote(filename.encode("utf-8", "replace"), safe="")
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"
