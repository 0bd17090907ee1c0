"""The public URL of a customer's generated avatar (initials), which a browser can show in an <img>.

`/customers/{id}/avatar/generated/{token}.svg` needs no token: `token` is an HMAC of the id and the
initials under a key derived from BEE_CURSOR_SECRET, so the URL names no one, cannot be guessed, and
changes when the initials do (avatars/router.py serves it, and answers 404 once it is stale or the
customer is erased). Here in customers/ because the views hand it out and avatars/ builds on customers/.
"""

import hashlib
import hmac
import unicodedata
import uuid
from functools import lru_cache

_KEY_LABEL = b"bee-customers/avatar-url/v1"


@lru_cache(maxsize=4)
def link_key(cursor_secret: str) -> bytes:
    """The avatar links' own key, derived from the cursor secret (no second secret to manage)."""
    return hmac.new(cursor_secret.encode(), _KEY_LABEL, hashlib.sha256).digest()


def generated_token(key: bytes, customer_id: uuid.UUID, full_name: str) -> str:
    """Unguessable, and new whenever the initials change; carries no name or email."""
    return hmac.new(key, f"{customer_id}:{initials(full_name)}".encode(), hashlib.sha256).hexdigest()[:32]


def generated_path(key: bytes, customer_id: uuid.UUID, full_name: str) -> str:
    return f"/customers/{customer_id}/avatar/generated/{generated_token(key, customer_id, full_name)}.svg"


def initials(full_name: str) -> str:
    """Up to two initials: first and last word ("Ștefan Popescu" -> "ȘP"); one for a single name.

    Works on NFC text and keeps a letter's combining marks, so decomposed input ("S" + U+0326)
    gives the same initial as the precomposed one. Words without a letter or digit are skipped.
    """
    letters: list[str] = []
    for word in unicodedata.normalize("NFC", full_name).split():
        initial = _first_letter(word)
        if initial:
            letters.append(initial)
    if not letters:
        return "?"
    chosen = letters[:1] if len(letters) == 1 else [letters[0], letters[-1]]
    return "".join(chosen)


def _first_letter(word: str) -> str:
    for index, char in enumerate(word):
        if char.isalnum():
            marks = ""
            for follower in word[index + 1 :]:
                if not unicodedata.combining(follower):
                    break
                marks += follower
            upper = char.upper()
            # "ß".upper() is "SS": keep one character per initial.
            return unicodedata.normalize("NFC", (upper if len(upper) == 1 else char) + marks)
    return ""
