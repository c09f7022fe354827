"""Every prompt MIND Explorer sends to an LVLM, in one module.

Wording is our own and follows the method (MIND, arXiv 2406.10701):

1. describe: the first image of one product + its title -> features, design, apparent quality, what sets it
   apart, likely uses and benefits for a consumer;
2. intend: ONE image (A above B on a black canvas, 20 px gap) + both titles and descriptions -> the human-centric
   reason someone buys both, within 120 words, beginning "the potential co-buy intention could be <phrase>";
3. filter: the same inputs + the relation and the intention -> answering as a consumer eager to buy A or B,
   critically: would this intention make you buy both at the same time? "Yes, ..." or "No, ..." + reason.
"""

from __future__ import annotations

from PIL import Image

from mind_core.lvlm.base import LVLMRequest
from mind_core.schema import Product, relation_phrase

MAX_INTENTION_WORDS = 120
INTENTION_LEAD = "The potential co-buy intention could be"

SYSTEM_PROMPT = (
    "You are a careful assistant that helps understand why online shoppers buy products together. "
    "Ground every statement in what the images and the product details show."
)


def intention_opening(relation: str) -> str:
    """The words an intention for ``relation`` must begin with, e.g. 'The potential co-buy intention could be
    they are both used for'. ``open`` has an empty phrase, so its opening is the bare lead."""
    phrase = relation_phrase(relation)
    return f"{INTENTION_LEAD} {phrase}".rstrip() if phrase else INTENTION_LEAD


def _product_block(label: str, product: Product, position: str | None) -> str:
    where = f" (shown in the {position} part of the image)" if position else ""
    lines = [f"Product {label}{where}: {product.title.strip() or '(no title)'}"]
    if product.description.strip():
        lines.append(f"Description of product {label}: {product.description.strip()}")
    return "\n".join(lines)


def describe_request(product: Product, image: Image.Image | None) -> LVLMRequest:
    """Stage 1: describe one product from its first image and its title."""
    seen = "the image of this product and its title" if image is not None else "this product's title"
    prompt = (
        f"Product title: {product.title.strip()}\n\n"
        f"Based on {seen}, describe the product: its main features, its design and apparent quality, "
        "what sets it apart from similar items, and the likely uses and benefits it offers a consumer. "
        "Write one or two short paragraphs of plain text."
    )
    return LVLMRequest(prompt=prompt, images=[image] if image is not None else [], system=SYSTEM_PROMPT)


def intention_request(a: Product, b: Product, relation: str, stacked: Image.Image | None) -> LVLMRequest:
    """Stage 2: one co-buy intention for (A, B) and one relation; the answer is forced to begin with the
    relation's opening (sent as the assistant-turn prefix where the backend supports it)."""
    opening = intention_opening(relation)
    image_note = "The image shows product A at the top and product B at the bottom.\n" if stacked is not None else ""
    prompt = (
        f"{image_note}{_product_block('A', a, 'upper' if stacked is not None else None)}\n"
        f"{_product_block('B', b, 'lower' if stacked is not None else None)}\n\n"
        "A customer bought product A and product B together. What is the most likely human-centric reason, "
        "the customer's intention, for buying both? "
        f'Answer within {MAX_INTENTION_WORDS} words, and begin your answer with "{opening}".'
    )
    return LVLMRequest(
        prompt=prompt, images=[stacked] if stacked is not None else [], system=SYSTEM_PROMPT, prefill=opening
    )


def filter_request(a: Product, b: Product, relation: str, intention: str, stacked: Image.Image | None) -> LVLMRequest:
    """Stage 3 (role-aware filter): the model answers as the shopper; P(yes) is read off the first token."""
    phrase = relation_phrase(relation) or "(open relation)"
    image_note = "The image shows product A at the top and product B at the bottom.\n" if stacked is not None else ""
    prompt = (
        f"{image_note}{_product_block('A', a, 'upper' if stacked is not None else None)}\n"
        f"{_product_block('B', b, 'lower' if stacked is not None else None)}\n\n"
        f"Relation type: {phrase}\n"
        f"Suggested co-buy intention: {intention.strip()}\n\n"
        "Imagine you are a consumer who is eager to buy product A or product B. Would this intention make you "
        "buy both products at the same time? Be critical: say yes only if the intention is specific, plausible "
        'and really explains buying both together. Answer "Yes" or "No" first, then give your reason in one '
        "or two sentences."
    )
    return LVLMRequest(
        prompt=prompt, images=[stacked] if stacked is not None else [], system=SYSTEM_PROMPT, want_yes_prob=True
    )
