"""``--filter lvlm|critic|both``: who decides the verdict, what is recorded, how many backend calls are made, for
one pair (events) and for many (batched), with a stand-in critic and with the shipped one; the CLI default."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from mind_core.distill.pipeline import DistillOptions, iter_pair, run_pairs
from mind_core.lvlm.base import BackendError, LVLMResponse
from mind_core.schema import Product, split_flags

HAT = Product("B001", "Wool Beanie Hat, Grey", "A warm knitted hat.", [], "Clothing")
GLOVES = Product("B002", "Touchscreen Winter Gloves", "Warm gloves.", [], "Clothing")
SCARF = Product("B003", "Plaid Scarf", "A long soft scarf.", [], "Clothing")
RELS = ["usedFor", "isA", "partOf"]


@dataclass
class Backend:
    """Answers intentions, and the filter with "No" (P(yes) 0.2); records each request kind."""

    name: str = "scripted"
    model: str = "v1"
    kinds: list[str] = field(default_factory=list)

    def generate(self, requests, params):
        out = []
        for req in requests:
            if req.want_yes_prob:
                self.kinds.append("filter")
                out.append(LVLMResponse("No, they serve different purposes.", p_yes=0.2))
            else:
                self.kinds.append("intention")
                out.append(LVLMResponse("keeping warm outdoors in winter."))
        return out

    def close(self):
        pass


def by_relation(rows):
    """A stand-in critic: P(keep) 0.9 for usedFor, 0.5 for isA (kept: ties keep), 0.1 otherwise."""
    return [{"usedFor": 0.9, "isA": 0.5}.get(r["relation"], 0.1) for r in rows]


def _opts(mode, critic=by_relation, **kw):
    return DistillOptions(relations=RELS, use_images=False, filter_mode=mode, critic=critic, **kw)


def test_critic_alone_decides_without_filter_calls():
    be = Backend()
    events = list(iter_pair(HAT, GLOVES, be, _opts("critic")))
    res = events[-1].result
    assert be.kinds == ["intention"] * 3 and events[0].total == 3  # no filter call planned or made
    rows = {r["relation"]: r for r in res.rows}
    assert {k: r["verdict"] for k, r in rows.items()} == {"usedFor": "yes", "isA": "yes", "partOf": "no"}
    assert all(r["p_yes"] is None and split_flags(r["flags"]) == ["text_only", "critic_verdict"] for r in rows.values())
    assert rows["partOf"]["reason"].startswith("critic P(keep) 0.10 < 0.50: dropped")
    filters = [e for e in events if e.kind == "filter"]
    assert [e.score for e in filters] == [0.9, 0.5, 0.1]
    assert res.critic == {r["intention_id"]: s for r, s in zip(res.rows, [0.9, 0.5, 0.1])}


def test_both_records_the_lvlm_answer_and_the_critic_decides():
    be = Backend()
    res = list(iter_pair(HAT, GLOVES, be, _opts("both", critic_threshold=0.6)))[-1].result
    assert be.kinds == ["intention"] * 3 + ["filter"] * 3
    rows = {r["relation"]: r for r in res.rows}
    assert {k: r["verdict"] for k, r in rows.items()} == {"usedFor": "yes", "isA": "no", "partOf": "no"}
    for r in rows.values():  # the LVLM's own answer stays: reason and P(yes)
        assert r["reason"].startswith("No, they serve") and r["p_yes"] == 0.2
    assert split_flags(rows["usedFor"]["flags"]) == ["text_only", "critic_verdict", "lvlm_disagrees"]  # no images
    assert split_flags(rows["isA"]["flags"]) == ["text_only", "critic_verdict"]


def test_lvlm_mode_is_mind_and_needs_no_critic():
    be = Backend()
    res = list(iter_pair(HAT, GLOVES, be, _opts("lvlm", critic=None)))[-1].result
    assert {r["verdict"] for r in res.rows} == {"no"} and res.critic == {}
    assert all("critic_verdict" not in r["flags"] for r in res.rows)


def test_batched_run_pairs_in_every_mode():
    pairs = [(HAT, GLOVES), (HAT, SCARF)]
    be = Backend()
    res = run_pairs(pairs, be, _opts("critic"))
    assert be.kinds.count("filter") == 0 and len(res.rows) == 6 and len(res.critic) == 6
    assert [r["verdict"] for r in res.rows] == ["yes", "yes", "no"] * 2
    be = Backend()
    res = run_pairs(pairs, be, _opts("both"))
    assert be.kinds.count("filter") == 6 and [r["verdict"] for r in res.rows] == ["yes", "yes", "no"] * 2
    assert all(r["reason"].startswith("No,") for r in res.rows)


def test_bad_critics_and_options():
    with pytest.raises(ValueError, match="needs a critic"):
        DistillOptions(filter_mode="both")
    with pytest.raises(ValueError, match="filter_mode must be one of"):
        DistillOptions(filter_mode="vote")
    with pytest.raises(ValueError, match="critic_threshold"):
        _opts("critic", critic_threshold=1.5)

    def broken(rows):
        raise RuntimeError("model folder vanished")

    res = list(iter_pair(HAT, GLOVES, Backend(), _opts("critic", critic=broken)))[-1].result
    assert "the critic failed: RuntimeError: model folder vanished" in res.fatal_error
    with pytest.raises(BackendError, match="values outside"):
        run_pairs([(HAT, GLOVES)], Backend(), _opts("critic", critic=lambda rows: [2.0] * len(rows)))


def test_the_shipped_critic_as_the_pipeline_critic():
    from mind_core.config import DEFAULT_CRITIC_DIR
    from mind_core.kb.critic import row_scorer
    from mind_core.scores.critic import load_critic

    scorer = row_scorer(load_critic(DEFAULT_CRITIC_DIR))
    res = list(iter_pair(HAT, GLOVES, Backend(), _opts("both", critic=scorer)))[-1].result
    assert len(res.critic) == 3 and all(0 < p < 1 for p in res.critic.values())
    for r in res.rows:
        assert r["verdict"] == ("yes" if res.critic[r["intention_id"]] >= 0.5 else "no")


def test_cli_defaults_to_both_for_the_offline_backend(monkeypatch):
    import argparse

    from mind_core.cli.distill import _filter_choice

    def args(**kw):
        return argparse.Namespace(**{"filter_mode": None, "critic": None, "backend": "offline", "kb": None, **kw})

    mode, critic = _filter_choice(args())
    assert mode == "both" and critic is not None and critic.preset == "text-linear"
    assert _filter_choice(args(backend="openai")) == ("lvlm", None)
    monkeypatch.setenv("MIND_CRITIC", "none")
    assert _filter_choice(args()) == ("lvlm", None)  # no critic: MIND's rule, said once
    from mind_core.cli.common import UserError

    with pytest.raises(UserError, match="needs a critic"):
        _filter_choice(args(filter_mode="critic"))
