"""Constants shared by the digits pipeline and its trainer (importable without torch)."""

import re

NATIVE_SIZE = 8
"""sklearn's digits are 8x8; the model draws at that size and the pipeline upscales."""
PROMPT_TOKENS = 24
"""Digit prompts are short; encoding 24 tokens instead of 77 keeps the text encoder cheap."""
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
"""How prompts may spell a digit (besides the numeral itself)."""
_NAMES_A_DIGIT = re.compile(r"[0-9]|\b(?:" + "|".join(DIGIT_WORDS) + r")\b", re.IGNORECASE)


def names_a_digit(prompt: str) -> bool:
    """True if ``prompt`` asks for a digit the model can draw ("7", "seven", "a handwritten 7")."""
    return _NAMES_A_DIGIT.search(prompt) is not None
