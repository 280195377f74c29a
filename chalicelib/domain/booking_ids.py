"""Booking ids: 26-character ULIDs (Crockford base32 of 128 bits) that carry their performance.

    48 bits  milliseconds since the epoch   the id sorts by creation time (new bookings land at the end of
                                            the InnoDB primary key; reconcile reads a hold's age from it)
    32 bits  performance id & 0xFFFFFFFF     where the booking's Redis record lives: in the performance's hash
                                            slot (adapters/redis_seats.py), so a take touches one cluster slot
    48 bits  random (os.urandom), or, for a request with an Idempotency-Key, the first 6 bytes of a digest
             of (user, key): a retry can then recognise, from the seat map's holders alone, the booking its
             first attempt made (services/booking.py `_first_attempt_among`)

Minting takes no lock (python-ulid's `ULID()` takes a process-wide one for its monotonic counter, which the
hot path waited on): the bytes are built here and encoded with the standard library's base32 (C), translated
to Crockford's alphabet.

Ids minted before this layout (ms + 80 random bits, or ms + a 10-byte digest with a key) are still ULIDs:
their age reads the same, `made_with_key` still recognises a keyed one, and `performance_of` returns 32 bits
that say nothing (a record of such a booking is looked up under another key; see redis_seats.py).
"""

from __future__ import annotations

import base64
import hashlib
import os
import time

ID_LENGTH = 26
PERFORMANCE_BITS = 32
PERFORMANCE_MASK = (1 << PERFORMANCE_BITS) - 1
KEY_DIGEST_BYTES = 10  # the digest of (user, key); the new layout keeps its first TAIL_BYTES
TAIL_BYTES = 6

_CROCKFORD = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RFC4648 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_ENCODE = bytes.maketrans(_RFC4648, _CROCKFORD)
_DECODE = bytes.maketrans(_CROCKFORD, _RFC4648)
_VALID = frozenset(_CROCKFORD)
_PAD = b"\0\0\0\0"  # 4 + 16 bytes = 32 base32 characters; the first 6 encode only the padding's 30 zero bits


def encode(raw: bytes) -> str:
    """16 bytes -> the 26-character ULID text (the first character 0-7: 128 bits in 130)."""
    if len(raw) != 16:
        raise ValueError("a ULID is 16 bytes")
    return base64.b32encode(_PAD + raw)[6:].translate(_ENCODE).decode("ascii")


def decode(booking_id: str) -> bytes:
    """The 26-character ULID text -> its 16 bytes; ValueError for anything else."""
    text = booking_id.upper().encode("ascii", "replace")
    if len(text) != ID_LENGTH or text[0] > ord("7") or not _VALID.issuperset(text):
        raise ValueError(f"not a ULID: {booking_id!r}")
    return base64.b32decode(b"AAAAAA" + text.translate(_DECODE))[4:]


def key_digest(user_id: str, idempotency_key: str) -> bytes:
    # "\x1f" cannot occur in either (validation refuses control characters): the pair maps to one input.
    return hashlib.blake2b(f"{user_id}\x1f{idempotency_key}".encode(), digest_size=KEY_DIGEST_BYTES).digest()


def mint(
    performance_id: int,
    user_id: str | None = None,
    idempotency_key: str | None = None,
    *,
    now_ms: int | None = None,
) -> str:
    """A new booking id for `performance_id`; with both `user_id` and `idempotency_key`, its tail is theirs
    (two attempts of one key in one millisecond mint the same id: one booking answers both)."""
    milliseconds = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    if user_id is None or idempotency_key is None:
        tail = os.urandom(TAIL_BYTES)
    else:
        tail = key_digest(user_id, idempotency_key)[:TAIL_BYTES]
    raw = milliseconds.to_bytes(6, "big") + (performance_id & PERFORMANCE_MASK).to_bytes(4, "big") + tail
    return encode(raw)


def performance_of(booking_id: str) -> int | None:
    """The performance id (its low 32 bits) the id was minted for; None if the id is not a ULID. An id of
    the old layout gives a number that means nothing: callers must not trust it beyond a key's name."""
    try:
        return int.from_bytes(decode(booking_id)[6:10], "big")
    except ValueError:
        return None


def timestamp_of(booking_id: str) -> float | None:
    """When the id was minted (epoch seconds); None if it is not a ULID."""
    try:
        return int.from_bytes(decode(booking_id)[:6], "big") / 1000
    except ValueError:
        return None


def made_with_key(booking_id: str, user_id: str, idempotency_key: str) -> bool:
    """True if the id was minted for this user's Idempotency-Key: this layout (the digest's first 6 bytes
    after the performance) or the one before it (the 10-byte digest after the milliseconds)."""
    try:
        raw = decode(booking_id)
    except ValueError:
        return False
    digest = key_digest(user_id, idempotency_key)
    return raw[10:] == digest[:TAIL_BYTES] or raw[6:] == digest
