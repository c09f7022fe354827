#!/usr/bin/env python
"""Wall time of one live "Try a product" run on this machine: ``mind_core.distill.live.LiveRun`` (the page's code path:
background thread, the three stages, one call at a time) with the offline text-only fallback, two uploaded
products given as generated images with text on them (so OCR has something to read) and titles only (stage 1
writes both descriptions).

Prints a timeline of events, the outputs, and: wall seconds (model load included when it is the first load in the
process), CPU seconds of the process (all threads; on a quiet 2-core machine the wall time is roughly CPU / 1.5–2),
and the load averages before and after (the machine is shared: compare runs only at similar load).

    .venv/bin/python benchmarks/try_product_bench.py [--relations usedFor,capableOf,isA]
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from mind_core.distill import live
from mind_core.schema import parse_relations

REPO = Path(__file__).resolve().parents[1]


def product_image(label: str, colour: tuple[int, int, int]) -> Image.Image:
    im = Image.new("RGB", (480, 360), "white")
    d = ImageDraw.Draw(im)
    d.rounded_rectangle([90, 50, 390, 270], radius=30, fill=colour)
    try:
        font = ImageFont.load_default(size=36)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    d.text((240, 315), label, fill="black", anchor="mm", font=font)
    return im


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--relations", default=",".join(live.DEFAULT_RELATIONS))
    args = ap.parse_args(argv)
    relations = parse_relations(args.relations)
    a = live.uploaded_product(
        "A",
        "Stainless steel insulated water bottle, 750 ml",
        "",
        [live.Upload("a.png", product_image("STEEL BOTTLE", (40, 90, 200)), digest="a")],
    )
    b = live.uploaded_product(
        "B",
        "Insulated lunch bag with shoulder strap",
        "",
        [live.Upload("b.png", product_image("LUNCH BAG", (200, 60, 40)), digest="b")],
    )
    load0, cpu0, t0 = os.getloadavg(), cpu_seconds(), time.perf_counter()
    run = live.LiveRun(
        a.product,
        b.product,
        {a.product.asin: a.image, b.product.asin: b.image},
        live.BackendConfig("offline"),
        relations,
    ).start()
    seen = 0
    while True:
        finished = run.wait(0.5)
        for e in run.events[seen:]:
            what = e.asin or e.relation or ""
            text = e.text or (e.row or {}).get("intention") or ""
            print(
                f"{time.perf_counter() - t0:7.1f} s  {e.done}/{e.total}  {e.kind:<9} {what:<12} {text[:90]!r}",
                flush=True,
            )
        seen = len(run.events)
        if finished:
            break
    wall, cpu, load1 = time.perf_counter() - t0, cpu_seconds() - cpu0, os.getloadavg()
    view = run.view()
    print(f"\nbackend: {view.backend_label}   fatal: {view.fatal}   errors: {view.errors}")
    for asin, text in view.descriptions.items():
        print(f"\n[stage 1] {asin}: {text}")
    for r in live.result_rows(view):
        print(
            f"\n[{r['relation']}] {r['intention']}\n  -> verdict {r['verdict']}, P(yes) "
            f"{r['p_yes'] if r['p_yes'] is None else round(r['p_yes'], 3)}: {r['reason']}\n  flags: {r['flags']}"
        )
    print(
        f"\n1 pair x {len(relations)} relations ({view.total} calls): wall {wall:.1f} s, CPU {cpu:.1f} s; "
        f"load average before {load0[0]:.1f}, after {load1[0]:.1f}; os.cpu_count() = {os.cpu_count()}"
    )


if __name__ == "__main__":
    main()
