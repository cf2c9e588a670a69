"""A real ``CLIPTokenizer`` (byte-level BPE files) whose merges spell the demo world's words.

The converter and the checkpoint loader read tokenizers with transformers' ``CLIPTokenizer``, so
the demo ships one instead of a bespoke format: every byte character (bare and word-final) is in
the vocabulary, so any text tokenizes; the world's words (``world.WORDS``) are single tokens.
"""

from __future__ import annotations

import json
from pathlib import Path

from vinf_jax.demo.world import WORDS

SPECIAL = ("<|startoftext|>", "<|endoftext|>")
# A caption is 7 tokens (start, five words, end): 8 positions hold it with one padding token. With CLIP's
# 77, 71 identical padding tokens (each a summary of the whole caption made by a causal encoder) took
# most of the UNet's cross-attention and carried the colour word alone (BENCHMARKS.md, issue 23); with 8,
# every word's own token is an eighth of the keys. Longer prompts are cut with a PromptWarning.
MAX_LENGTH = 8


def _merges(word: str) -> list[str]:
    """Left-to-right merges that build ``word</w>`` from its characters, one prefix at a time."""
    parts = list(word[:-1]) + [word[-1] + "</w>"]
    out, prefix = [], parts[0]
    for p in parts[1:]:
        out.append(f"{prefix} {p}")
        prefix += p
    return out


def vocab_and_merges() -> tuple[dict[str, int], list[str]]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    # BPE applies the lowest-ranked merge first: with "red" before "green", "r e" outranks "g r" and
    # "green" ends as g/re/e/n. Longer words first keeps every word's chain ahead of shorter words'
    # pairs (tests/test_demo_train.py checks that each world word is one token).
    merges = list(dict.fromkeys(m for w in sorted(WORDS, key=len, reverse=True) for m in _merges(w)))
    tokens = chars + [c + "</w>" for c in chars] + [m.replace(" ", "") for m in merges] + list(SPECIAL)
    return {t: i for i, t in enumerate(dict.fromkeys(tokens))}, merges


def write_tokenizer(folder: str | Path) -> int:
    """Write vocab.json, merges.txt, tokenizer_config.json into ``folder``; returns the vocabulary size."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = vocab_and_merges()
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": MAX_LENGTH}) + "\n", encoding="utf-8")
    return len(vocab)
