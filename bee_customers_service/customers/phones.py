"""Phone numbers are stored in E.164 (`+40712345678`), whatever spelling the client sent."""

import phonenumbers


def normalise_phone(raw: str, *, default_region: str) -> str:
    """E.164 form of `raw`; national numbers are read in `default_region`. ValueError if invalid."""
    candidate = raw.strip()
    # One "+", before the first digit ("+40 ...", "(+40) ..."): phonenumbers would read "++40..." as "+40...".
    plus = candidate.find("+")
    if candidate.count("+") > 1 or (plus >= 0 and any(char.isdigit() for char in candidate[:plus])):
        raise ValueError("'+' may appear once, before the number")
    if candidate.startswith("00"):
        candidate = "+" + candidate[2:]  # international prefix used across Europe
    try:
        number = phonenumbers.parse(candidate, default_region.upper())
    except phonenumbers.NumberParseException as exc:
        raise ValueError("not a phone number") from exc
    # A number in an allocated range, or one shaped like a mobile number of its country: numbering
    # plans change faster than the library's metadata (the spec's own +40798765432 is such a case),
    # and refusing a real customer's number is worse than storing a well-formed unallocated one.
    mobile_shaped = phonenumbers.is_possible_number_for_type(number, phonenumbers.PhoneNumberType.MOBILE)
    if not (phonenumbers.is_valid_number(number) or mobile_shaped):
        raise ValueError("not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
