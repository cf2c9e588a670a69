"""OpenCLIP's tokenizer (``open_clip.tokenize``), as VideoCrafter's ``FrozenOpenCLIPEmbedder`` uses it.

Ids equal ``open_clip.tokenize`` (open_clip_torch 2.22.0): text cleaned with ftfy and a double HTML
unescape, whitespace collapsed, lower-cased, split by the same regular expression, byte-level BPE
over the first 48,894 merges of ``bpe_simple_vocab_16e6.txt.gz`` (49,408 ids: 256 bytes, 256
word-final bytes, the merges, ``<start_of_text>`` 49406 and ``<end_of_text>`` 49407). Rows are
``[start] + ids + [end]``, cut to the context length with the end token kept last, then padded with
**zeros**. Zero is also the id of ``"!"``, but padding is done here, after tokenizing, so ``"!"``
stays an ordinary token (``"RAIN!!"`` keeps its BPE ids) and the pad is 0, not the end token.

The merges file is not downloaded: the converter copies it into the checkpoint's ``tokenizer/``
folder (see ``convert/lvdm.py``), and :func:`OpenCLIPTokenizer.from_folder` reads it from there.
"""

from __future__ import annotations

import functools
import gzip
import html
import json
from pathlib import Path
from typing import Sequence

import numpy as np

CONFIG_NAME = "tokenizer_config.json"
CLASS_NAME = "OpenCLIPTokenizer"
VOCAB_NAME = "bpe_simple_vocab_16e6.txt.gz"
NUM_MERGES = 49152 - 256 - 2  # open_clip keeps merges[1 : 49152 - 256 - 2 + 1]
SPECIAL = ("<start_of_text>", "<end_of_text>")
_PATTERN = r"""<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


@functools.lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP table from bytes to printable characters (the BPE works on these)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def read_merges(path: str | Path) -> list[tuple[str, str]]:
    """The merges open_clip uses from a ``bpe_simple_vocab_16e6.txt.gz`` (or its uncompressed text)."""
    path = Path(path)
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    lines = data.decode("utf-8").split("\n")[1:NUM_MERGES + 1]
    merges = [tuple(line.split()) for line in lines]
    if len(merges) != NUM_MERGES or any(len(m) != 2 for m in merges):
        raise ValueError(f"{path}: not an OpenCLIP BPE vocabulary (expected {NUM_MERGES} merge lines "
                         f"of two symbols after the header)")
    return merges


class OpenCLIPTokenizer:
    """``tokenizer(prompts, ...) .input_ids`` -> (B, 77) int ids equal to ``open_clip.tokenize(prompts)``.

    Called like a transformers tokenizer (``padding``, ``max_length``, ``truncation``,
    ``return_tensors`` are accepted) so ``vinf_jax.models.clip_text.tokenize`` works unchanged.
    """

    def __init__(self, merges: Sequence[tuple[str, str]], context_length: int = 77):
        import regex  # declared dependency; \p{L} classes are not in the standard re module

        self.model_max_length = context_length
        self._byte_encoder = bytes_to_unicode()
        vocab = list(self._byte_encoder.values())
        vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m) for m in merges] + list(SPECIAL)
        self.encoder = {t: i for i, t in enumerate(vocab)}
        self.bpe_ranks = {tuple(m): i for i, m in enumerate(merges)}
        self.sot, self.eot = self.encoder[SPECIAL[0]], self.encoder[SPECIAL[1]]
        self._cache = {t: t for t in SPECIAL}
        self._pattern = regex.compile(_PATTERN, regex.IGNORECASE)
        self._spaces = regex.compile(r"\s+")

    def __len__(self) -> int:
        return len(self.encoder)

    @classmethod
    def from_file(cls, path: str | Path, context_length: int = 77) -> "OpenCLIPTokenizer":
        return cls(read_merges(path), context_length)

    @classmethod
    def from_folder(cls, folder: str | Path) -> "OpenCLIPTokenizer":
        """From a checkpoint's ``tokenizer/`` folder written by the converter."""
        folder = Path(folder)
        cfg = json.loads((folder / CONFIG_NAME).read_text())
        return cls.from_file(folder / cfg.get("vocab_file", VOCAB_NAME), int(cfg.get("model_max_length", 77)))

    # -- open_clip's SimpleTokenizer.encode ------------------------------------------------------
    def _clean(self, text: str) -> str:
        import ftfy

        text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
        return self._spaces.sub(" ", text).strip().lower()

    def _bpe(self, token: str) -> str:
        if token in self._cache:
            return self._cache[token]
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        while len(word) > 1:
            pairs = set(zip(word[:-1], word[1:]))
            bigram = min(pairs, key=lambda p: self.bpe_ranks.get(p, float("inf")))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
        out = " ".join(word)
        self._cache[token] = out
        return out

    def encode(self, text: str) -> list[int]:
        """BPE ids of ``text`` without start/end tokens."""
        ids = []
        for token in self._pattern.findall(self._clean(text)):
            token = "".join(self._byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self._bpe(token).split(" "))
        return ids

    def tokenize(self, prompts: str | Sequence[str], context_length: int | None = None) -> np.ndarray:
        """``open_clip.tokenize``: (B, context_length) int64, zero-padded after the end token."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        n = context_length or self.model_max_length
        out = np.zeros((len(prompts), n), np.int64)
        for row, text in enumerate(prompts):
            ids = [self.sot] + self.encode(text) + [self.eot]
            if len(ids) > n:
                ids = ids[:n]
                ids[-1] = self.eot
            out[row, :len(ids)] = ids
        return out

    def __call__(self, prompts, padding="max_length", max_length=None, truncation=True, return_tensors="np"):
        ids = self.tokenize(prompts, max_length)

        class Encoding:
            input_ids = ids

        return Encoding()
