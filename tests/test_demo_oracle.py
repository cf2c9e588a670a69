"""benchmarks/demo_oracle.py: the Bayes-optimal denoiser of the demo world, checked against what it must be
by definition (the Gaussian likelihood written out, and the two ends of the noise schedule)."""

import numpy as np
import pytest

from benchmarks import demo_oracle as oracle
from vinf_jax.demo import world


@pytest.fixture(scope="module")
def temps():
    return oracle.templates()


def test_likelihood_map_is_the_gaussian_likelihood(temps):
    """Differences of the FFT map between start positions equal those of -|x_t - a x0(p)|^2 / (2 s^2)."""
    rng = np.random.default_rng(0)
    a, s, step = 0.3, 0.9, 2
    truth = oracle.clip(temps["circle", "right"], "right", (10, 40), step)
    xt = a * truth + s * rng.standard_normal(truth.shape)
    for shape, d in (("circle", "right"), ("square", "up")):
        T = temps[shape, d]
        lmap = oracle.log_likelihood(xt, T, d, step, a, s)
        direct = lambda x, y: -((xt - a * oracle.clip(T, d, (x, y), step)) ** 2).sum() / (2 * s ** 2)
        ref = direct(0, 0) - lmap[0, 0]  # the constant shared by all hypotheses
        for x, y in ((10, 40), (63, 1), (30, 7)):
            assert lmap[y, x] + ref == pytest.approx(direct(x, y), rel=1e-9, abs=1e-6)


def test_pure_noise_gives_the_prior_mean(temps):
    """a = 0: every start position is equally likely, so the posterior mean is the template's mean value at every
    pixel. The direction word is then worth nothing (the four templates of a shape hold the same brightness);
    the shape word is worth exactly the squared half-difference of the two shapes' mean brightness, which the
    prediction without it (their average) misses by."""
    rng = np.random.default_rng(1)
    xt = rng.standard_normal((oracle.FRAMES, world.SIZE, world.SIZE))
    T = temps["square", "left"]
    one = oracle.posterior_mean(xt, [(T, "left")], 2, 0.0, 1.0)
    assert np.allclose(one, T.mean(), atol=1e-12)
    four = oracle.posterior_mean(xt, [(temps["square", d], d) for d in world.DIRECTIONS], 2, 0.0, 1.0)
    assert np.allclose(four, one, atol=1e-12)
    r = oracle.worth(2, 999, 1.0, clips=2, abar=np.zeros(1000))
    half = (temps["circle", "up"].mean() - temps["square", "up"].mean()) / 2
    assert r["direction"] == pytest.approx(0.0, abs=1e-12)
    assert r["shape"] == pytest.approx(half ** 2, rel=1e-9)


def test_little_noise_recovers_the_clip_and_words_are_worth_nothing():
    """t = 0 (a ~ 1, s ~ 0.03): the true hypothesis explains the clip far better than any other, so the posterior
    mean is the clip itself with or without the words."""
    r = oracle.worth(2, 0, 1.0, clips=3)
    assert r["known"] < 1e-12 and abs(r["direction"]) < 1e-12 and abs(r["shape"]) < 1e-12


def test_the_moving_worlds_direction_word_is_worth_more_than_the_static_ones(temps):
    """The measured claim in BENCHMARKS (issue 23): at t = 900 with the latent-equivalent noise, not knowing the
    direction costs a perfect denoiser more when the object moves 2 px per frame than when it stands still."""
    moving, static = oracle.worth(2, 900, 4.0, clips=24), oracle.worth(0, 900, 4.0, clips=24)
    assert moving["direction"] > 2 * static["direction"] > 0
