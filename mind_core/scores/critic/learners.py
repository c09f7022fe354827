"""The two learners a critic can use, each as arrays only (saved as safetensors, applied with numpy):

* :class:`Linear`: L2-regularised logistic regression, ``P = sigmoid(X w + b)``, fitted by L-BFGS (scipy) on the
  objective ``C * sum(log-loss) + |w|^2 / 2`` (the intercept is not penalised);
* :class:`MLP`: one hidden ReLU layer, ``P = sigmoid(relu(X W1 + b1) w2 + b2)``, trained with AdamW (torch, imported
  only here) on mini-batches, with dropout, stopped at the epoch with the best AUC on a pair-disjoint slice of the
  training rows held out for that purpose.

Both take a dense array or a CSR matrix; ``decision`` returns log-odds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64)))


@dataclass
class Linear:
    w: np.ndarray
    b: float

    kind = "linear"

    def decision(self, x) -> np.ndarray:
        return np.asarray(x @ self.w.astype(np.float64)).ravel() + self.b

    def arrays(self) -> dict[str, np.ndarray]:
        return {"w": self.w.astype(np.float32), "b": np.array([self.b], dtype=np.float32)}

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> Linear:
        return cls(a["w"].astype(np.float32), float(a["b"][0]))


def fit_linear(x, y: np.ndarray, *, C: float = 1.0, max_iter: int = 2000, start: Linear | None = None) -> Linear:
    """Logistic regression by L-BFGS; ``y`` in {0, 1}; ``start``: a model to start from (a warm start)."""
    from scipy.optimize import minimize

    y = np.asarray(y, dtype=np.float64)
    d = x.shape[1]
    sign = 2.0 * y - 1.0

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:d], theta[d]
        z = np.asarray(x @ w).ravel() + b
        m = -sign * z  # loss = log(1 + exp(m))
        loss = np.logaddexp(0.0, m).sum()
        g = -sign * sigmoid(m)  # d loss / d z
        grad = np.empty(d + 1)
        grad[:d] = C * np.asarray(x.T @ g).ravel() + w
        grad[d] = C * g.sum()
        return C * loss + 0.5 * float(w @ w), grad

    theta0 = np.zeros(d + 1) if start is None else np.append(start.w.astype(np.float64), start.b)
    res = minimize(objective, theta0, jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    return Linear(res.x[:d].astype(np.float32), float(np.float32(res.x[d])))  # float32: as saved


@dataclass
class MLP:
    w1: np.ndarray  # d x h
    b1: np.ndarray
    w2: np.ndarray  # h
    b2: float

    kind = "mlp"

    def decision(self, x) -> np.ndarray:
        h = np.asarray(x @ self.w1.astype(np.float64)) + self.b1
        return np.maximum(h, 0.0) @ self.w2.astype(np.float64) + self.b2

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "w1": self.w1.astype(np.float32),
            "b1": self.b1.astype(np.float32),
            "w2": self.w2.astype(np.float32),
            "b2": np.array([self.b2], dtype=np.float32),
        }

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> MLP:
        return cls(a["w1"], a["b1"], a["w2"], float(a["b2"][0]))


def _torch_input(x, torch):
    if sp.issparse(x):
        coo = sp.coo_matrix(x)
        idx = np.vstack([coo.row, coo.col]).astype(np.int64)
        return torch.sparse_coo_tensor(
            torch.from_numpy(idx), torch.from_numpy(coo.data.astype(np.float32)), coo.shape, check_invariants=False
        )
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def fit_mlp(
    x,
    y: np.ndarray,
    stop_rows: np.ndarray,
    *,
    hidden: int = 256,
    dropout: float = 0.3,
    lr: float = 1e-3,
    weight_decay: float = 1e-2,
    epochs: int = 40,
    patience: int = 6,
    batch_size: int = 128,
    seed: int = 0,
) -> tuple[MLP, int]:
    """Train on the rows not in ``stop_rows`` and keep the epoch with the best AUC on ``stop_rows`` (a pair-disjoint
    slice of the training rows). Returns ``(model, best epoch)``. Seeded: the same input gives the same model."""
    import torch

    from mind_core.scores.metrics import roc_auc

    y = np.asarray(y, dtype=np.float32)
    is_stop = np.zeros(len(y), dtype=bool)
    is_stop[stop_rows] = True
    fit_rows = np.flatnonzero(~is_stop)
    x = sp.csr_matrix(x) if sp.issparse(x) else np.asarray(x, dtype=np.float32)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    d = x.shape[1]
    lin1, lin2 = torch.nn.Linear(d, hidden), torch.nn.Linear(hidden, 1)
    drop = torch.nn.Dropout(dropout)
    params = [*lin1.parameters(), *lin2.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    x_stop = _torch_input(x[stop_rows], torch)
    y_stop = y[stop_rows]

    def forward(inp, train: bool):
        h = torch.relu(torch.sparse.mm(inp, lin1.weight.T) + lin1.bias if inp.is_sparse else lin1(inp))
        return lin2(drop(h) if train else h).squeeze(1)

    def snapshot() -> MLP:
        return MLP(
            lin1.weight.detach().numpy().T.copy(),
            lin1.bias.detach().numpy().copy(),
            lin2.weight.detach().numpy()[0].copy(),
            float(lin2.bias.detach().numpy()[0]),
        )

    best, best_auc, best_epoch, waited = snapshot(), -1.0, 0, 0
    for epoch in range(1, epochs + 1):
        order = fit_rows[torch.randperm(len(fit_rows), generator=gen).numpy()]
        for s in range(0, len(order), batch_size):
            b = order[s : s + batch_size]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                forward(_torch_input(x[b], torch), True), torch.from_numpy(y[b])
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            auc = roc_auc(forward(x_stop, False).numpy(), np.where(y_stop > 0.5, "yes", "no"))
        if auc > best_auc + 1e-4:
            best, best_auc, best_epoch, waited = snapshot(), auc, epoch, 0
        else:
            waited += 1
            if waited >= patience:
                break
    return best, best_epoch


LEARNERS = {"linear": Linear, "mlp": MLP}
