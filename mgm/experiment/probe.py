"""Linear probes on fixed features: frozen encoder features, or raw codec motion maps.

A probe is multinomial logistic regression on standardised features, fitted to convergence by
L-BFGS (full batch: the experiment's feature sets are small), with a fixed L2 penalty, so that two
feature sets are compared by the same yardstick and not by how well each was tuned.
"""

from __future__ import annotations

import numpy as np
import torch

from mgm.data.memory import clip_indices
from mgm.motion import remove_camera_motion


def encoder_features(model, dataset, batch_size: int = 64) -> dict[str, np.ndarray]:
    """Features of every clip of `dataset` (a MemoryClips, centred clips, no masks).

    model: VideoMAEClassifier (eval mode). Returns {"mean": [N, D] mean-pooled (+ fc_norm),
    "slots": [N, T' * D] one mean-pooled vector per time slot, in time order (order-aware)}.
    """
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    mean, slots = [], []
    with torch.no_grad():
        for batch in loader:
            mean.append(model.features(batch["video"]).numpy())
            slots.append(model.features_per_slot(batch["video"]).flatten(1).numpy())
    return {"mean": np.concatenate(mean), "slots": np.concatenate(slots)}


def motion_features(dataset) -> np.ndarray:
    """[N, T * 2 * H' * W']: each clip's motion on the patch grid, per sampled frame, with the
    per-frame median vector (camera motion) removed -- what the codec gives, nothing learned."""
    rows = []
    for i in range(len(dataset)):
        j = int(dataset.items[i])
        idx = clip_indices(dataset.split.video.shape[1], dataset.geometry, dataset.stride, None)
        m = dataset.motion(j, idx)  # [T, 2, H', W']
        dx, dy = remove_camera_motion(m[:, 0], m[:, 1], np.ones(m[:, 0].shape, bool))
        rows.append(np.stack([dx, dy], 1).ravel())
    return np.stack(rows).astype(np.float32)


def linear_probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                 *, l2: float = 1e-3, iters: int = 200) -> float:
    """Top-1 (%) on the test set of a logistic-regression probe trained on the train set.

    x: [N, F] features, y: [N] int labels. Features are standardised with train statistics.
    """
    return fit_linear_probe(x_train, y_train, x_test, y_test, l2=l2, iters=iters)[1]


def fit_linear_probe(x_train, y_train, x_test, y_test, *, l2: float = 1e-3, iters: int = 200) -> tuple[float, float]:
    """(train top-1 %, test top-1 %) of the probe `linear_probe` describes; the one probe of the
    experiment and of `./run bench data --probe`."""
    xtr = torch.as_tensor(np.asarray(x_train), dtype=torch.float64)
    xte = torch.as_tensor(np.asarray(x_test), dtype=torch.float64)
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    ytr = torch.as_tensor(np.asarray(y_train), dtype=torch.long)
    classes = int(max(ytr.max().item(), int(np.max(np.asarray(y_test))))) + 1
    w = torch.zeros(xtr.shape[1], classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=iters, history_size=20,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xtr @ w + b, ytr) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        top1 = [float(100.0 * ((x @ w + b).argmax(1).numpy() == np.asarray(y)).mean())
                for x, y in ((xtr, y_train), (xte, y_test))]
    return top1[0], top1[1]
