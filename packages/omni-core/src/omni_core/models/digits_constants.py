"""Constants shared by the digits pipeline and its trainer (importable without torch)."""

NATIVE_SIZE = 8
"""sklearn's digits are 8x8; the model draws at that size and the pipeline upscales."""
PROMPT_TOKENS = 24
"""Digit prompts are short; encoding 24 tokens instead of 77 keeps the text encoder cheap."""
