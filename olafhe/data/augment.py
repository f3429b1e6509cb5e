"""Test-like images from training images: random crops and flips, optionally mixed pairwise.

Training images are classified with near-100 % accuracy and large margins, so they hide the low-margin
decisions that approximation errors flip on unseen images. Random translations and flips
(:func:`crop_flipped`, the tuning pool's default) lower the margins while keeping every label; blending
each augmented image with another (:func:`mixed`, weight in [0.55, 0.8] on its own image) lowers them
much further.
"""

from __future__ import annotations

import numpy as np

MIX_RANGE = (0.55, 0.8)
PAD = 4


def crop_flip(images: np.ndarray, rng: np.random.Generator, pad: int = PAD) -> np.ndarray:
    """Random ``pad``-pixel translations (zero padding) and horizontal flips of uint8 NHWC images."""
    n, h, w, _ = images.shape
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    out = np.empty_like(images)
    shifts = rng.integers(0, 2 * pad + 1, size=(n, 2))
    flips = rng.random(n) < 0.5
    for i, ((dy, dx), flip) in enumerate(zip(shifts, flips, strict=True)):
        crop = padded[i, dy:dy + h, dx:dx + w]
        out[i] = crop[:, ::-1] if flip else crop
    return out


def crop_flipped(images: np.ndarray, seed: int) -> np.ndarray:
    """Each image randomly translated and flipped (seeded; uint8 NHWC in and out)."""
    _check_uint8(images)
    return crop_flip(images, np.random.default_rng(seed))


def mixed(images: np.ndarray, seed: int, mix_range: tuple[float, float] = MIX_RANGE) -> np.ndarray:
    """Each image cropped, flipped and blended with another one of the batch (uint8 NHWC in, uint8 out)."""
    _check_uint8(images)
    rng = np.random.default_rng(seed)
    aug = crop_flip(images, rng).astype(np.float32)
    partner = aug[rng.permutation(len(aug))]
    lam = rng.uniform(*mix_range, size=(len(aug), 1, 1, 1)).astype(np.float32)
    return np.clip(np.rint(lam * aug + (1.0 - lam) * partner), 0, 255).astype(np.uint8)


def _check_uint8(images: np.ndarray) -> None:
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images of shape (N, H, W, C), got {images.dtype} {images.shape}")
