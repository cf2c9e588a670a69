"""Errors a user can cause. Internal invariants are plain asserts."""


class VinfError(Exception):
    """Base class: the CLI turns these into one line on stderr and exit status 2."""


class ConfigError(VinfError, ValueError):
    """A config key, value or file is wrong; the message names it and what is allowed."""


class ConversionError(VinfError, ValueError):
    """Weights cannot be mapped onto the model; the message lists every problem found."""


class CheckpointError(VinfError, ValueError):
    """A vinf_jax checkpoint folder is missing, partial, corrupt or of another architecture."""


class NonFiniteError(VinfError, FloatingPointError):
    """NaN or inf appeared during denoising; the message names the step."""


class OutOfMemoryError(VinfError, MemoryError):
    """The devices ran out of memory; the message says what was asked for and what would fit."""


class DiskFullError(VinfError, OSError):
    """The disk filled up while writing outputs; the message names the folder. No partial file is left."""


class VinfWarning(UserWarning):
    """Something the user should know that does not stop the run; the CLI prints it as one line."""


def is_out_of_memory(e: BaseException) -> bool:
    """A runtime error of the XLA backend saying the device memory is exhausted."""
    import jax  # here, not above: configs and errors load without jax

    return isinstance(e, jax.errors.JaxRuntimeError) and "RESOURCE_EXHAUSTED" in str(e)


def is_disk_full(e: BaseException) -> bool:
    """``e``, or an exception it was raised from, is "no space left on device" (or over a disk quota)."""
    import errno

    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        e = e.__cause__ or e.__context__
    return False
