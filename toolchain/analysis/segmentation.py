"""Semantic segmentation from a spiking network's output: per-pixel predictions, confusion matrix, IoU.

A segmentation SNN (examples/zoo/segmentation) ends in a per-pixel output layer: class scores for
every pixel of a *reduced* resolution grid, ``output [samples, steps, classes, h, w]``. The chip
(or any backend) stops there. The host then

1. reads the output out over time with the graph's readout rule (``sum``, ``mean``, ``max`` or
   ``last``; :func:`class_scores`) -> ``[samples, classes, h, w]``;
2. upsamples the scores to the mask size ``H x W`` (:func:`upsample`): ``bilinear`` (default;
   ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)`` on the scores, as
   DeepLab does with its logits) or ``nearest`` (every output pixel copied to its
   ``H/h x W/w`` block). **This upsampling runs on the host after the chip's output**; it is not
   part of the exported graph and costs no chip energy;
3. takes the argmax over classes per pixel (:func:`predict_masks`) -> ``[samples, H, W]``.

Metrics (:func:`confusion_matrix`, :func:`iou_per_class`, :func:`segmentation_metrics`):
``cm[t, p]`` counts pixels of true class ``t`` predicted as ``p``; the IoU of class ``c`` is
``cm[c, c] / (sum_p cm[c, p] + sum_t cm[t, c] - cm[c, c])`` (true positives over the union of
the true and predicted pixels), undefined (NaN) for a class that neither occurs nor is
predicted; ``mean_iou`` is the mean over the classes where it is defined, background (class 0 in
the digits task) included. Pixels whose target equals ``ignore_index`` are left out.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import numpy as np

from toolchain.errors import NirDeployError

UPSAMPLING = ("bilinear", "nearest")

#: what run records and reports say about step 2 above
HOST_NOTE = "per-pixel scores are upsampled to the mask size; this runs on the host after the chip's output"


def class_scores(output: np.ndarray, readout: str = "sum") -> np.ndarray:
    """Output over time ``[N, T, K, h, w]`` -> class scores ``[N, K, h, w]`` by the readout rule."""
    out = np.asarray(output, dtype=np.float64)
    if out.ndim != 5:
        raise NirDeployError(
            f"segmentation needs a per-pixel output [samples, steps, classes, h, w]; the graph's output has "
            f"shape {tuple(out.shape)}"
        )
    if readout == "sum":
        return out.sum(axis=1)
    if readout == "mean":
        return out.mean(axis=1)
    if readout == "max":
        return out.max(axis=1)
    if readout == "last":
        return out[:, -1]
    raise NirDeployError(f"unknown readout {readout!r}; choose sum, max, mean or last")


def upsample(scores: np.ndarray, size: Sequence[int], mode: str = "bilinear") -> np.ndarray:
    """Scores ``[N, K, h, w]`` -> ``[N, K, H, W]`` (host side; see the module docstring)."""
    import torch
    import torch.nn.functional as F

    if mode not in UPSAMPLING:
        raise NirDeployError(f"unknown upsampling {mode!r}; choose {' or '.join(UPSAMPLING)}")
    s = np.asarray(scores, dtype=np.float64)
    H, W = int(size[0]), int(size[1])
    if s.shape[-2:] == (H, W):
        return s
    t = torch.from_numpy(np.ascontiguousarray(s))
    if mode == "bilinear":
        y = F.interpolate(t, size=(H, W), mode="bilinear", align_corners=False)
    else:
        y = F.interpolate(t, size=(H, W), mode="nearest")
    return y.numpy()


def predict_masks(
    output: np.ndarray, size: Optional[Sequence[int]] = None, readout: str = "sum", mode: str = "bilinear"
) -> np.ndarray:
    """Per-pixel class ``[N, H, W]`` (int64) from an output over time ``[N, T, K, h, w]``.

    ``size``: the mask size to upsample to (default: the output's own resolution).
    """
    scores = class_scores(output, readout)
    if size is not None:
        scores = upsample(scores, size, mode)
    return np.argmax(scores, axis=1).astype(np.int64)


def confusion_matrix(pred: np.ndarray, target: np.ndarray, n_classes: int, ignore_index: Optional[int] = None) -> np.ndarray:
    """``cm[t, p]``: pixels of true class t predicted as p (int64 ``[K, K]``)."""
    p = np.asarray(pred, dtype=np.int64).reshape(-1)
    t = np.asarray(target, dtype=np.int64).reshape(-1)
    if p.shape != t.shape:
        raise NirDeployError(f"predictions ({np.shape(pred)}) and targets ({np.shape(target)}) differ in shape")
    keep = np.ones_like(t, dtype=bool) if ignore_index is None else t != ignore_index
    p, t = p[keep], t[keep]
    if t.size and (t.min() < 0 or t.max() >= n_classes or p.min() < 0 or p.max() >= n_classes):
        raise NirDeployError(f"class indices must lie in [0, {n_classes})")
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def iou_per_class(cm: np.ndarray) -> np.ndarray:
    """IoU of every class from a confusion matrix; NaN where the class is neither true nor predicted."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    union = cm.sum(axis=0) + cm.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)


def mean_iou(pred: np.ndarray, target: np.ndarray, n_classes: int, ignore_index: Optional[int] = None) -> float:
    """Mean IoU over the classes where it is defined."""
    iou = iou_per_class(confusion_matrix(pred, target, n_classes, ignore_index))
    return float(np.nanmean(iou)) if np.any(np.isfinite(iou)) else float("nan")


def segmentation_metrics(
    pred: np.ndarray,
    target: np.ndarray,
    n_classes: int,
    class_names: Optional[Sequence[str]] = None,
    ignore_index: Optional[int] = None,
) -> Dict[str, Any]:
    """mean_iou, pixel_accuracy, per-class IoU (name -> value or None) and the confusion matrix."""
    cm = confusion_matrix(pred, target, n_classes, ignore_index)
    iou = iou_per_class(cm)
    names = list(class_names) if class_names is not None and len(class_names) == n_classes else [str(i) for i in range(n_classes)]
    total = cm.sum()
    return {
        "mean_iou": float(np.nanmean(iou)) if np.any(np.isfinite(iou)) else None,
        "pixel_accuracy": float(np.trace(cm) / total) if total else None,
        "classes": int(n_classes),
        "iou_per_class": {n: (None if not np.isfinite(v) else float(v)) for n, v in zip(names, iou)},
        "confusion_matrix": cm.tolist(),
    }


def class_names_of(dataset) -> list:
    """Class names of a segmentation dataset's masks: 0 is the background, ``1 + k`` the dataset's class k."""
    return ["background"] + list(dataset.classes)


def segmentation_section(
    output: np.ndarray,
    targets: np.ndarray,
    readout: str = "sum",
    mode: str = "bilinear",
    n_classes: Optional[int] = None,
    class_names: Optional[Sequence[str]] = None,
) -> Dict[str, Any]:
    """The ``segmentation`` section of a run record: the output ``[N, T, K, h, w]`` against
    target masks ``[N, H, W]`` (host-side upsampling to ``H x W`` with ``mode``)."""
    targets = np.asarray(targets)
    out = np.asarray(output)
    if targets.ndim != 3 or targets.shape[0] != out.shape[0]:
        raise NirDeployError(
            f"segmentation targets must be [samples, H, W] for the {out.shape[0]} simulated samples, got {tuple(targets.shape)}"
        )
    K = int(n_classes or out.shape[2])
    pred = predict_masks(out, targets.shape[1:], readout, mode)
    sec = segmentation_metrics(pred, targets, K, class_names)
    sec.update(
        {
            "readout": readout,
            "output_resolution": [int(d) for d in out.shape[-2:]],
            "mask_resolution": [int(d) for d in targets.shape[1:]],
            "upsampling": mode,
            "upsampling_note": HOST_NOTE,
            "samples": int(out.shape[0]),
        }
    )
    return sec
