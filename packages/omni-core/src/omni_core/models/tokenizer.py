"""A byte-level CLIP tokenizer written from scratch, no hub needed.

CLIP's real vocabulary comes from a model hub, which is unreachable here.
A vocabulary of the 256 byte characters (plus their end-of-word forms) and
no merges tokenizes any text losslessly, one id per byte, and loads through
``CLIPTokenizer.from_pretrained`` like a real one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
MODEL_MAX_LENGTH = 77
VOCAB_SIZE = 2 + 256 + 256


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte → printable character table."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def byte_level_vocab() -> dict[str, int]:
    """Token → id: the two specials, then each byte character, then its ``</w>`` form."""
    chars = [_bytes_to_unicode()[b] for b in range(256)]
    vocab = {BOS_TOKEN: 0, EOS_TOKEN: 1}
    for char in chars:
        vocab[char] = len(vocab)
    for char in chars:
        vocab[char + "</w>"] = len(vocab)
    return vocab


def write_byte_level_clip_tokenizer(directory: Path) -> None:
    """Write vocab.json, merges.txt and tokenizer_config.json loadable by CLIPTokenizer."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps(byte_level_vocab()), encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": MODEL_MAX_LENGTH,
        "bos_token": BOS_TOKEN,
        "eos_token": EOS_TOKEN,
        "pad_token": EOS_TOKEN,
        "unk_token": EOS_TOKEN,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    specials = {
        "bos_token": BOS_TOKEN,
        "eos_token": EOS_TOKEN,
        "pad_token": EOS_TOKEN,
        "unk_token": EOS_TOKEN,
    }
    (directory / "special_tokens_map.json").write_text(json.dumps(specials, indent=2), encoding="utf-8")


def byte_level_clip_text_encoder(
    *,
    hidden_size: int = 32,
    intermediate_size: int = 64,
    num_hidden_layers: int = 2,
    projection_dim: int = 32,
) -> Any:
    """A CLIP text encoder sized for the byte-level vocabulary (random weights).

    Shared by the tiny random pipelines, the digits model and the memory benchmark's
    mid-size model, so all tokenize and encode prompts the same way: the fields that
    must agree with :func:`write_byte_level_clip_tokenizer` (vocabulary size, special
    token ids) are set here only; callers choose the width and depth.
    Needs transformers (the ``[diffusers]`` extra).
    """
    return clip_text_encoder(
        vocab_size=VOCAB_SIZE,
        max_length=MODEL_MAX_LENGTH,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_hidden_layers,
        projection_dim=projection_dim,
    )


def clip_text_encoder(
    *,
    vocab_size: int,
    max_length: int,
    hidden_size: int,
    intermediate_size: int,
    num_hidden_layers: int,
    projection_dim: int,
    with_projection: bool = False,
) -> Any:
    """A small CLIP text encoder (random weights) whose ids 0 and 1 are the start and end/pad tokens;
    ``with_projection``: also its ``text_projection`` (``CLIPTextModelWithProjection``)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    model_class = CLIPTextModelWithProjection if with_projection else CLIPTextModel
    return model_class(
        CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            intermediate_size=intermediate_size,
            num_attention_heads=4,
            num_hidden_layers=num_hidden_layers,
            max_position_embeddings=max_length,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            projection_dim=projection_dim,
        )
    )


def write_word_level_tokenizer(directory: Path, words: list[str], *, max_length: int) -> int:
    """Write a case-sensitive word-level tokenizer (tokenizer.json) over ``words``; returns its size.

    Loads with ``PreTrainedTokenizerFast.from_pretrained``. Ids 0 and 1 are the start
    and end/pad tokens (as :func:`clip_text_encoder` expects), 2 is the unknown word.
    Text is split into runs of letters, single digits and single punctuation marks.
    """
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {BOS_TOKEN: 0, EOS_TOKEN: 1, "<|unknown|>": 2}
    for word in words:
        vocab.setdefault(word, len(vocab))
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<|unknown|>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Split(Regex(r"[A-Za-z]+|[0-9]|[^A-Za-z0-9]"), "isolated"),
        ]
    )
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A {EOS_TOKEN}", special_tokens=[(BOS_TOKEN, 0), (EOS_TOKEN, 1)]
    )
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        unk_token="<|unknown|>",
        model_max_length=max_length,
    ).save_pretrained(directory)
    return len(vocab)


T5_SPECIALS = ("<pad>", "</s>", "<unk>")
T5_WORD_START = "\u2581"


def write_character_t5_tokenizer(directory: Path) -> int:
    """Write a T5 tokenizer (tokenizer.json) whose pieces are single ASCII characters; returns its size.

    Flux, SD3 and PixArt encode prompts with T5, whose SentencePiece vocabulary
    also comes from a hub. A Unigram model over the printable ASCII characters
    (plus T5's three specials and its word-start mark) tokenizes any English
    prompt, one id a character, and loads with ``T5TokenizerFast.from_pretrained``.
    """
    from transformers import T5TokenizerFast

    pieces = [(token, 0.0) for token in T5_SPECIALS] + [(T5_WORD_START, -1.0)]
    pieces += [(chr(code), -2.0) for code in range(ord("!"), ord("~") + 1)]
    T5TokenizerFast(vocab=pieces, extra_ids=0).save_pretrained(directory)
    return len(pieces)


def character_t5_tokenizer(directory: Path) -> tuple[Any, int]:
    """:func:`write_character_t5_tokenizer` into ``directory``, loaded back the way a pipeline's
    ``from_pretrained`` loads it; returns the tokenizer and its vocabulary size (the T5 encoder's)."""
    from transformers import T5TokenizerFast

    vocab_size = write_character_t5_tokenizer(directory)
    return T5TokenizerFast.from_pretrained(directory), vocab_size
