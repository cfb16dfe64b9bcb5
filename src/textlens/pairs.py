"""Pairs of texts (premise and hypothesis, question and passage) as one string.

A pair classifier (NLI, paraphrase, a cross-encoder) reads two texts. textlens shows,
stores and sends a pair as one string, ``first + PAIR_SEPARATOR + second``, so every
explanation, report, input file and server request that holds a text can hold a pair;
the model adapter splits it again and gives the model a real pair (both segments, their
token type ids and separator tokens).
"""

from __future__ import annotations

from .errors import InvalidInputError

__all__ = ["PAIR_MARK", "PAIR_SEPARATOR", "pair_text", "split_pair"]

#: The mark between the two texts of a pair: U+241E SYMBOL FOR RECORD SEPARATOR.
PAIR_MARK = "\u241e"
PAIR_SEPARATOR = f" {PAIR_MARK} "


def pair_text(first: str, second: str, *, index: int | None = None) -> str:
    """The one-string form of the pair ``(first, second)``: joined by :data:`PAIR_SEPARATOR`."""
    pair = "the pair" if index is None else f"pair {index}"
    for name, part in (("first", first), ("second", second)):
        if not part.strip():
            raise InvalidInputError(
                f"The {name} text of {pair} is empty or only whitespace; give both texts."
            )
        if PAIR_MARK in part:
            raise InvalidInputError(
                f"The {name} text of {pair} contains {PAIR_MARK!r} (U+241E), which textlens "
                "reserves to join the two texts of a pair; remove it."
            )
    return f"{first}{PAIR_SEPARATOR}{second}"


def split_pair(text: str, *, index: int = 0) -> tuple[str, str] | None:
    """``(first, second)`` if ``text`` is a pair (see :func:`pair_text`), else None.

    The mark may stand with or without a space on each side: ``"a ␞ b"`` and ``"a␞b"``.
    """
    if PAIR_MARK not in text:
        return None
    first, _, second = text.partition(PAIR_MARK)
    first, second = first.removesuffix(" "), second.removeprefix(" ")
    if PAIR_MARK in second:
        raise InvalidInputError(
            f"Text {index} contains {PAIR_MARK!r} (U+241E) more than once; it joins the two "
            "texts of a pair, so it may appear once."
        )
    if not first.strip() or not second.strip():
        raise InvalidInputError(
            f"Text {index} is a pair ({PAIR_MARK!r} joins two texts) with an empty side; give "
            "both texts."
        )
    return first, second
