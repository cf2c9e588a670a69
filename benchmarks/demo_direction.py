"""Why the tiny-demo model ignores its direction word: the trainer and ``demo_prompts.py`` run on
variants of the world or of the UNet that the product does not ship (issue 23's diagnostics).

    python benchmarks/demo_direction.py strong-trail train --out DIR        # python -m vinf_jax.demo.train, patched
    python benchmarks/demo_direction.py strong-trail prompts --weights DIR --gap --seeds 200 201 202
    python benchmarks/demo_direction.py strong-trail+frame-positions train --out DIR   # variants combine

Each variant patches module constants (or one layer) before the trainer or the benchmark starts, so
evaluate a variant's weights with the same variant. Results are in BENCHMARKS.md ("Issue 23, direction").

- ``lanes``: objects keep to the right of their way (``world.LANE_WIDTH`` 16): moving right in the lower
  half of the frame, left in the upper, down in the left half, up in the right half; the direction word
  then changes where the object is, not only how it moves.
- ``zero-snr``: the trainer's scheduler config gets ``rescale_betas_zero_snr`` (zero terminal SNR): the
  input at t = 999 is pure noise, as sampling's first input is. Its export carries the flag, which the
  samplers honour.
- ``strong-trail``: the trail at half and a quarter of the object's brightness (``world.TRAIL`` 0.5 / 0.25
  instead of 0.25 / 0.12): a right and a left frame then differ by more than a circle and a square do.
  The detector's object threshold rises above it (0.65) and its centroid edge to 0.6.
- ``frame-positions``: sinusoidal frame positions added to the temporal attention's input rows, which
  diffusers' UNet3D (and VideoCrafter2) do not have; not an architecture the converter or exporter knows,
  so its weights are only meaningful in this script.
- ``direction-only``: one colour and one shape, so that the direction is the only word that varies.
- ``slow``: 8 px/s instead of 32 (3.5 px over an 8-frame clip at 16 fps): the direction becomes a
  detail as small as a square's corners, decided late in sampling as the shape is.
- ``big``: circle radius and square half side 14 px instead of 7, trail twice as far behind: the object
  (and its direction) four times its share of the loss.
- ``one-way``: every object moves right, so no word is needed: can the UNet learn to draw motion at all?
  (The probes' direction is then the share of clips that move right.)
- ``curriculum``: the first ``CURRICULUM_STEPS`` batches come from the right-moving videos only (the motion
  of one-way, learnt first), then from all of them: is it drawing motion at all, or choosing it by the word?
- ``static``: the object stands still and the direction word only says which side its trail is on: an
  oriented detail of each frame that the clip's motion cannot give away (with ``strong-trail``). The
  direction probes mean nothing here (nothing moves); the loss gap says whether the word is used.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vinf_jax.demo import world  # noqa: E402


def lanes():
    world.LANE_WIDTH = 16.0


def zero_snr():
    from vinf_jax.demo import train

    train.SCHEDULER["rescale_betas_zero_snr"] = True  # in place: the trainer, its probes and its export read it


def strong_trail():
    world.TRAIL = ((5.0, 0.5), (10.0, 0.25))
    world.THRESHOLD = 0.65  # between the trail's brightest (0.5) and the dimmest object colour (0.85)
    world.EDGE = 0.6  # world's rule for the centroid's edge: 1.2 x the trail's brightest


def frame_positions():
    import jax.numpy as jnp
    from flax import nnx

    from vinf_jax.models import temporal
    from vinf_jax.models.layers import timestep_embedding

    class PositionedLinear(nnx.Linear):
        """proj_in of the temporal attention: its rows are (pixels, frames, channels); adds the Transformer's
        sin/cos table of the frame index (the UNet's timestep embedding, unflipped)."""

        def __call__(self, rows):
            y = super().__call__(rows)
            return y + timestep_embedding(jnp.arange(y.shape[-2]), y.shape[-1], flip_sin_to_cos=False).astype(y.dtype)

    init = temporal.TransformerTemporal.__init__

    def patched_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.proj_in.__class__ = PositionedLinear  # same parameters, same paths: only the call changes

    temporal.TransformerTemporal.__init__ = patched_init


def direction_only():
    world.COLORS = {"red": world.COLORS["red"]}
    world.SHAPES = ("circle",)
    world.WORDS = ("a", "moving") + tuple(world.COLORS) + world.SHAPES + tuple(world.DIRECTIONS)


def slow():
    world.SPEED = 8.0


def big():
    world.RADIUS, world.HALF_SIDE = 14.0, 14.0  # 4x the area: a quarter of the frame's width
    world.TRAIL = tuple((2 * d, level) for d, level in world.TRAIL)


def one_way():
    world.DIRECTIONS = {"right": world.DIRECTIONS["right"]}
    world.WORDS = ("a", "moving") + tuple(world.COLORS) + world.SHAPES + tuple(world.DIRECTIONS)


CURRICULUM_STEPS = 900


def curriculum():
    from vinf_jax.demo import train

    batches = train.video_batches

    def patched(latents, scenes, fps, p):
        keep = [i for i, s in enumerate(scenes) if s.direction == "right"]
        first = batches(latents[keep], [scenes[i] for i in keep], fps[keep], p)
        rest, calls = batches(latents, scenes, fps, p), [0]

        def draw(rng, b):
            calls[0] += 1
            return (first if calls[0] <= CURRICULUM_STEPS else rest)(rng, b)

        return draw

    train.video_batches = patched


def static():
    world.SPEED = 0.0  # the trail still points away from the caption's direction


VARIANTS = {"strong-trail": strong_trail, "frame-positions": frame_positions, "direction-only": direction_only,
            "slow": slow, "static": static, "one-way": one_way, "curriculum": curriculum, "big": big, "lanes": lanes, "zero-snr": zero_snr}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    variants = argv[0].split("+") if argv else []
    if len(argv) < 2 or not variants or any(v not in VARIANTS for v in variants) or argv[1] not in ("train", "prompts"):
        print(f"usage: demo_direction.py VARIANT[+VARIANT...] {{train,prompts}} ARGS...; variants: {', '.join(VARIANTS)}",
              file=sys.stderr)
        return 2
    for v in variants:
        VARIANTS[v]()
    if argv[1] == "train":
        from vinf_jax.demo import train

        return train.main(argv[2:])
    from benchmarks import demo_prompts

    return demo_prompts.main(argv[2:])


if __name__ == "__main__":
    sys.exit(main())
