"""The optional content filter for notes (spec 5.4): whole words, case- and accent-insensitive."""

import re
import unicodedata
from functools import lru_cache


def fold(text: str) -> str:
    """Lower case without accents: "Ștefan" -> "stefan", "ÎNCĂ" -> "inca"."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


@lru_cache(maxsize=8)
def _pattern(words: tuple[str, ...]) -> re.Pattern[str] | None:
    folded = sorted({fold(word) for word in words if word.strip()}, key=len, reverse=True)
    if not folded:
        return None
    # \w-boundaries on both sides: "ass" does not match "class"; phrases keep their inner spaces.
    alternatives = "|".join(r"\s+".join(map(re.escape, word.split())) for word in folded)
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)")


def is_blocked(content: str, words: tuple[str, ...]) -> bool:
    pattern = _pattern(words)
    return pattern is not None and pattern.search(fold(content)) is not None
