"""The embedded offline CIFAR-format dataset: ten classes of shapes and textures, generated deterministically.

Classes: disk, ring, square, triangle, plus, stripes (horizontal), stripes (vertical), checkerboard, diamond,
X. Every image draws its own position, size, stroke, foreground and background colours, a background gradient,
a distractor blob and noise; colour says nothing about the class. All classes are left-right symmetric, so the
tutorial's random flips keep labels valid. Written as CIFAR-10 binary batches (data_batch_1..5.bin, test_batch.bin).
"""
from __future__ import annotations

import numpy as np

from runner.config.datasets import ShapesConfig
from runner.datasets import DATASETS
from runner.datasets.base import Generated, generated_dir
from runner.datasets.cifar_format import HEIGHT, TEST_FILES, TRAIN_FILES, WIDTH, CifarBinary, write_records

CLASSES = ("disk", "ring", "square", "triangle", "plus", "hstripes", "vstripes", "checker", "diamond", "x")


def _masks(label: int, dx: np.ndarray, dy: np.ndarray, r: np.ndarray, t: np.ndarray, period: np.ndarray):
    """Ink coverage in [0, 1] for images of one class; dx, dy are pixel offsets from each shape's centre."""
    ax, ay = np.abs(dx), np.abs(dy)
    soft = lambda d: np.clip(0.5 - d, 0.0, 1.0)  # noqa: E731  signed distance -> anti-aliased coverage
    dist = np.hypot(dx, dy)
    square = soft(np.maximum(ax, ay) - r)
    if label == 0:
        return soft(dist - r)
    if label == 1:
        return soft(np.abs(dist - r) - t)
    if label == 2:
        return square
    if label == 3:  # apex up, base at dy = r
        return soft(np.maximum(dy - r, (2 * ax - (dy + r)) / np.sqrt(5.0)))
    if label == 4:
        return soft(np.maximum(np.minimum(ax, ay) - t, np.maximum(ax, ay) - r))
    if label == 5:
        return square * (np.floor((dy + r) / period) % 2 == 0)
    if label == 6:
        return square * (np.floor((dx + r) / period) % 2 == 0)
    if label == 7:
        return square * ((np.floor((dx + r) / period) + np.floor((dy + r) / period)) % 2 == 0)
    if label == 8:
        return soft((ax + ay) / np.sqrt(2.0) - r / np.sqrt(2.0) * 1.2)
    return soft(np.maximum(np.abs(ax - ay) / np.sqrt(2.0) - t, np.maximum(ax, ay) - r))


def render(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 [N, 32, 32, 3] images for the given labels."""
    n = len(labels)
    v, u = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    cx, cy = rng.uniform(11, 21, (2, n, 1, 1)).astype(np.float32)
    r = rng.uniform(5, 9.5, (n, 1, 1)).astype(np.float32)
    t = rng.uniform(1.0, 2.2, (n, 1, 1)).astype(np.float32)
    period = rng.integers(2, 4, (n, 1, 1)).astype(np.float32)
    ink = np.empty((n, HEIGHT, WIDTH), np.float32)
    dx, dy = u - cx, v - cy
    for label in range(10):
        idx = np.flatnonzero(labels == label)
        ink[idx] = _masks(label, dx[idx], dy[idx], r[idx], t[idx], period[idx])

    background = rng.uniform(0, 255, (n, 1, 1, 3)).astype(np.float32)
    gradient = rng.uniform(-50, 50, (n, 1, 1, 3)).astype(np.float32) * ((u + v) / 62.0 - 0.5)[None, :, :, None]
    # Foreground: a colour at least 80 (of 255) away from the background in some channel.
    foreground = rng.uniform(0, 255, (n, 1, 1, 3)).astype(np.float32)
    far = np.abs(foreground - background).max(-1, keepdims=True) >= 80
    foreground = np.where(far, foreground, 255 - background)
    image = background + gradient + ink[..., None] * (foreground - background)
    # A distractor: a blurry blob of a third colour somewhere, in about half of the images.
    bx, by = rng.uniform(0, 32, (2, n, 1, 1)).astype(np.float32)
    blob = np.exp(-((u - bx) ** 2 + (v - by) ** 2) / (2 * rng.uniform(1, 3, (n, 1, 1)) ** 2).astype(np.float32))
    blob *= (rng.random((n, 1, 1)) < 0.5) * rng.uniform(0.3, 0.8, (n, 1, 1))
    image += blob[..., None] * (rng.uniform(0, 255, (n, 1, 1, 3)).astype(np.float32) - image)
    image += rng.standard_normal(image.shape, dtype=np.float32) * 12.0
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


def generate(num: int, seed: int, chunk: int = 10000) -> tuple[np.ndarray, np.ndarray]:
    """num images and labels, a pure function of (num, seed)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, num).astype(np.int32)
    images = np.concatenate([render(labels[i:i + chunk], rng) for i in range(0, num, chunk)])
    return images, labels


@DATASETS.register("shapes")
class Shapes(Generated, CifarBinary):
    class_names = list(CLASSES)

    def __init__(self, config: ShapesConfig):
        self.spec = {"num_train": config.num_train, "num_test": config.num_test,
                     "generator_seed": config.generator_seed}
        super().__init__(config, generated_dir(config.data_dir, self.spec))

    def generate(self) -> None:
        self.batches_dir.mkdir(parents=True, exist_ok=True)
        seed = self.spec["generator_seed"]
        images, labels = generate(self.spec["num_train"], seed)
        for name, part in zip(TRAIN_FILES, np.array_split(np.arange(len(labels)), len(TRAIN_FILES))):
            write_records(self.batches_dir / name, images[part], labels[part])
        images, labels = generate(self.spec["num_test"], seed + 1)
        write_records(self.batches_dir / TEST_FILES[0], images, labels)
