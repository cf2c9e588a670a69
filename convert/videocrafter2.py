"""``python -m convert.videocrafter2``: the converter CLI, run from the repository.

The code lives in ``vinf_jax/convert/`` (installed with the package, also as the ``vinf-convert``
console script); this entry point keeps the design card's top-level ``convert/`` working.
"""

import sys

from vinf_jax.convert.videocrafter2 import main

if __name__ == "__main__":
    sys.exit(main())
