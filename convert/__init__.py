"""Repository entry points of the converters (``python -m convert.videocrafter2``); the code is in
``vinf_jax.convert``. Not installed: installed users run ``vinf-convert``."""
