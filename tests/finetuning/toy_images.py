"""A learnable toy image catalog generated in the test: coloured shapes on a plain background, captioned
"red circle", "blue square", ...; and a clickstream whose users click the images of the shape they asked for.

Images of the same caption differ in position, size and background shade, so a model has to learn the colour and
the shape, not one picture. Training clicks use images ``0..train_per_kind-1`` of each kind; the held-out images are
the rest, so Recall@5 on them measures what was learnt about the captions, not which pictures were clicked.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

COLOURS = {"red": (220, 30, 30), "green": (30, 170, 40), "blue": (30, 60, 220), "yellow": (230, 210, 20)}
SHAPES = ("circle", "square", "triangle")
CAPTIONS = [f"{colour} {shape}" for colour in COLOURS for shape in SHAPES]
VOCABULARY = [*COLOURS, *SHAPES]


def draw(caption: str, variant: int, size: int = 32) -> Image.Image:
    """One picture of ``caption``; ``variant`` seeds its position, size and background."""
    colour_name, shape = caption.split()
    rng = random.Random(f"{caption}-{variant}")
    shade = rng.randint(200, 255)
    image = Image.new("RGB", (size, size), (shade, shade, shade))
    canvas = ImageDraw.Draw(image)
    extent = rng.randint(size // 2, size - 6)
    left = rng.randint(1, size - extent - 1)
    top = rng.randint(1, size - extent - 1)
    box = (left, top, left + extent, top + extent)
    colour = COLOURS[colour_name]
    if shape == "circle":
        canvas.ellipse(box, fill=colour)
    elif shape == "square":
        canvas.rectangle(box, fill=colour)
    else:
        canvas.polygon([(left + extent / 2, top), (left, top + extent), (left + extent, top + extent)], fill=colour)
    return image


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def item_id(caption: str, variant: int) -> str:
    return f"{caption.replace(' ', '-')}-{variant}"


def catalog(per_kind: int) -> dict[str, Image.Image]:
    """Item id → image, ``per_kind`` images of each caption."""
    return {item_id(caption, variant): draw(caption, variant) for caption in CAPTIONS for variant in range(per_kind)}


def caption_of(image_id: str) -> str:
    return " ".join(image_id.split("-")[:2])


@dataclass(frozen=True)
class ImageSession:
    session_id: str
    query: str
    results: list[str]
    clicks: list[str]


def click_sessions(
    train_per_kind: int, sessions_per_caption: int = 6, shown: int = 8, seed: int = 0
) -> list[ImageSession]:
    """Sessions over the training images: each shows ``shown`` images, two or three of the caption's kind among
    others, and the user clicks the ones of the kind asked for."""
    rng = random.Random(seed)
    pool = [item_id(caption, variant) for caption in CAPTIONS for variant in range(train_per_kind)]
    sessions = []
    for caption in CAPTIONS:
        own = [item_id(caption, variant) for variant in range(train_per_kind)]
        others = [each for each in pool if caption_of(each) != caption]
        for number in range(sessions_per_caption):
            relevant = rng.sample(own, k=min(len(own), rng.choice((2, 3))))
            results = relevant + rng.sample(others, k=shown - len(relevant))
            rng.shuffle(results)
            sessions.append(
                ImageSession(
                    f"{caption.replace(' ', '-')}-{number}",
                    caption,
                    results,
                    [each for each in results if each in relevant],
                )
            )
    return sessions


def recall_at_5(model, held_out: dict[str, Image.Image]) -> float:
    """Mean over captions of the share of the caption's held-out images found in the top 5 of the caption's search
    over all held-out images (at most 5 relevant per caption, so 1.0 is reachable)."""
    ids = list(held_out)
    items = model.encode_items([held_out[each] for each in ids])
    queries = model.encode_queries(CAPTIONS)
    scores = queries @ items.T
    recalls = []
    for row, caption in enumerate(CAPTIONS):
        relevant = {each for each in ids if caption_of(each) == caption}
        top = {ids[index] for index in np.argsort(-scores[row])[:5]}
        recalls.append(len(top & relevant) / min(5, len(relevant)))
    return float(np.mean(recalls))
