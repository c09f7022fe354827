"""mind_core.distill.parsing on hand-made answers and on every real answer of the vendored MIND sample."""

from __future__ import annotations

import json

import pytest

from mind_core.config import SAMPLE_DATA_DIR
from mind_core.distill.parsing import join_prefill, parse_filter, parse_intention, strip_artefacts
from mind_core.distill.prompts import MAX_INTENTION_WORDS, intention_opening

SAMPLE = SAMPLE_DATA_DIR


# --- intentions ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "The potential co-buy intention could be they are both used for hiking in cold weather.",
        "the potential co-buy intention could be  they are both used for\nhiking in cold weather.",
        "The potential co-buy intention for these two products could be that they are both used for hiking.",
        "The potential co-buy intention for people purchasing the U.S. Polo Assn. watch could be a gift.",
        "They are both used for hiking in cold weather.",
        "The potential co-buy intention for these two products is that they are both dancewear items.",
    ],
)
def test_accepted_openings(text):
    clean, flags = parse_intention(text, "usedFor")
    assert flags == []
    assert clean == " ".join(text.split())


def test_no_phrase_is_kept_and_flagged():
    clean, flags = parse_intention("Because the shopper wants to stay warm on long hikes.", "usedFor")
    assert clean == "Because the shopper wants to stay warm on long hikes."
    assert flags == ["no_phrase"]
    # a different relation's phrase is not this relation's phrase
    assert parse_intention("They both are a type of hat.", "usedFor")[1] == ["no_phrase"]


def test_over_length_kept_whole():
    body = " ".join(["word"] * (MAX_INTENTION_WORDS + 5))
    text = f"{intention_opening('isA')} {body}"
    clean, flags = parse_intention(text, "isA")
    assert flags == ["over_length"]
    assert clean == text
    ok, ok_flags = parse_intention(" ".join(text.split()[:MAX_INTENTION_WORDS]), "isA")
    assert ok_flags == []


def test_open_relation_has_only_the_lead():
    assert parse_intention("The potential co-buy intention could be a birthday present.", "open")[1] == []
    assert parse_intention("A birthday present.", "open")[1] == ["no_phrase"]


def test_empty_answer_is_flagged():
    assert "empty" in parse_intention(intention_opening("usedFor"), "usedFor")[1]
    assert "empty" in parse_intention("   ", "usedFor")[1]
    assert "empty" in parse_intention("</s>", "usedFor")[1]


def test_chat_artefacts_stripped():
    raw = (
        "ASSISTANT: The potential co-buy intention could be they are both used for camping.</s>"
        "<|im_end|>\nUSER: and now?"
    )
    clean, flags = parse_intention(raw, "usedFor")
    assert clean == "The potential co-buy intention could be they are both used for camping."
    assert flags == []
    assert strip_artefacts('"Yes, I would."<|eot_id|>') == "Yes, I would."
    assert strip_artefacts("[INST] [/INST] **No**, never.<end_of_turn>") == "**No**, never."


def test_join_prefill():
    opening = intention_opening("usedFor")
    assert join_prefill(opening, "camping trips.") == f"{opening} camping trips."
    assert join_prefill(opening, ", for example, camping.") == f"{opening}, for example, camping."
    # a backend that could not prefill: the model restated the opening / the lead / the phrase
    assert join_prefill(opening, f"{opening} camping.") == f"{opening} camping."
    lead = "The potential co-buy intention for these two products could be that they hike."
    assert join_prefill(opening, lead) == lead
    assert (
        join_prefill(opening, "they are both used for camping.")
        == "The potential co-buy intention could be they are both used for camping."
    )
    assert join_prefill(opening, "") == opening
    assert join_prefill("", "free text") == "free text"


# --- filter ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, verdict",
    [
        ("Yes, the intention would encourage me to buy both.", "yes"),
        ("No.\n\nWhile both are hats, I would buy one.", "no"),
        ("Yes", "yes"),
        ("No", "no"),
        ("  yes.", "yes"),
        ("NO - they are unrelated", "no"),
        ("**Yes**, because ...", "yes"),
        ("Answer: No, not together.", "no"),
        ("Yes.</s>", "yes"),
    ],
)
def test_filter_verdicts(text, verdict):
    v, reason = parse_filter(text)
    assert v == verdict
    assert reason and reason.lower().lstrip("*").startswith(verdict)


@pytest.mark.parametrize(
    "text", ["Perhaps. It depends.", "Yesterday I bought one.", "None of them.", "Not really.", "", "I think yes."]
)
def test_filter_unparsed_keeps_raw_text(text):
    v, reason = parse_filter(text)
    assert v is None
    assert reason == text.strip()


# --- the real MIND sample --------------------------------------------------------------------------------------


def test_every_real_sample_answer_parses():
    rows = [json.loads(line) for line in (SAMPLE / "intentions.jsonl").open(encoding="utf-8")]
    assert len(rows) > 3000
    flagged = 0
    for r in rows:
        clean, flags = parse_intention(r["intention"], r["relation"])
        assert clean.strip() and "empty" not in flags
        flagged += "no_phrase" in flags
        verdict, reason = parse_filter(r["filter_reason"])
        assert verdict == r["filter_verdict"], r["filter_reason"][:80]
        assert reason == r["filter_reason"].strip()
    assert flagged == 0  # every real intention starts with one of the accepted openings
