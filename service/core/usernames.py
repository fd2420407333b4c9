"""Which new usernames may be created beside the existing ones: one script per name, and none that
passes for another user's name.

Names are compared in their PRECIS form (storage/users.py), which keeps ``аlice`` (Cyrillic а) and
``alıce`` (dotless ı) apart from ``alice``: distinct code points, the same look (UTS #39 §4). So at
creation a name must be written in one script, digits and ASCII punctuation going with any (UTS #39
§5.2, "Highly Restrictive"), and its skeleton must differ from every existing user's.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from ..errors import UserError
from ..storage.users import canonical

# UTS #39 §5.2 Highly Restrictive: one script, or Latin with the scripts written alongside Han.
_ALLOWED_TOGETHER = (frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}), frozenset({"LATIN", "HAN", "BOPOMOFO"}),
                     frozenset({"LATIN", "HAN", "HANGUL"}))
# Unicode names of Han characters start "CJK"; that word is no script's name.
_SCRIPT_OF_WORD = {"CJK": "HAN"}

# Letters that pass for Latin ones, from UTS #39 confusables.txt (its prototype on the right): the
# Cyrillic and Greek lowercase letters drawn like Latin ones, and Latin's own dotless and small-capital
# forms. PRECIS has already lower-cased and width-mapped the name; marks are kept apart by NFD.
_CONFUSABLE = str.maketrans({
    "а": "a", "г": "r", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "ѕ": "s", "і": "i",
    "ј": "j", "ѡ": "w", "ѵ": "v", "ү": "y", "һ": "h", "ҽ": "e", "ӏ": "i", "ԁ": "d", "ԛ": "q", "ԝ": "w",
    "α": "a", "γ": "y", "ι": "i", "ν": "v", "ο": "o", "ρ": "p", "σ": "o", "υ": "u", "ϲ": "c", "ϳ": "j",
    "ı": "i", "ȷ": "j", "ɑ": "a", "ɡ": "g", "ɩ": "i", "ɪ": "i", "ᴏ": "o", "ᴄ": "c", "ᴠ": "v", "ᴡ": "w", "ᴢ": "z",
})


def script(char: str) -> str | None:
    """The script of a letter or digit, from the first word of its Unicode name (``LATIN SMALL
    LETTER A``, ``CYRILLIC SMALL LETTER A``); None for what goes with any script: ASCII digits and
    punctuation, and combining marks, which take their base letter's script (UAX #24 Inherited)."""
    if char.isascii():
        return "LATIN" if char.isalpha() else None
    if unicodedata.category(char).startswith("M"):
        return None
    word = unicodedata.name(char, "UNKNOWN").replace("-", " ").split()[0]
    return _SCRIPT_OF_WORD.get(word, word)


def scripts(name: str) -> set[str]:
    return {found for char in name if (found := script(char))}


def check_scripts(name: str) -> None:
    """Raise :class:`UserError` if ``name`` mixes scripts beyond what UTS #39 §5.2 allows."""
    used = scripts(name)
    if len(used) > 1 and not any(used <= allowed for allowed in _ALLOWED_TOGETHER):
        mixed = " and ".join(sorted(s.title() for s in used))
        raise UserError(f"{name!r} mixes {mixed} letters: a username is written in one script "
                        "(digits and . _ @ + - go with any)")


def skeleton(name: str) -> str:
    """What ``name`` looks like (UTS #39 §4 skeleton, with the table above): NFD, confusables mapped
    to their Latin prototype, NFD again. Two names with one skeleton are told apart by code points only."""
    folded = canonical(name) or name
    return unicodedata.normalize("NFD", unicodedata.normalize("NFD", folded).translate(_CONFUSABLE))


def check_new(name: str, existing: Iterable[str]) -> None:
    """Raise :class:`UserError` if ``name`` may not be created beside the ``existing`` names: mixed
    scripts, or the look of an existing name. An existing name it equals is left to the store to
    refuse (``already exists``), atomically."""
    check_scripts(name)
    looks, key = skeleton(name), canonical(name)
    for other in existing:
        if canonical(other) != key and skeleton(other) == looks:
            raise UserError(f"{name!r} looks like the existing user {other!r}: choose a name that reads differently")
