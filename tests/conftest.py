"""Eight virtual CPU devices for every test process (must run before jax is imported)."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")

# JAX's persistent compilation cache is on by default (vinf_jax.compile_cache); tests and the CLI
# runs they start keep it out of the user's home, in one folder per test process.
if "VINF_JAX_CACHE_DIR" not in os.environ:
    import tempfile

    os.environ["VINF_JAX_CACHE_DIR"] = tempfile.mkdtemp(prefix="vinf_jax_test_cache_")
    os.environ.setdefault("VINF_CACHE", tempfile.mkdtemp(prefix="vinf_jax_test_home_cache_"))
