"""Test-like images from training images: random crops and flips, mixed pairwise.

Training images are classified with near-100 % accuracy and large margins, so they hide the low-margin
decisions that approximation errors flip on unseen images. Blending each augmented image with another
(weight ``mix`` in [0.55, 0.8] on its own image) lowers the plaintext model's margins towards those of
unseen data while every image keeps its label.
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


def mixed(images: np.ndarray, seed: int, mix_range: tuple[float, float] = MIX_RANGE) -> np.ndarray:
    """Each image cropped, flipped and blended with another one of the batch (uint8 NHWC in, uint8 out)."""
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images of shape (N, H, W, C), got {images.dtype} {images.shape}")
    rng = np.random.default_rng(seed)
    aug = crop_flip(images, rng).astype(np.float32)
    partner = aug[rng.permutation(len(aug))]
    lam = rng.uniform(*mix_range, size=(len(aug), 1, 1, 1)).astype(np.float32)
    return np.clip(np.rint(lam * aug + (1.0 - lam) * partner), 0, 255).astype(np.uint8)
