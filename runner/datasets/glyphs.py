"""Deterministic MNIST-like digit images: stroke glyphs drawn under random affine maps, stroke widths and noise.

Each glyph is a set of polylines in a unit box. Its distance field is computed once on a fine grid; every image samples
that field through its own random affine map (rotation, anisotropic scale, shear, shift) and turns distance into ink
with its own stroke width, so strokes stay anti-aliased at any width. Noise and faint distractor strokes make the
task learnable but not trivial.
"""
from __future__ import annotations

import numpy as np

_GRID = 64  # distance-field resolution
_MARGIN = 8  # template pixels around the unit box


def _arc(cx, cy, rx, ry, t0, t1, n=24):
    t = np.radians(np.linspace(t0, t1, n))
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)


def _line(*points):
    return np.array(points, dtype=np.float64)


def _glyphs() -> list[list[list[np.ndarray]]]:
    """glyphs[digit][style] -> polylines in the unit box (x right, y down)."""
    return [
        [[_arc(.5, .5, .3, .42, 0, 360)], [_arc(.5, .5, .26, .42, 0, 360), _line((.68, .2), (.32, .8))]],
        [[_line((.5, .1), (.5, .9))], [_line((.33, .27), (.52, .1), (.52, .9)), _line((.35, .9), (.68, .9))]],
        [[np.concatenate([_arc(.5, .32, .28, .22, -180, 30), _line((.2, .9), (.82, .9))])],
         [np.concatenate([_arc(.5, .34, .3, .24, -160, 20), _line((.25, .9))]), _line((.25, .9), (.8, .86))]],
        [[_arc(.5, .3, .27, .2, -160, 90), _arc(.5, .7, .3, .2, -90, 160)],
         [_line((.22, .1), (.78, .1), (.45, .45)), _arc(.5, .68, .3, .22, -100, 160)]],
        [[_line((.65, .9), (.65, .1), (.18, .65), (.85, .65))],
         [_line((.3, .1), (.2, .55), (.82, .55)), _line((.66, .3), (.66, .9))]],
        [[np.concatenate([_line((.78, .1), (.28, .1), (.25, .45)), _arc(.5, .65, .28, .25, -150, 150)])],
         [_line((.3, .1), (.26, .48)), _line((.3, .1), (.78, .1)), _arc(.5, .67, .28, .23, -140, 160)]],
        [[np.concatenate([_line((.72, .12), (.38, .38), (.26, .62)), _arc(.5, .68, .24, .21, 180, 540)])],
         [_arc(.62, .62, .42, .5, -110, -170), _arc(.5, .7, .24, .19, 0, 360)]],
        [[_line((.2, .1), (.8, .1), (.4, .9))], [_line((.2, .14), (.8, .1), (.45, .9)), _line((.4, .5), (.72, .5))]],
        [[_arc(.5, .3, .22, .19, 0, 360), _arc(.5, .7, .27, .21, 0, 360)],
         [_arc(.5, .28, .24, .18, 0, 360), _arc(.5, .69, .25, .22, 0, 360)]],
        [[_arc(.5, .32, .25, .22, 0, 360), _line((.75, .32), (.6, .9))],
         [_arc(.48, .3, .25, .2, 0, 360), _line((.73, .3), (.72, .9))]],
    ]


def _distance_field(polylines: list[np.ndarray]) -> np.ndarray:
    """Distance (in template pixels) from each grid point to the nearest stroke segment."""
    scale = _GRID - 2 * _MARGIN
    ys, xs = np.mgrid[0:_GRID, 0:_GRID].astype(np.float64)
    p = np.stack([xs.ravel(), ys.ravel()], 1)[:, None, :]
    segs = np.concatenate([np.stack([pl[:-1], pl[1:]], 1) for pl in polylines]) * scale + _MARGIN
    a, b = segs[None, :, 0], segs[None, :, 1]
    ab = b - a
    t = np.clip(((p - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0, 1)
    d = np.linalg.norm(p - (a + t[..., None] * ab), axis=-1).min(1)
    return d.reshape(_GRID, _GRID)


def _bilinear(fields: np.ndarray, index: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Samples fields[index] at (x, y) per image; points outside the grid read as far from any stroke."""
    x0 = np.floor(x).astype(np.int64)
    y0 = np.floor(y).astype(np.int64)
    fx, fy = x - x0, y - y0
    flat = fields.reshape(-1)
    base = index[:, None] * _GRID * _GRID

    def at(yy, xx):
        inside = (xx >= 0) & (xx < _GRID) & (yy >= 0) & (yy < _GRID)
        v = flat[base + np.clip(yy, 0, _GRID - 1) * _GRID + np.clip(xx, 0, _GRID - 1)]
        return np.where(inside, v, 1e3)

    return ((1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x0 + 1))
            + fy * ((1 - fx) * at(y0 + 1, x0) + fx * at(y0 + 1, x0 + 1)))


def render(labels: np.ndarray, rng: np.random.Generator, size: int = 28) -> np.ndarray:
    """Draws one uint8 [size, size] image per label."""
    glyphs = _glyphs()
    fields = np.stack([_distance_field(style) for digit in glyphs for style in digit]).astype(np.float32)
    n = len(labels)
    index = labels.astype(np.int64) * 2 + rng.integers(0, 2, n)
    angle = np.radians(rng.uniform(-15, 15, n))
    sx, sy = rng.uniform(0.8, 1.15, n), rng.uniform(0.8, 1.15, n)
    shear = rng.uniform(-0.3, 0.3, n)
    tx, ty = rng.uniform(-2.5, 2.5, n), rng.uniform(-2.5, 2.5, n)
    width = rng.uniform(0.9, 1.9, n)  # stroke half-width in output pixels
    box = 20.0  # output pixels spanned by the unit box at scale 1

    # Inverse map: output pixel -> unit-box coordinates, as M^-1 (u - c - t) / box + 0.5.
    cos, sin = np.cos(angle), np.sin(angle)
    m = np.empty((n, 2, 2))
    m[:, 0, 0], m[:, 0, 1] = cos * sx, (-sin + cos * shear) * sy
    m[:, 1, 0], m[:, 1, 1] = sin * sx, (cos + sin * shear) * sy
    inv = np.linalg.inv(m).astype(np.float32)
    tx, ty, width = tx.astype(np.float32), ty.astype(np.float32), width.astype(np.float32)
    v, u = np.mgrid[0:size, 0:size].astype(np.float32)
    du = u.ravel()[None] - (size - 1) / 2 - tx[:, None]
    dv = v.ravel()[None] - (size - 1) / 2 - ty[:, None]
    gx = (inv[:, 0, 0, None] * du + inv[:, 0, 1, None] * dv) / box + 0.5
    gy = (inv[:, 1, 0, None] * du + inv[:, 1, 1, None] * dv) / box + 0.5
    scale = _GRID - 2 * _MARGIN
    dist = _bilinear(fields, index, gx * scale + _MARGIN, gy * scale + _MARGIN) * box / scale
    ink = np.clip(width[:, None] - dist + 0.5, 0, 1) * rng.uniform(0.75, 1.0, (n, 1))

    # Distractors: a faint straight stroke in about a third of the images.
    has = np.flatnonzero(rng.random(n) < 0.35)
    p0 = rng.uniform(0, size, (len(has), 1, 2)).astype(np.float32)
    ab = rng.uniform(-8, 8, (len(has), 1, 2)).astype(np.float32)
    pts = np.stack([u.ravel(), v.ravel()], 1)[None]
    t = np.clip(((pts - p0) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-9), 0, 1)
    dd = np.sqrt(((pts - (p0 + t[..., None] * ab)) ** 2).sum(-1))
    faint = rng.uniform(0.3, 0.6, (len(has), 1)).astype(np.float32)
    ink[has] = np.maximum(ink[has], faint * np.clip(1.2 - dd, 0, 1))

    ink += rng.standard_normal(ink.shape, dtype=np.float32) * 0.08
    return (np.clip(ink, 0, 1) * 255 + 0.5).astype(np.uint8).reshape(n, size, size)


def generate(num: int, seed: int, chunk: int = 10000) -> tuple[np.ndarray, np.ndarray]:
    """num images and labels, a pure function of (num, seed)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, num).astype(np.uint8)
    images = np.concatenate([render(labels[i:i + chunk], rng) for i in range(0, num, chunk)]) if num else \
        np.zeros((0, 28, 28), np.uint8)
    return images, labels
