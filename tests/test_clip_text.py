"""Parity of the Flax CLIP text encoder with transformers' ``CLIPTextModel`` (tiny, random, float32)."""

import numpy as np
import pytest
import torch
from flax import nnx

from torch_refs import state_dict_numpy, tiny_clip_text, tiny_tokenizer
from vinf_jax.errors import ConversionError
from vinf_jax.convert.keymaps import convert_text_encoder
from vinf_jax.loading import Model
from vinf_jax.models.clip_text import tokenize


def flax_from_torch(ref, cfg_dict):
    cfg, params = convert_text_encoder(cfg_dict, state_dict_numpy(ref))
    return Model("text_encoder", cfg, params).module()


def assert_close(got, ref):
    err = float(np.abs(np.asarray(got) - ref).max())
    scale = float(np.abs(ref).max())
    assert err <= 1e-4 * scale, (err, scale)
    return err / scale


@pytest.mark.parametrize("hidden_act", ["gelu", "quick_gelu"])
def test_last_hidden_state_matches_transformers(hidden_act):
    ref, cfg_dict = tiny_clip_text(hidden_act)
    model = flax_from_torch(ref, cfg_dict)
    forward = nnx.jit(lambda m, ids: m(ids))  # one compile per shape beats eager op-by-op on CPU
    rng = np.random.default_rng(0)
    # padded like the pipeline (eos repeated to 77, no attention mask) and short unpadded prompts
    padded = np.full((2, 77), 999, np.int64)
    padded[:, 0] = 998
    padded[0, 1:6] = rng.integers(0, 998, 5)
    padded[1, 1:30] = rng.integers(0, 998, 29)
    unpadded = rng.integers(0, 1000, (3, 11))
    for ids in (padded, unpadded):
        with torch.no_grad():
            want = ref(torch.from_numpy(ids)).last_hidden_state.numpy()
        assert_close(forward(model, ids), want)


def test_unprefixed_and_prefixed_keys_convert_alike():
    ref, cfg_dict = tiny_clip_text("quick_gelu")
    sd = state_dict_numpy(ref)
    prefixed = {f"text_model.{k}": v for k, v in sd.items()}
    prefixed["text_model.embeddings.position_ids"] = np.arange(77)[None]
    _, a = convert_text_encoder(cfg_dict, sd)
    _, b = convert_text_encoder(cfg_dict, prefixed)
    np.testing.assert_array_equal(a["text_model"]["encoder"]["layers"][1]["mlp"]["fc1"]["kernel"],
                                  b["text_model"]["encoder"]["layers"][1]["mlp"]["fc1"]["kernel"])
    del prefixed["text_model.final_layer_norm.bias"]
    with pytest.raises(ConversionError, match="final_layer_norm.bias"):
        convert_text_encoder(cfg_dict, prefixed)


def test_tokenize_matches_pipeline_tokenization(tmp_path):
    tok = tiny_tokenizer(tmp_path)
    prompts = ["the cat and the dog", "Hello,  WORLD!! ünïcode", "the " * 100]
    ids = tokenize(tok, prompts)
    want = tok(prompts, padding="max_length", max_length=77, truncation=True).input_ids
    assert ids.dtype == np.int32 and ids.shape == (3, 77)
    np.testing.assert_array_equal(ids, np.asarray(want))
    assert ids[2, -1] == tok.eos_token_id  # truncation keeps the end token
    np.testing.assert_array_equal(tokenize(tok, "the cat"), tokenize(tok, ["the cat"]))
