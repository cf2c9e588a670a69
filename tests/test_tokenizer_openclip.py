"""vinf_jax.tokenizers.OpenCLIPTokenizer gives exactly ``open_clip.tokenize``'s ids (open_clip_torch 2.22.0)."""

import numpy as np
import pytest

import openclip_ref
from vinf_jax.tokenizers import OpenCLIPTokenizer
from vinf_jax.tokenizers.openclip import read_merges

PROMPTS = [
    "", " ", "!", "!!", "RAIN!!", "!hello! !", "a,b;c:d.e?f!g", "(4K) [HDR] {wow} #tag @user $5 100%",
    "A Beagle Wearing DIVING goggles", "don't we'll I'm they've you're she'd it's", "tabs\tand\nnewlines  and   spaces",
    "café naïve façade — “quotes” ‘single’ …", "emoji 🙂🐶 and 日本語 and Ελληνικά", "&amp; &lt;b&gt; &quot;html&quot;",
    "<start_of_text> inside <end_of_text>", "numbers 3.14159 and 2026-11-26", "x" * 300, "long " * 80,
]


@pytest.fixture(scope="module")
def tok():
    return OpenCLIPTokenizer.from_file(openclip_ref.vocab_file())


def test_ids_equal_open_clip_tokenize(tok):
    want = openclip_ref.tokenizer_module().tokenize(PROMPTS).numpy()
    got = tok.tokenize(PROMPTS)
    assert got.shape == want.shape == (len(PROMPTS), 77)
    np.testing.assert_array_equal(got, want)


def test_padding_is_zero_and_bang_is_an_ordinary_token(tok):
    ids = tok.tokenize(["RAIN!!", "!", "long " * 80])
    assert len(tok) == 49408 and (tok.sot, tok.eot) == (49406, 49407)
    assert ids[0, 0] == 49406 and list(ids[0, 3:]) == [49407] + [0] * 73  # [start, rain, !!, end, 0, ...]
    assert ids[0, 2] == tok.encoder["!!</w>"] and ids[1, 1] == tok.encoder["!</w>"] != 0
    assert ids[2, -1] == 49407 and (ids[2] != 0).all()  # truncated: the end token is kept last


def test_call_like_a_transformers_tokenizer(tok):
    from vinf_jax.models.clip_text import tokenize

    got = tokenize(tok, ["a cat", "RAIN!!"])
    assert got.dtype == np.int32 and got.shape == (2, 77)
    np.testing.assert_array_equal(got, tok.tokenize(["a cat", "RAIN!!"]))


def test_a_file_that_is_not_the_vocabulary_is_refused(tmp_path):
    (tmp_path / "v.txt").write_text("#version\na b\n")
    with pytest.raises(ValueError, match="not an OpenCLIP BPE vocabulary"):
        read_merges(tmp_path / "v.txt")
