"""Evaluation of a trained DualFocusNet (and of the classical baseline) on one split under its protocol.

Every function here is host-driven: each process reads the whole split, and with a mesh each batch is
split over its devices (the parameters go to the devices once per evaluation; every process gets the whole
prediction back) and process 0 writes the reports. Predictions are compared in the dataset's own unit:
inputs are scaled by the eval config's `depth_scale` (as in training) and predictions divided by it before
the metrics.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from dualfocus_jax.classical import estimate_depth_classical
from dualfocus_jax.evaluation.metrics import METRIC_NAMES, average_uncertainty, depth_metrics_per_image
from dualfocus_jax.evaluation.protocols import EvalProtocol, clipped_for_metrics, evaluation_mask
from dualfocus_jax.focus_statistics import depth_uncertainty, expected_depth
from dualfocus_jax.model import FAST_COMPILE_OPTIONS, DualFocusConfig, DualFocusNet
from dualfocus_jax.model_inputs import evaluation_example, stacked_inputs
from dualfocus_jax.prepared_splits import DISPARITY_FOCUS_DATASETS, works_in_inverse_distance
from dualfocus_jax.slice_prior import projects_after_weights, with_blur_cell_prior
from dualfocus_jax.variational import project_unimodal

REPORTED_METRICS = METRIC_NAMES + ("avg_unc",)


@dataclasses.dataclass
class EvaluatedExample:
    """One example kept for the panels: the model input (depth, focus in the dataset's unit), the scored
    mask, and the prediction's depth, uncertainty (H, W) and focus probabilities (S, H, W)."""

    example_id: str
    stack_SHWC: np.ndarray
    focus_S: np.ndarray
    depth_gt_HW: np.ndarray
    mask_HW: np.ndarray
    depth_HW: np.ndarray
    uncertainty_HW: np.ndarray
    prob_SHW: np.ndarray


@dataclasses.dataclass
class EvaluationResult:
    """metrics: name → mean over images (REPORTED_METRICS); per_image: name → (N,) values; ids: (N,) example
    ids; examples: the first few examples with their predictions (for panels)."""

    metrics: dict[str, float]
    per_image: dict[str, np.ndarray]
    ids: list[str]
    examples: list[EvaluatedExample]


@functools.lru_cache(maxsize=16)
def prediction_function(model_config: DualFocusConfig, *, mesh: Mesh | None = None,
                        fast_compile: bool = False, blur_linear_focus: bool = False) -> Callable:
    """A jitted `predict(params, stack_BSHWC, focus_BS) -> {depth, uncertainty, prob}` (inference mode);
    `fast_compile` as in `train_step.make_train_step`. Cached: the same arguments give the same function, so
    evaluating again (every validation of a run) compiles nothing new.

    blur_linear_focus: the focus values are linear in blur (disparities: larger is nearer, and may be ≤ 0). A
    model working in inverse focus distance (`works_in_inverse_distance`) then runs without its slice weights
    and inverse expectation, and both are applied over the focus values themselves, as the predictor does for
    such stacks (inference/focus_units.py): the slices near to far (disparity descending, the order it trained
    in), the weights by each slice's cell in disparity, the depth as the expectation of the disparities. Other
    models run unchanged.

    With a `mesh`, the batch is split over its devices along the leading axis (B must be a multiple of the
    device count: `evaluation_batches` pads to one) and the outputs come back whole on every process; params
    are expected replicated on the mesh (`placed_params`), so no call sends them again."""
    in_focus_values = blur_linear_focus and works_in_inverse_distance(model_config.expectation,
                                                                      model_config.slice_prior)
    weighted = model_config.slice_prior == "blur_cells"
    # The projection follows the weights, as in the network (dualfocus.py).
    project_after = projects_after_weights(model_config.slice_prior, model_config.project_unimodal_at_inference)
    network_config = (dataclasses.replace(model_config, slice_prior="none", expectation="focus",
                                          project_unimodal_at_inference=(model_config.project_unimodal_at_inference
                                                                         and not project_after))
                      if in_focus_values else model_config)
    model = DualFocusNet(network_config)
    options = FAST_COMPILE_OPTIONS if fast_compile else None

    def predict(params, stack, focus):
        if not in_focus_values:
            outputs = model.apply(params, stack, focus, train=False)
            return {"depth": outputs.depth, "uncertainty": outputs.uncertainty, "prob": outputs.prob}
        # Such a model trained on distances, its slices near to far: the network sorts by −disparity.
        outputs = model.apply(params, stack, -focus, train=False)
        prob, values = outputs.prob, -outputs.focus_positions
        if weighted:
            prob = with_blur_cell_prior(prob, values)
        if project_after:
            prob = project_unimodal(prob, axis=1)
        depth = expected_depth(prob, values, "focus")
        # prob back in ascending focus value, the order every other model returns it in.
        return {"depth": depth, "uncertainty": depth_uncertainty(prob, values, depth, "focus"),
                "prob": prob[:, ::-1]}

    if mesh is None:
        return jax.jit(predict, compiler_options=options)
    return ShardedPrediction(predict, mesh, options)


class ShardedPrediction:
    """`predict` jitted over a mesh: the batch's rows split over the devices, outputs whole on every process."""

    def __init__(self, predict: Callable, mesh: Mesh, compiler_options=None):
        self.mesh = mesh
        self.split, whole = batch_and_replicated(mesh)
        self.jitted = jax.jit(predict, in_shardings=(whole, self.split, self.split), out_shardings=whole,
                              compiler_options=compiler_options)

    def __call__(self, params, stack, focus):
        return self.jitted(params, self.on_devices(stack), self.on_devices(focus))

    def on_devices(self, array) -> jax.Array:
        """The global array of a batch every process holds whole: each local device is sent its rows."""
        array = np.asarray(array)
        shards = [jax.device_put(array[index], device)
                  for device, index in self.split.addressable_devices_indices_map(array.shape).items()]
        return jax.make_array_from_single_device_arrays(array.shape, self.split, shards)


def batch_and_replicated(mesh: Mesh) -> tuple[NamedSharding, NamedSharding]:
    """(leading axis split over all of the mesh's axes, a whole copy on every device)."""
    return NamedSharding(mesh, PartitionSpec(mesh.axis_names)), NamedSharding(mesh, PartitionSpec())


def placed_params(params, mesh: Mesh | None):
    """`params` on the devices once, replicated over `mesh` (or on the default device); arrays already placed
    so stay where they are."""
    if mesh is None:
        return jax.device_put(params)
    return jax.device_put(params, batch_and_replicated(mesh)[1])


def evaluation_batches(records: Sequence, eval_config, protocol: EvalProtocol, *,
                       multiple: int = 1) -> Iterator[tuple[list[str], dict, int]]:
    """Yields (ids, batch, real) with up to `eval_config.batch_size` consecutive same-shape examples; a
    short batch is padded by repeating its last example (one compiled shape per image size) and `real` says
    how many rows are real. Batches have a multiple of `multiple` rows (the devices they are split over).
    Stops after `eval_config.max_examples` examples (0 = all)."""
    limit = len(records) if int(eval_config.max_examples) <= 0 else min(len(records), int(eval_config.max_examples))
    batch_size = -(-int(eval_config.batch_size) // multiple) * multiple
    pending: list[tuple[str, dict]] = []

    def flush():
        ids = [example_id for example_id, _ in pending]
        inputs = [example for _, example in pending]
        real = len(inputs)
        inputs = inputs + [inputs[-1]] * (batch_size - real)
        batch = stacked_inputs(inputs)
        return ids, batch, real

    for index in range(limit):
        record = records[index]
        example = evaluation_example(record, int(eval_config.num_slices), protocol.slice_sampling,
                                     float(eval_config.depth_scale))
        example_id = record["id"].decode() if isinstance(record["id"], bytes) else str(record["id"])
        if pending and pending[0][1]["stack"].shape != example["stack"].shape:
            yield flush()
            pending = []
        pending.append((example_id, example))
        if len(pending) == batch_size:
            yield flush()
            pending = []
    if pending:
        yield flush()


def scored_metrics(protocol: EvalProtocol, depth_BHW, depth_gt_BHW, valid_BHW) -> dict:
    """Per-image depth metrics (name → (B,) array) of predictions in the dataset's unit, under the protocol."""
    mask = evaluation_mask(protocol, depth_gt_BHW, valid_BHW)
    values = depth_metrics_per_image(clipped_for_metrics(protocol, depth_BHW),
                                     clipped_for_metrics(protocol, depth_gt_BHW), mask)
    return {name: np.asarray(value) for name, value in values.items()}


def mean_over_images(per_image: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean of each metric over the images that have a value (images without scored pixels give NaN)."""
    means = {}
    for name, values in per_image.items():
        finite = np.asarray(values)[np.isfinite(values)]
        means[name] = float(finite.mean()) if finite.size else float("nan")
    return means


def evaluate_model(params, model_config: DualFocusConfig, records: Sequence, eval_config, protocol: EvalProtocol,
                   *, keep_examples: int = 0, progress: Callable[[int, int], None] | None = None,
                   predict: Callable | None = None) -> EvaluationResult:
    """Metrics of `params` on `records` under `protocol` (eval_config: num_slices, batch_size, max_examples,
    depth_scale, and `dataset`: on one whose focus values are disparities, a model working in inverse focus
    distance gets the `prediction_function(..., blur_linear_focus=True)` of its config, on the mesh of a given
    `predict`). `progress(done, total)` is called after every batch."""
    mesh = predict.mesh if isinstance(predict, ShardedPrediction) else None
    # With `predict` given, model_config may be None or a partial stand-in: read with the configs' defaults.
    if (eval_config.get("dataset") in DISPARITY_FOCUS_DATASETS
            and works_in_inverse_distance(getattr(model_config, "expectation", "focus"),
                                          getattr(model_config, "slice_prior", "none"))):
        # A predict built for focus distances would take 1/disparity.
        predict = prediction_function(model_config, mesh=mesh, blur_linear_focus=True)
    predict = predict or prediction_function(model_config)
    params = placed_params(params, mesh)
    scale = float(eval_config.depth_scale)
    total = len(records) if int(eval_config.max_examples) <= 0 else min(len(records), int(eval_config.max_examples))
    per_image: dict[str, list] = {}
    ids: list[str] = []
    kept: list[EvaluatedExample] = []
    multiple = mesh.devices.size if mesh is not None else 1
    for batch_ids, batch, real in evaluation_batches(records, eval_config, protocol, multiple=multiple):
        outputs = jax.device_get(predict(params, batch["stack"], batch["focus"]))
        # Back to the dataset's unit: the model saw focus and depth multiplied by depth_scale.
        depth = outputs["depth"][:real] / scale
        gt = batch["depth"][:real] / scale
        focus = batch["focus"][:real] / scale
        values = scored_metrics(protocol, depth, gt, batch["valid"][:real])
        # AvgUnc over all pixels (the paper's), of the distribution the depth was taken from.
        values["avg_unc"] = np.asarray(average_uncertainty(outputs["prob"][:real], focus, depth))
        for name, value in values.items():
            per_image.setdefault(name, []).append(value)
        ids.extend(batch_ids)
        for row in range(real):
            if len(kept) < keep_examples:
                kept.append(EvaluatedExample(
                    batch_ids[row], batch["stack"][row], focus[row], gt[row],
                    evaluation_mask(protocol, gt[row:row + 1], batch["valid"][row:row + 1])[0],
                    depth[row], outputs["uncertainty"][row] / scale, outputs["prob"][row]))
        if progress is not None:
            progress(len(ids), total)
    stacked = {name: np.concatenate(values) for name, values in per_image.items()}
    return EvaluationResult(mean_over_images(stacked), stacked, ids, kept)


def evaluate_classical(records: Sequence, eval_config, protocol: EvalProtocol, **classical_options) -> EvaluationResult:
    """Metrics of the classical baseline (`estimate_depth_classical`, refined) on the same examples, slices
    and protocol as `evaluate_model`; focus positions in the dataset's unit."""
    per_image: dict[str, list] = {}
    ids: list[str] = []
    scale = float(eval_config.depth_scale)
    for batch_ids, batch, real in evaluation_batches(records, eval_config, protocol):
        for row in range(real):
            focus = batch["focus"][row] / scale
            result = estimate_depth_classical(batch["stack"][row], focus, **classical_options)
            depth = np.asarray(result.depth_HW)[None]
            values = scored_metrics(protocol, depth, batch["depth"][row:row + 1] / scale, batch["valid"][row:row + 1])
            # The baseline's σ map is the same quantity as the network's uncertainty; AvgUnc is its mean.
            values["avg_unc"] = np.asarray([float(np.mean(result.uncertainty_HW))])
            for name, value in values.items():
                per_image.setdefault(name, []).append(value)
        ids.extend(batch_ids)
    stacked = {name: np.concatenate(values) for name, values in per_image.items()}
    return EvaluationResult(mean_over_images(stacked), stacked, ids, [])
