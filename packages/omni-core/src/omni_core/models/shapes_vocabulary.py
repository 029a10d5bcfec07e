"""What the built-in shapes model can draw, and how prompts name it (importable without torch).

One scene is a subject (a shape, a digit or a capital letter), its color, the
background color, a size and a position. The trainer writes prompts for random
scenes from the phrasings below; the pipeline reads a prompt back into a scene
(:func:`read_prompt`), which is what the model is conditioned on; the oracle and the tests
draw scenes from the same tables. Words are case-sensitive where it matters:
``"A"`` is the letter, ``"a"`` the article.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

SHAPES = ("circle", "square", "triangle", "star", "heart", "ring", "cross")
DIGITS = tuple(str(d) for d in range(10))
LETTERS = tuple(chr(code) for code in range(ord("A"), ord("Z") + 1))
SUBJECTS = SHAPES + DIGITS + LETTERS
"""Every subject, in the order the oracle's classifier numbers them."""

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 35),
    "orange": (255, 140, 0),
    "yellow": (250, 220, 20),
    "green": (30, 165, 60),
    "blue": (30, 80, 225),
    "purple": (135, 45, 180),
    "white": (250, 250, 250),
    "black": (15, 15, 15),
}
SIZES = ("small", "medium", "large")
POSITIONS = (
    "center",
    "left",
    "right",
    "top",
    "bottom",
    "top left",
    "top right",
    "bottom left",
    "bottom right",
)
DEFAULT_SIZE = "medium"
DEFAULT_POSITION = "center"

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
COLOR_WORDS = {
    "red": ("red",),
    "orange": ("orange",),
    "yellow": ("yellow",),
    "green": ("green",),
    "blue": ("blue",),
    "purple": ("purple", "violet"),
    "white": ("white",),
    "black": ("black",),
}
SIZE_WORDS = {"small": ("small", "little", "tiny"), "large": ("large", "big", "huge")}
SHAPE_WORDS = {
    "circle": ("circle", "disc", "dot"),
    "square": ("square", "box"),
    "triangle": ("triangle",),
    "star": ("star",),
    "heart": ("heart",),
    "ring": ("ring", "donut"),
    "cross": ("cross", "plus"),
}
POSITION_PHRASES = {
    "center": ("in the center", "in the middle", "centered"),
    "left": ("on the left", "at the left"),
    "right": ("on the right", "at the right"),
    "top": ("at the top",),
    "bottom": ("at the bottom",),
    "top left": ("at the top left", "in the top left corner"),
    "top right": ("at the top right", "in the top right corner"),
    "bottom left": ("at the bottom left", "in the bottom left corner"),
    "bottom right": ("at the bottom right", "in the bottom right corner"),
}
BACKGROUND_PHRASES = ("on a {bg} background", "on {bg}", "with a {bg} background", ", {bg} background")
FILLER_WORDS = (
    "a",
    "an",
    "the",
    "of",
    "drawn",
    "picture",
    "image",
    "handwritten",
    "simple",
    "digit",
    "number",
    "letter",
    "capital",
    "shape",
    "please",
    "draw",
    "some",
)
"""Words the prompts use that carry no attribute (they are in the tokenizer's vocabulary)."""

CAN_DRAW = (
    "a shape (circle, square, triangle, star, heart, ring, cross), a digit 0-9 or a capital letter A-Z, "
    "in red, orange, yellow, green, blue, purple, white or black, on a background of one of those "
    "colors, small or large, at the left, right, top, bottom or center "
    "(e.g. 'a red circle on a blue background', 'a big yellow 7', 'a small green triangle at the top left')"
)


@dataclass(frozen=True)
class Scene:
    """One image the model can draw."""

    subject: str
    color: str
    background: str
    size: str = DEFAULT_SIZE
    position: str = DEFAULT_POSITION


def default_colors(color: str | None, background: str | None) -> tuple[str, str]:
    """A prompt that names one color or none: black on white, or white on black where that clashes."""
    if color is None and background is None:
        return "black", "white"
    if color is None:
        return ("white" if background == "black" else "black"), str(background)
    if background is None:
        return color, ("black" if color == "white" else "white")
    return color, background


def random_scene(rng: random.Random) -> Scene:
    """A scene with every attribute drawn uniformly (the two colors differ)."""
    color, background = rng.sample(list(COLORS), 2)
    return Scene(rng.choice(SUBJECTS), color, background, rng.choice(SIZES), rng.choice(POSITIONS))


def subject_phrase(subject: str, rng: random.Random) -> tuple[str, str]:
    """(a noun that may come before the subject, the subject's own word): ("digit", "7"), ("", "star")."""
    if subject in SHAPES:
        return "", rng.choice(SHAPE_WORDS[subject])
    if subject in DIGITS:
        word = rng.choice((subject, subject, DIGIT_WORDS[int(subject)]))
        return rng.choice(("", "", "digit", "number")), word
    return rng.choice(("", "letter", "capital letter", "capital")), subject


def prompt_for(scene: Scene, rng: random.Random) -> str:
    """One phrasing of ``scene``: size and position said where they are not the default, and a
    color left unsaid now and then where the default (:func:`default_colors`) gives it anyway."""
    lead, subject = subject_phrase(scene.subject, rng)
    say_color = scene.color != default_colors(None, scene.background)[0] or rng.random() < 0.7
    say_background = scene.background != default_colors(scene.color, None)[1] or rng.random() < 0.7
    words = [rng.choice(("a", "a", "the", "an image of a", "draw a", ""))]
    if scene.size != DEFAULT_SIZE:
        words.append(rng.choice(SIZE_WORDS[scene.size]))
    if say_color:
        words.append(rng.choice(COLOR_WORDS[scene.color]))
    words += [lead, subject]
    if scene.position != DEFAULT_POSITION or rng.random() < 0.2:
        words.append(rng.choice(POSITION_PHRASES[scene.position]))
    if say_background:
        words.append(rng.choice(BACKGROUND_PHRASES).format(bg=rng.choice(COLOR_WORDS[scene.background])))
    text = " ".join(word for word in words if word).replace(" ,", ",")
    return text[:1].upper() + text[1:] if rng.random() < 0.2 and text[:1].islower() else text


_TOKEN = re.compile(r"[A-Za-z]+|[0-9]|[^\sA-Za-z0-9]")
_WORD_TO_COLOR = {word: color for color, words in COLOR_WORDS.items() for word in words}
_WORD_TO_SIZE = {word: size for size, words in SIZE_WORDS.items() for word in words}
_WORD_TO_SHAPE = {word: shape for shape, words in SHAPE_WORDS.items() for word in words}
_BACKGROUND_MARKERS = {"background", "on", "backdrop"}


def tokens(prompt: str) -> list[str]:
    """The words of ``prompt`` as the tokenizer splits them (letters, single digits, punctuation)."""
    return _TOKEN.findall(prompt)


def named_attributes(prompt: str) -> tuple[str | None, str | None, str | None]:
    """(subject, color, background) as far as ``prompt`` names them; None where it does not.

    A color after "on" or before "background" is the background; the first other
    color is the subject's. A capital letter counts as a subject unless it is the
    article "A" at the start of a prompt that names another subject.
    """
    words = tokens(prompt)
    subjects: list[tuple[int, str]] = []
    for index, word in enumerate(words):
        lower = word.lower()
        if lower in _WORD_TO_SHAPE:
            subjects.append((index, _WORD_TO_SHAPE[lower]))
        elif word in DIGITS:
            subjects.append((index, word))
        elif lower in DIGIT_WORDS:
            subjects.append((index, str(DIGIT_WORDS.index(lower))))
        elif len(word) == 1 and word.isupper():
            subjects.append((index, word))
    named = [s for s in subjects if not (s[1] == "A" and s[0] == 0 and len(subjects) > 1)]
    subject = named[0][1] if named else None
    color = background = None
    for index, word in enumerate(words):
        name = _WORD_TO_COLOR.get(word.lower())
        if name is None:
            continue
        before = {w.lower() for w in words[max(0, index - 2) : index]}
        after = {w.lower() for w in words[index + 1 : index + 2]}
        if "background" in after or "backdrop" in after or "on" in before:
            background = background or name
        elif color is None:
            color = name
    return subject, color, background


def read_prompt(prompt: str) -> Scene:
    """The scene ``prompt`` asks for, defaults filled in; ``subject`` is "" where it names none."""
    subject, color, background = named_attributes(prompt)
    color, background = default_colors(color, background)
    ordered = [w.lower() for w in tokens(prompt)]
    words = set(ordered)
    size = next((_WORD_TO_SIZE[w] for w in ordered if w in _WORD_TO_SIZE), DEFAULT_SIZE)
    vertical = "top" if "top" in words else "bottom" if "bottom" in words else ""
    horizontal = "left" if "left" in words else "right" if "right" in words else ""
    position = f"{vertical} {horizontal}".strip() or DEFAULT_POSITION
    return Scene(subject or "", color, background, size, position)


def parse_prompt(prompt: str) -> Scene | None:
    """The scene a prompt asks for, or None when it names no subject the model can draw."""
    scene = read_prompt(prompt)
    return scene if scene.subject else None


def vocabulary_words() -> list[str]:
    """Every word the prompts use, for the tokenizer (both cases of words that may start a prompt)."""
    words: set[str] = set(FILLER_WORDS) | set(DIGIT_WORDS) | set(DIGITS) | set(LETTERS)
    for group in (COLOR_WORDS, SIZE_WORDS, SHAPE_WORDS):
        for options in group.values():
            words.update(options)
    for phrases in POSITION_PHRASES.values():
        for phrase in phrases:
            words.update(phrase.split())
    for phrase in BACKGROUND_PHRASES:
        words.update(tokens(phrase.replace("{bg}", "")))
    words.update({"corner", "middle", "backdrop", ",", ".", "-"})
    words |= {word.capitalize() for word in list(words) if word.isalpha() and len(word) > 1}
    return sorted(words)
