"""Phone numbers to E.164 with ``phonenumbers``; also a light helper process.

As a script (``python _phone_worker.py REGION STRICT``) it reads one cleaned
number per line on stdin and writes one E.164 number (or an empty line for an
invalid one) per line on stdout. It imports nothing but ``phonenumbers`` so a
helper starts fast.
"""

from __future__ import annotations

import sys
from functools import lru_cache


@lru_cache(maxsize=2_000_000)
def e164_one(cleaned: str, region: str, strict: bool) -> str | None:
    """E.164 form of one number, or None when it does not parse or is not valid."""
    import phonenumbers

    try:
        num = phonenumbers.parse(cleaned, region)
    except phonenumbers.NumberParseException:
        return None
    if strict:
        ok = phonenumbers.is_valid_number_for_region(num, region) or phonenumbers.is_valid_number(
            num
        )
    else:
        ok = phonenumbers.is_possible_number(num)
    if not ok:
        return None
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)


def main() -> None:
    region, strict = sys.argv[1], sys.argv[2] == "1"
    lines = sys.stdin.read().split("\n")[:-1]
    out = [(e164_one(x, region, strict) or "") if x else "" for x in lines]
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
