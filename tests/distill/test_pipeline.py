"""mind_core.distill.pipeline: the three stages for one pair (events, cancel, images) and for many (batched);
end to end through the tiny LLaVA model (real transformers path) and the fake OpenAI server."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest
from PIL import Image

from mind_core.distill.pipeline import DistillOptions, iter_pair, run_pair, run_pairs
from mind_core.distill.prompts import intention_opening
from mind_core.lvlm.base import BackendError, GenParams, LVLMRequest, LVLMResponse, source_label
from mind_core.schema import INTENTION_COLUMNS, Product, intention_id, pair_id

HAT = Product("B001", "Wool Beanie Hat, Grey", "A warm knitted hat.", [], "Clothing")
GLOVES = Product("B002", "Touchscreen Winter Gloves", "", [], "Clothing")
SCARF = Product("B003", "Plaid Scarf", "A long soft scarf.", [], "Clothing")
NO_NET = DistillOptions(relations=["usedFor", "isA"], use_images=False)


@dataclass
class ScriptedBackend:
    """A Backend double: answers by stage, records every generate() call; can fail single requests or all."""

    name: str = "scripted"
    model: str = "v1"
    text_only: bool = False
    filter_text: str = "Yes, I would buy both for winter."
    fail_relation: str | None = None  # this relation's intention request fails
    raise_on_call: int | None = None  # the n-th generate() call (1-based) raises BackendError
    calls: list[list[LVLMRequest]] = field(default_factory=list)

    def generate(self, requests, params):
        self.calls.append(list(requests))
        if self.raise_on_call == len(self.calls):
            raise BackendError("server went away; start it again and re-run")
        out = []
        for req in requests:
            if req.want_yes_prob:
                out.append(LVLMResponse(self.filter_text, p_yes=0.75))
            elif req.prefill:
                if self.fail_relation and req.prefill == intention_opening(self.fail_relation):
                    out.append(LVLMResponse("", error="HTTP 400: context too long"))
                else:
                    out.append(LVLMResponse("keeping warm outdoors in winter."))
            else:
                out.append(LVLMResponse("Stretchy gloves with conductive fingertips for phones."))
        return out

    def close(self):
        pass


def _kinds(events):
    return [e.kind for e in events]


def test_single_pair_events_rows_and_counts():
    be = ScriptedBackend()
    events = list(iter_pair(HAT, GLOVES, be, NO_NET))
    assert _kinds(events) == [
        "start",
        "image",
        "image",
        "describe",
        "stacked",
        "intention",
        "intention",
        "filter",
        "filter",
        "done",
    ]
    assert events[0].total == 1 + 2 * 2
    assert [e.done for e in events if e.kind in ("describe", "intention", "filter")] == [1, 2, 3, 4, 5]
    assert events[3].asin == "B002" and events[3].text.startswith("Stretchy gloves")
    res = events[-1].result
    assert res.descriptions == {"B002": events[3].text} and res.b.description == events[3].text
    assert GLOVES.description == ""  # the caller's product is not mutated
    assert [r["relation"] for r in res.rows] == ["usedFor", "isA"]
    src = source_label(be)
    for r in res.rows:
        assert tuple(r) == INTENTION_COLUMNS
        assert r["intention_id"] == intention_id("B001", "B002", r["relation"], src)
        assert r["pair_id"] == pair_id("B001", "B002") and r["source"] == "distilled:scripted:v1"
        assert r["intention"] == f"{intention_opening(r['relation'])} keeping warm outdoors in winter."
        assert r["verdict"] == "yes" and r["reason"].startswith("Yes, I would") and r["p_yes"] == 0.75
        assert r["category"] == "Clothing" and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["created_at"])
        assert r["flags"] == "text_only"  # no image for either product
    # the intention event carries the row before the filter, the filter event after
    assert events[5].row["verdict"] is None and events[7].row["verdict"] == "yes"
    assert all(len(c) == 1 for c in be.calls)  # live mode: one request per call


def test_stage_one_only_when_missing_or_always():
    be = ScriptedBackend()
    run_pair(HAT, SCARF, be, NO_NET)
    assert not any(not r.prefill and not r.want_yes_prob for c in be.calls for r in c)
    be2 = ScriptedBackend()
    res = run_pair(HAT, SCARF, be2, DistillOptions(relations=["usedFor"], use_images=False, describe="always"))
    assert set(res.descriptions) == {"B001", "B003"}


def test_cancel_keeps_finished_work():
    be = ScriptedBackend()
    seen = []

    def stop():
        return sum(1 for k in seen if k == "intention") >= 1

    events = []
    for e in iter_pair(HAT, SCARF, be, NO_NET, should_cancel=stop):
        seen.append(e.kind)
        events.append(e)
    assert _kinds(events)[-2:] == ["cancelled", "done"]
    res = events[-1].result
    assert res.cancelled and len(be.calls) == 1
    assert [r["relation"] for r in res.rows] == ["usedFor"]
    assert "not_filtered" in res.rows[0]["flags"] and res.rows[0]["verdict"] is None


def test_images_stacked_and_flags():
    a_img = Image.new("RGB", (80, 40), (255, 0, 0))
    b_img = Image.new("RGB", (40, 40), (0, 0, 255))
    be = ScriptedBackend()
    events = list(
        iter_pair(HAT, SCARF, be, DistillOptions(relations=["usedFor"]), images={"B001": a_img, "B003": b_img})
    )
    stacked = next(e.image for e in events if e.kind == "stacked")
    assert stacked.size == (80, 40 + 20 + 40)
    assert all(req.images == [stacked] for c in be.calls for req in c)  # stages 2 and 3 see the stacked image
    assert events[-1].result.rows[0]["flags"] == ""
    # one image missing: a placeholder takes its half, the row says so
    res = run_pair(
        HAT, SCARF, ScriptedBackend(), DistillOptions(relations=["usedFor"]), images={"B001": a_img, "B003": None}
    )
    assert res.image_failures == {"B003": "no image given"} and res.stacked is not None
    assert res.rows[0]["flags"] == "one_image"
    # a text-only backend flags every row even with images
    res = run_pair(
        HAT,
        SCARF,
        ScriptedBackend(text_only=True),
        DistillOptions(relations=["usedFor"]),
        images={"B001": a_img, "B003": b_img},
    )
    assert res.rows[0]["flags"] == "text_only"


def test_require_images_stops_before_any_call():
    be = ScriptedBackend()
    res = run_pair(
        HAT,
        SCARF,
        be,
        DistillOptions(relations=["usedFor"], require_images=True),
        images={"B001": Image.new("RGB", (8, 8)), "B003": None},
    )
    assert be.calls == [] and res.rows == [] and "B003" in res.fatal_error
    res = run_pair(HAT, SCARF, be, DistillOptions(relations=["usedFor"], require_images=True, use_images=False))
    assert be.calls == [] and "B001" in res.fatal_error and "B003" in res.fatal_error


def test_request_errors_unparsed_filter_and_fatal_backend_error():
    be = ScriptedBackend(fail_relation="isA", filter_text="Perhaps, it depends.")
    events = list(iter_pair(HAT, SCARF, be, NO_NET))
    errs = [e for e in events if e.kind == "error"]
    assert [(e.stage, e.relation) for e in errs] == [("intention", "isA")] and "context" in errs[0].text
    res = events[-1].result
    assert [r["relation"] for r in res.rows] == ["usedFor"]
    assert res.rows[0]["verdict"] is None and res.rows[0]["reason"] == "Perhaps, it depends."
    assert "filter_unparsed" in res.rows[0]["flags"].split(",")
    # the backend dies during the filter stage: the intentions made so far are kept
    res = run_pair(HAT, SCARF, ScriptedBackend(raise_on_call=3), NO_NET)
    assert res.fatal_error and "went away" in res.fatal_error
    assert len(res.rows) == 2 and all("not_filtered" in r["flags"] for r in res.rows)


def test_same_product_twice_is_rejected():
    with pytest.raises(ValueError, match="two different products"):
        run_pair(HAT, HAT, ScriptedBackend(), NO_NET)


def test_many_pairs_one_generate_call_per_stage():
    be = ScriptedBackend()
    pairs = [(HAT, GLOVES), (HAT, SCARF), (SCARF, GLOVES)]
    saved = {}
    res = run_pairs(pairs, be, NO_NET, done={(pair_id("B001", "B003"), "usedFor")}, on_descriptions=saved.update)
    assert [len(c) for c in be.calls] == [1, 5, 5]  # describe GLOVES once; 3x2-1 intentions; their filters
    assert saved == res.descriptions == {"B002": "Stretchy gloves with conductive fingertips for phones."}
    keys = [(r["pair_id"], r["relation"]) for r in res.rows]
    assert len(keys) == 5 == len(set(keys)) and (pair_id("B001", "B003"), "usedFor") not in keys
    # the description written in stage 1 reaches both pairs that contain GLOVES
    gl_prompts = [r.prompt for r in be.calls[1] if "Touchscreen" in r.prompt]
    assert len(gl_prompts) == 4 and all("conductive fingertips" in p for p in gl_prompts)


def test_many_pairs_errors_are_collected_not_written():
    be = ScriptedBackend(fail_relation="isA")
    res = run_pairs([(HAT, SCARF), (SCARF, GLOVES)], be, NO_NET)
    assert sorted(r["relation"] for r in res.rows) == ["usedFor", "usedFor"]
    assert sorted((e["stage"], e["relation"]) for e in res.errors) == [("intention", "isA")] * 2
    with pytest.raises(BackendError):
        run_pairs([(HAT, SCARF)], ScriptedBackend(raise_on_call=1), NO_NET)


# --- end to end through the real backends' code paths ---------------------------------------------------------


def test_each_stage_through_the_tiny_llava(tiny_llava_dir):
    from mind_core.lvlm import make_backend

    be = make_backend("transformers", model=str(tiny_llava_dir), batch_size=4)
    try:
        opts = DistillOptions(relations=["usedFor", "isA"], params=GenParams(do_sample=False, max_new_tokens=6))
        imgs = {"B001": Image.new("RGB", (64, 48), (200, 30, 30)), "B002": Image.new("RGB", (48, 64), (30, 30, 200))}
        events = list(iter_pair(HAT, GLOVES, be, opts, images=imgs, calls_per_generate=2))
        kinds = _kinds(events)
        assert kinds.count("describe") == 1 and kinds.count("intention") == 2 and kinds.count("filter") == 2
        res = events[-1].result
        assert res.fatal_error is None and not res.errors
        assert res.descriptions["B002"].strip()
        for r in res.rows:
            assert r["intention"].startswith(intention_opening(r["relation"]))  # prefill applied by the backend
            assert r["p_yes"] is not None and 0.0 <= r["p_yes"] <= 1.0  # from the first-token logits
            assert r["source"] == f"distilled:transformers:{be.model}"
        # many pairs: the same model, batched per stage
        chunk = run_pairs(
            [(HAT, GLOVES), (HAT, SCARF)],
            be,
            DistillOptions(
                relations=["usedFor"], use_images=False, params=GenParams(do_sample=False, max_new_tokens=4)
            ),
        )
        assert len(chunk.rows) == 2 and all("text_only" in r["flags"].split(",") for r in chunk.rows)
    finally:
        be.close()


def test_single_pair_through_the_fake_openai_server(fake_openai):
    from mind_core.lvlm import make_backend

    be = make_backend("openai", endpoint=fake_openai.url, concurrency=4)
    try:
        img = Image.new("RGB", (32, 32), (0, 160, 0))
        res = run_pair(
            HAT,
            GLOVES,
            be,
            DistillOptions(relations=["usedFor", "isA", "cause"]),
            images={"B001": img, "B002": img},
            calls_per_generate=3,
        )
    finally:
        be.close()
    assert len(res.rows) == 3 and not res.errors
    for r in res.rows:
        assert r["intention"].startswith(intention_opening(r["relation"])) and r["flags"] == ""
        assert r["verdict"] in ("yes", "no") and r["p_yes"] == pytest.approx(
            0.8 / 0.95 if r["verdict"] == "yes" else 0.15 / 0.95
        )
    bodies = [q["body"] for q in fake_openai.requests]
    assert len(bodies) == 1 + 3 + 3
    assert all(
        any(
            p.get("type") == "image_url"
            for m in b["messages"]
            if isinstance(m.get("content"), list)
            for p in m["content"]
        )
        for b in bodies
    )
