"""The `query` parameter: what it means (phone fragment, email, name words) and its LIKE-escaped form."""

import re
import string
from dataclasses import dataclass

_PHONE_LIKE = re.compile(r"^[0-9+()./\- ]+$")
_WORDS = re.compile(r"^[^\W\d_]+(?:[ '\-]+[^\W\d_]+)*$")  # letters, with spaces/hyphens/apostrophes between
# Shorter fragments hold no trigram: substring match only, no typo tolerance.
MIN_TRIGRAM_QUERY = 3
# Digits and ASCII punctuation other than ' and -: rare in names, common in email fragments
# ("ioana.vl"). The same test in SQL is the predicate of the partial index in migration 0009.
_UNUSUAL_CHARACTERS = frozenset(string.punctuation + string.digits) - {"'", "-"}


@dataclass(frozen=True)
class TextQuery:
    """What the `query` parameter means, decided once (see `interpret_query`)."""

    raw: str
    phone_digits: str | None = None  # set when the query is a phone fragment


def interpret_query(raw: str) -> TextQuery:
    """A phone fragment searches the stored E.164 digits ("0712 345" -> "712345"); anything else, names and emails."""
    text_ = raw.strip()
    digits = re.sub(r"\D", "", text_)
    if _PHONE_LIKE.match(text_) and len(digits) >= MIN_TRIGRAM_QUERY:
        if not text_.startswith("+"):
            if digits.startswith("00"):
                digits = digits[2:]
            elif digits.startswith("0"):
                digits = digits[1:]
        return TextQuery(raw=text_, phone_digits=digits or None)
    return TextQuery(raw=text_)


def like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def parts(query: TextQuery) -> list[str]:
    """The words of the query (between spaces)."""
    return [part for part in query.raw.split(" ") if part]


def one_word(query: TextQuery) -> bool:
    return " " not in query.raw


def unusual(query: TextQuery) -> bool:
    """The query holds a character that names rarely hold (digits, punctuation)."""
    return any(character in _UNUSUAL_CHARACTERS for character in query.raw)


def phased(query: TextQuery) -> bool:
    """A name/email query, run phase by phase; phone fragments and queries with "@" are one statement."""
    return query.phone_digits is None and "@" not in query.raw


def typo_tolerant(query: TextQuery) -> bool:
    """Words, not a fragment with digits or dots (an email or a code, where "almost" matches are noise)."""
    return len(query.raw) >= MIN_TRIGRAM_QUERY and _WORDS.match(query.raw) is not None


def query_shape(query: TextQuery) -> tuple[object, ...]:
    """What of a name/email query decides how its statements are built (not their values)."""
    return (one_word(query), unusual(query), typo_tolerant(query), len(parts(query)))
