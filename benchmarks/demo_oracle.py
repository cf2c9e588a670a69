"""What the demo world's words are worth to a perfect denoiser (issue 23).

    python benchmarks/demo_oracle.py                       # shipped world (2 px per frame) and static world
    python benchmarks/demo_oracle.py --steps 0 2 4 --noise-factor 4 8 --json OUT

A trained model can only learn what a word is worth in the loss. This computes that worth exactly for the
world's own clips, with the Bayes-optimal denoiser: a noisy clip x_t = a x0 + s noise (a, s from VideoCrafter2's
schedule) is explained by every hypothesis (shape, direction, start position on the 64 x 64 pixel grid), and the
posterior mean of x0 is the best prediction any model can make. The excess squared error of the posterior
mean when the direction word (or the shape word) is not given, over that with everything given, is the word's
worth at timestep t. The colour is always given: one channel (brightness) is modelled.

Clips are 8 frames moving ``--steps`` whole pixels per frame (2: the shipped world at the demo's 16 fps;
0: the static world of ``demo_direction.py static``, where the word only names the trail's side). Frames are
scaled to unit variance, as the trainer scales latents. ``--noise-factor`` k multiplies the noise: the UNet
reads 8 x 8 x 4 = 256 latent numbers per frame where the oracle reads 4096 pixels, so k = 4 gives the oracle
the evidence per frame that the latents carry at the same per-number SNR; k = 8, a reader half as efficient.
Sums over all start positions at once are circular correlations, computed with the FFT (the frame is a torus).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks.common import write_json  # noqa: E402
from vinf_jax.demo import world  # noqa: E402

FRAMES = 8
TIMESTEPS = (500, 600, 700, 800, 850, 900, 950, 980, 999)


def templates() -> dict:
    """{(shape, direction): one frame (SIZE, SIZE), the object (with its trail) centred on pixel corner (0, 0)},
    scaled so that the world's frames have unit variance."""
    out = {(sh, d): world.render(world.Scene(sh, "red", d, 0.0, 0.0), 1, 16.0)[0].max(-1).astype(np.float64)
           for sh in world.SHAPES for d in world.DIRECTIONS}
    scale = np.std(np.stack(list(out.values())))
    return {k: v / scale for k, v in out.items()}


def _roll(a, dy, dx):
    return np.roll(a, (dy, dx), axis=(-2, -1))


def clip(template: np.ndarray, direction: str, start, step: int) -> np.ndarray:
    """(FRAMES, SIZE, SIZE): the template moved to ``start`` (x, y) and ``step`` pixels per frame."""
    dx, dy = world.DIRECTIONS[direction]
    return np.stack([_roll(template, start[1] + dy * step * f, start[0] + dx * step * f) for f in range(FRAMES)])


def log_likelihood(xt, template, direction: str, step: int, a: float, s: float) -> np.ndarray:
    """log p(x_t | hypothesis) for every start position (map over (y, x)), up to a constant shared by all
    hypotheses: <x_t, a x0> / s^2 - |a x0|^2 / (2 s^2) (the energy differs between shapes)."""
    dx, dy = world.DIRECTIONS[direction]
    corr = np.real(np.fft.ifft2(np.fft.fft2(xt) * np.conj(np.fft.fft2(template))))  # corr[f](q) = <xt[f], T(. - q)>
    fit = sum(_roll(corr[f], -dy * step * f, -dx * step * f) for f in range(FRAMES))
    return a / s ** 2 * fit - a ** 2 / (2 * s ** 2) * FRAMES * float((template ** 2).sum())


def posterior_mean(xt, hypotheses, step: int, a: float, s: float) -> np.ndarray:
    """E[x0 | x_t] over ``hypotheses`` [(template, direction)] x every start position, uniform prior."""
    logs = [log_likelihood(xt, T, d, step, a, s) for T, d in hypotheses]
    top = max(float(lg.max()) for lg in logs)
    weights = [np.exp(lg - top) for lg in logs]
    total = sum(float(w.sum()) for w in weights)
    out = np.zeros_like(xt)
    for (T, d), w in zip(hypotheses, weights):
        dx, dy = world.DIRECTIONS[d]
        spread = np.real(np.fft.ifft2(np.fft.fft2(w / total) * np.fft.fft2(T)))  # sum_p w(p) T(. - p)
        out += np.stack([_roll(spread, dy * step * f, dx * step * f) for f in range(FRAMES)])
    return out


def worth(step: int, t: int, noise_factor: float, clips: int, seed: int = 0, abar=None) -> dict:
    """Mean squared error per number of the posterior mean with every word given ("known"), and the excess
    without the direction word and without the shape word, over ``clips`` random clips at timestep t."""
    from vinf_jax.demo.train import alphas_cumprod

    ab = float((alphas_cumprod() if abar is None else abar)[t])
    a, s = np.sqrt(ab), noise_factor * np.sqrt(1 - ab)
    temps = templates()
    rng = np.random.default_rng([seed, t, step])
    known, no_dir, no_shape = [], [], []
    for _ in range(clips):
        shape = world.SHAPES[rng.integers(len(world.SHAPES))]
        direction = list(world.DIRECTIONS)[rng.integers(len(world.DIRECTIONS))]
        x0 = clip(temps[shape, direction], direction, rng.integers(0, world.SIZE, 2), step)
        xt = a * x0 + s * rng.standard_normal(x0.shape)
        err = lambda hyps: float(np.mean((posterior_mean(xt, hyps, step, a, s) - x0) ** 2))
        k = err([(temps[shape, direction], direction)])
        known.append(k)
        no_dir.append(err([(temps[shape, d], d) for d in world.DIRECTIONS]) - k)
        no_shape.append(err([(temps[sh, direction], direction) for sh in world.SHAPES]) - k)
    return {"known": float(np.mean(known)), "direction": float(np.mean(no_dir)), "shape": float(np.mean(no_shape))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, nargs="+", default=[2, 0], help="pixels per frame (0: the static world)")
    ap.add_argument("--noise-factor", type=float, nargs="+", default=[4.0, 8.0])
    ap.add_argument("--t", type=int, nargs="+", default=list(TIMESTEPS))
    ap.add_argument("--clips", type=int, default=96)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    out = []
    for k in args.noise_factor:
        for step in args.steps:
            rows = {t: worth(step, t, k, args.clips) for t in args.t}
            mean = {w: float(np.mean([r[w] for r in rows.values()])) for w in ("direction", "shape")}
            out.append({"step_px": step, "noise_factor": k, "clips": args.clips, "by_t": rows, "mean_excess": mean})
            for t, r in rows.items():
                print(f"k={k:g} step={step} t={t}: known {r['known']:.5f}, excess without direction "
                      f"{r['direction']:+.5f}, without shape {r['shape']:+.5f}", flush=True)
            print(f"k={k:g} step={step}: mean excess over t: direction {mean['direction']:+.5f}, "
                  f"shape {mean['shape']:+.5f}", flush=True)
    if args.json:
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
