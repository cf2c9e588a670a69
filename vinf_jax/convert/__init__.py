"""Weights of other libraries -> vinf_jax checkpoints. The only place that knows checkpoint key names.

``mapping`` maps torch state dicts onto our parameter trees and reports every problem at once;
``keymaps`` holds the diffusers / transformers key conventions of our modules; ``safetensors_io``
reads weight files without executing code; ``videocrafter2`` is the converter CLI
(``vinf-convert``, or ``python -m convert.videocrafter2`` from the repository).
"""
