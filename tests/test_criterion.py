"""The tuning criterion (flip rate of logit perturbations against decision margins) and its test-like pool."""

from __future__ import annotations

import numpy as np
import pytest

from olafhe.core.errors import ShapeError
from olafhe.core.planning.criterion import FlipCriterion, flip_rate, margin_perturbations, margins
from olafhe.data.augment import crop_flip, crop_flipped, mixed


def test_margins_and_margin_perturbations() -> None:
    ref = np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 1.5]])
    approx = np.array([[2.0, 1.5, 0.0], [0.0, 1.0, 2.0]])
    np.testing.assert_allclose(margins(ref), [2.0, 0.5])
    # image 0: class 1 gains 0.5 on class 0's -1 -> 1.5 toward it; image 1: class 2 gains 0.5 + 1.0
    np.testing.assert_allclose(margin_perturbations(ref, approx), [1.5, 1.5])
    approx[0, 0] = np.nan
    assert margin_perturbations(ref, approx)[0] == np.inf  # a blown-up logit is a certain flip
    with pytest.raises(ShapeError):
        margin_perturbations(ref, approx[:1])


def test_flip_rate_pairs_every_margin_with_every_perturbation() -> None:
    m = np.array([1.0, 2.0, 3.0, 4.0])
    d = np.array([0.5, 2.5])
    # pairs exceeding: d=2.5 beats margins 1 and 2 -> 2 of 8 pairs
    assert flip_rate(m, d) == pytest.approx(25.0)
    assert flip_rate(m, d, scale=2.0) == pytest.approx(50.0)  # 1.0 does not exceed margin 1; 5.0 beats all 4
    assert flip_rate(m, np.zeros(3)) == 0.0


def test_predicted_drop_grows_with_perturbation_scale() -> None:
    rng = np.random.default_rng(1)
    ref = rng.normal(0, 2, (500, 10))
    crit = FlipCriterion(ref, 0.002, 2.0)
    pert = crit.perturbations(ref + rng.normal(0, 0.3, ref.shape))
    drops = [crit.predicted_drop(pert, s) for s in (0.5, 1.0, 2.0, 4.0)]
    assert drops == sorted(drops) and drops[0] < drops[-1]
    assert crit.predicted_drop(pert) == pytest.approx(0.002 * crit.flip_rate(pert) ** 2)


def test_mixed_pool_is_seeded_test_like_and_keeps_shapes() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    a, b = mixed(images, seed=3), mixed(images, seed=3)
    assert a.dtype == np.uint8 and a.shape == images.shape
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, mixed(images, seed=4))
    assert not np.array_equal(a, images)
    shifted = crop_flip(images, np.random.default_rng(5), pad=0)
    for orig, out in zip(images, shifted, strict=True):  # without padding: only flips
        assert np.array_equal(out, orig) or np.array_equal(out, orig[:, ::-1])
    with pytest.raises(ValueError, match="uint8"):
        mixed(images.astype(np.float32), seed=0)


def test_crop_flipped_pool_is_seeded_and_keeps_every_pixel_value_range() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    a = crop_flipped(images, seed=3)
    np.testing.assert_array_equal(a, crop_flipped(images, seed=3))
    assert a.dtype == np.uint8 and a.shape == images.shape and not np.array_equal(a, images)
    assert not np.array_equal(a, crop_flipped(images, seed=4))
    with pytest.raises(ValueError, match="uint8"):
        crop_flipped(images.astype(np.float32), seed=0)


def test_tuning_pool_kind_is_a_checked_setting() -> None:
    from olafhe.core.config import load_config, resolve_data_dir
    from olafhe.core.errors import ConfigError
    from olafhe.jobs.workspace import tuning_pool

    sets = ["optimizer.eval_images=16"]
    data = resolve_data_dir()
    crop = tuning_pool(load_config("configs/small_cnn.toml", [*sets, 'optimizer.tuning_pool="cropflip"']), data)
    mix = tuning_pool(load_config("configs/small_cnn.toml", [*sets, 'optimizer.tuning_pool="mixed"']), data)
    both = tuning_pool(load_config("configs/small_cnn.toml", sets), data)  # the default: both, half each
    assert crop.images.shape == mix.images.shape == both.images.shape == (16, 3, 32, 32)
    assert crop.parts == mix.parts == (16,) and both.parts == (8, 8)
    assert not np.array_equal(crop.images.numpy(), mix.images.numpy())
    # the default's parts: the first half of the same held-out images, blended, then only crop-flipped
    for kind, part in (("mixed", both.images[:8]), ("cropflip", both.images[8:])):
        alone = tuning_pool(load_config("configs/small_cnn.toml", ["optimizer.eval_images=8",
                                                                   f'optimizer.tuning_pool="{kind}"']), data)
        np.testing.assert_array_equal(part.numpy(), alone.images.numpy())
    with pytest.raises(ConfigError, match="tuning_pool"):
        load_config("configs/small_cnn.toml", ['optimizer.tuning_pool="noise"'])


def test_flip_score_of_a_pool_in_parts_is_the_product_of_their_flip_rates() -> None:
    rng = np.random.default_rng(2)
    ref = rng.normal(0, 2, (300, 10))
    approx = ref + rng.normal(0, 0.4, ref.shape)
    whole = FlipCriterion(ref, 0.05, 0.6)
    split = FlipCriterion(ref, 0.05, 0.6, (100, 200))
    pert = whole.perturbations(approx)
    a = flip_rate(margins(ref[:100]), pert[:100])
    b = flip_rate(margins(ref[100:]), pert[100:])
    assert split.flip_rates(pert) == pytest.approx([a, b])
    assert split.flip_rate(pert) == pytest.approx(a * b)
    assert split.predicted_drop(pert) == pytest.approx(0.05 * (a * b) ** 0.6)
    assert whole.flip_rate(pert) == pytest.approx(flip_rate(margins(ref), pert))
    assert split.predicted_drop(pert, 2.0) > split.predicted_drop(pert)
    with pytest.raises(ShapeError, match="parts"):
        FlipCriterion(ref, 0.05, 0.6, (100, 100))
