"""The shipped model: the `small` DualFocus trained on the focal-stack engine, across cameras, slice counts
and focus spacings, on 2 CPU cores.

Command (resumable: rerun it after an interruption and it continues from the latest checkpoint):

    python -m experiments.train --config configs/engine_small.py --workdir runs/engine_small
    python -m experiments.evaluate_generalisation --checkpoint runs/engine_small   # the published tables

Data: endless stacks of `dualfocus_jax.engine` (every camera of the catalogue, every scene family, 3–16
slices spaced in distance, diopters or irregularly, ranges that bracket, cut or overshoot the scene, disc and
Gaussian PSFs, noise, JPEG, residual misalignment), each batch of one slice count (3, 5, 7, 10 or 16) on
64×64 crops; depth loss in fractions of each stack's focus range. Validation on the 20 held-out synthetic_focal
training scenes (train[180:]) keeps the best checkpoint by RMSE.
Hardware: 2 CPU cores, about 2 hours for the default 20,000 updates (the engine draws in 2 grain threads
beside the training). `configs/engine_small.py:runlocal` is a 4-step smoke run; `:steps=N` sets the budget.

Second stage (`configs/engine_small.py:stage=2`): starts from the first stage's export
(`dualfocus_jax/pretrained/small_engine_candidate`, via config.model_init.checkpoint) and goes on with a lower
learning rate on 64² and 96² crops, so the network sees more context around depth edges and textureless
patches than 64² crops give; 8,000 updates by default.

Third stage (`configs/engine_small.py:stage=3`): starts from the second stage's export
(`dualfocus_jax/pretrained/small_engine_stage2`) on 96² and 128² crops (the evaluation stacks are 128² and
larger; wider crops hold whole objects and more of the textureless surfaces the network must fill in) at a
lower rate again; 5,000 updates by default.

Fourth stage (`configs/engine_small.py:stage=4`): starts from the third stage's export
(`dualfocus_jax/pretrained/small_engine_stage3`) and mixes the embedded synthetic_focal training scenes
(train[:180], 5-slice stacks: they serve the 3- and 5-slice batches, half of each such batch's draws, so a
fifth of all examples) into the engine's stacks, on 96² and 128² crops at a lower rate; 3,000 updates.

Fifth stage (`configs/engine_small.py:stage=5`): starts from the fourth stage's export
(`dualfocus_jax/pretrained/small_engine_stage4`) with the same two sources on 128² crops only (the most
context the 128² synthetic_focal scenes allow) at a lower rate; 3,000 updates.

Sixth stage (`configs/engine_small.py:stage=6`): starts from the fifth stage's export
(`dualfocus_jax/pretrained/small_engine_stage5`) with the same sources and crops, the engine's blur span across
the scene drawn log-uniform in 1.5–40 px instead of 3–40 px. Why: on the engine's test split the fifth stage's
lead over the classical baseline is smallest on stacks whose whole scene spans little blur (RMSE 0.76 and AbsRel
0.60 of classical's for spans of 3–6 px, 0.48–0.62 and 0.26–0.29 above), the regime of far scenes, small
apertures and long stacks of small steps; the wider draw gives about half the examples spans under 8 px
(was 38%). 3,000 updates.

Seventh stage (`configs/engine_small.py:stage=7`): starts from the fifth stage's export with the same sources
and crops, the engine's scene layouts drawn on a canvas 1–3× larger (log-uniform) and shrunk to the crop
(`EngineSettings.detail_zoom_range`), so textures are up to 3× finer at the same blur. Why: the fifth stage
does better on the rendered motorcycle when its input is upsampled 2× (RMSE 0.324 → 0.278 at 10 slices)
but worse on the engine's own test split (RMSE / focus range 0.119 → 0.133), so the motorcycle's detail is
finer than anything the engine drew. 3,000 updates.

Eighth stage (`configs/engine_small.py:stage=8`): starts from the fifth stage's export with the same sources
and crops, depth as the expectation over INVERSE focus distance (`model.expectation="inverse_focus"`,
`dualfocus_jax/focus_statistics.py`). Why: the network reads blur, which is linear in inverse distance, and
never sees the focus values, so with an expectation over distances the same blur split between two slices
must mean different depths for stacks spaced in metres and in diopters; the fifth stage places the motorcycle
(slices evenly in metres) 9–12 cm too far on average. 3,000 updates. Result (experiments/results/generalisation/
stage8.md): synthetic_focal better (RMSE 0.147 → 0.139), the motorcycle (0.350 / 0.332) and the engine split's
AbsRel (0.141 → 0.173) worse, so it is not shipped.

Ninth stage (`configs/engine_small.py:stage=9`): starts from the fifth stage's export with the same sources and
crops; each engine stack renders sharp every surface whose CoC is under a diameter drawn log-uniform in 1–3 px
(a depth of field, `EngineSettings.sharp_coc_px_range`), and 30% of them with depth quantised into 8–24 hard
layers (`hard_layer_share`). Why: the fifth stage's far bias on the motorcycle comes from its renderer (the
protocol renderer of `rendering.thin_lens`: a CoC up to 2 px renders sharp, 16 hard layers), not from the
scene: rendered by the engine's renderer the same scene gives RMSE 0.266 / 0.261 with no bias (one-off probe).
3,000 updates. Result (experiments/results/generalisation/stage9.md): the engine split, its protocol-rendered
copy and synthetic_focal within 1–2% of the fifth stage (RMSE / focus range 0.1213 vs 0.1215, 0.1145 vs 0.1162;
synthetic_focal RMSE 0.146 vs 0.147), the motorcycle no better (0.338 / 0.334 vs 0.340 / 0.324), so it is not
shipped.

Tenth stage (`configs/engine_small.py:stage=10`): starts from the fifth stage's export with the same sources and
crops; 30% of the engine's stacks are rendered by the per-pixel Gaussian protocol renderer (each pixel's Gaussian
PSF cut to a 7 × 7 window, no occlusion: `EngineSettings.window_gaussian_share`, `rendering/window_gaussian.py`),
the renderer of the NYUv2 and ARKitScenes builders. Why: on the engine test scenes rendered that way
(`evaluate_generalisation`, section "per-pixel Gaussian protocol renderer") the fifth stage loses to the refined
classical baseline at 16 slices (RMSE 1.52×, AbsRel 1.40× the baseline's) and keeps only 8% at 5 slices (RMSE
0.92×); the window stops blur growing beyond a CoC of about 8 px, which no engine stack shows. 3,000 updates.
Result (experiments/results/generalisation/stage10.md): RMSE / focus range on the Gaussian-protocol scenes 0.1227
vs 0.1261 (16 slices 0.1236 vs 0.1303), layered-protocol 0.1144 vs 0.1162, motorcycle 0.331 / 0.313 vs 0.340 /
0.324, but the engine split's 16-slice AbsRel 0.123 vs 0.109, so it is not shipped (kept as
`dualfocus_jax/pretrained/small_engine_stage10`).

Eleventh stage (`configs/engine_small.py:stage=11`): the fifth stage's network and data with the full-resolution
refinement added (`model.full_resolution_refinement`, `dualfocus_jax/model/refinement.py`: the finest costs
corrected at the input's resolution from the slices' own pixels; its last convolution starts at zero, so step 0
predicts what the fifth stage does), from the fifth stage's export at a learning rate of 1.5e-4; 2,500 updates.
Why: the costs end at 1/4 of the input, and on the rendered motorcycle the pixels within 3 px of a depth edge
are 46% of those scored and carry 72% of the fifth stage's squared error. Result (experiments/results/
generalisation/stage11.md): synthetic_focal better (RMSE 0.144 vs 0.147, AbsRel 0.0556 vs 0.0577), but the
motorcycle worse (0.349 / 0.332 vs 0.340 / 0.324; a one-off probe of the step-1,000 checkpoint had 0.329 / 0.310),
the engine split's AbsRel 0.146 vs 0.141, and 2-3x the network time at 128², so it is not shipped.

Twelfth stage (`configs/engine_small.py:stage=12`): the fifth stage's network and data with its finest costs
upsampled guided by colour (`model.cost_upsampling="joint_bilateral"`, `dualfocus_jax/model/guided_upsampling.py`,
reach 4 cells and colour scale 0.05 as `experiments/choose_cost_upsampling.py` chose them on validation stacks),
from the fifth stage's export at lr 1e-4; 3,000 updates (about 40 min). Why: the same upsampling applied to the
fifth stage's parameters alone lowers the error on every validation set and on every test table but the
motorcycle (it was the shipped model until the thirteenth stage, `small_engine_stage5_guided`); training with it
lets the costs adapt to it.
Result (experiments/results/generalisation/stage12.md): synthetic_focal better than the shipped model (RMSE 0.128
vs 0.135, AbsRel 0.0486 vs 0.0534), the engine split equal (RMSE / focus range 0.1177 both, AbsRel 0.137 both),
the motorcycle worse (0.351 / 0.336 vs 0.339 / 0.327), so it is not shipped.

Thirteenth stage (`configs/engine_small.py:stage=13`, `dualfocus_jax/pretrained/small_engine_stage13` with
colour-guided upsampling): the fifth stage's network and data with its focus probabilities weighted by each
slice's cell in inverse focus distance (`model.slice_prior="blur_cells"`, `slice_prior.with_blur_cell_prior`),
from the fifth stage's export at lr 1e-4; 3,000 updates (about 30 min). Why: the network never sees the focus
values, so where several slices are equally sharp it cannot know whether they crowd one end of the range in
inverse distance (a stack evenly spaced in metres) or not; the weights tell it. Result
(experiments/results/generalisation/stage13.md): better than the previous shipped model on the engine split
(RMSE / focus range 0.1126 vs 0.1177, AbsRel 0.117 vs 0.137), its protocol renderings and the motorcycle
(0.323 / 0.323 vs 0.339 / 0.327), equal on synthetic_focal, so it was shipped until the fourteenth stage.

Fourteenth stage (`configs/engine_small.py:stage=14`, the shipped model `dualfocus_jax/pretrained/small_engine_stage14`
with colour-guided upsampling): the thirteenth stage's network and data from its export, with 30% of the engine's
stacks rendered by the per-pixel Gaussian protocol renderer as in the tenth stage (which helped on the protocol
renderings and the motorcycle); 3,000 updates (about 30 min on a quiet machine). Result (experiments/results/
generalisation/stage14.md): against the thirteenth stage, the engine split's AbsRel 0.115 vs 0.117 (RMSE / focus
range 0.1124 vs 0.1126; its RMSE in metres at 10 and 16 slices 0.123 / 0.145 vs 0.120 / 0.139), the layered- and
Gaussian-protocol renderings 0.1062 / 0.1135 vs 0.1085 / 0.1175, synthetic_focal 0.133 / 0.0502 vs 0.135 / 0.0524,
the motorcycle 0.318 / 0.309 vs 0.323 / 0.323, so it is shipped.

Fifteenth stage (`configs/engine_small.py:stage=15`): the fourteenth stage's network and data from its export, with
the depth loss's smooth-L1 switch at 5% of the focus range (`model.smooth_l1_beta=0.05`) instead of 1. Why: depth
errors are fractions of the focus range, so with beta = 1 the loss was squared everywhere, and a squared loss
answers the mean of the two sides where a pixel may lie either side of a depth edge; on the rendered motorcycle
the pixels within 3 px of a depth edge carry 75% of the fourteenth stage's squared error. 3,000 updates (about
50 min beside another run). Result (experiments/results/generalisation/stage15.md, all with the projection after
the slice weights): against the fourteenth stage, synthetic_focal RMSE 0.133 → 0.120 and AbsRel 0.0502 → 0.0403
(its depth edges' AbsRel 0.156 → 0.132), the layered- and Gaussian-protocol renderings 0.1059 → 0.1048 and 0.1128 →
0.1086 (RMSE / focus range), the motorcycle 0.318 / 0.309 → 0.318 / 0.308 with AbsRel 0.0726 / 0.0626 → 0.0708 /
0.0611, but the engine split a little worse (RMSE / focus range 0.1123 → 0.1143, AbsRel 0.1146 → 0.1167, at 3
slices most); it is the shipped model, `dualfocus_jax/pretrained/small_engine_stage15` (colour-guided upsampling).

Sixteenth stage (`configs/engine_small.py:stage=16`): the fourteenth stage with the full-resolution refinement of
the eleventh, from its export at lr 1.5e-4; 2,000 updates (about 70 min beside another run). Why: the motorcycle's
error sits at its fine structures (run 2x upsampled, the fourteenth stage gives 0.292 / 0.261 instead of 0.318 /
0.309; a one-off probe), which 1/4-resolution costs cannot hold. Result (stage15.md): worse than the fourteenth stage
nearly everywhere (engine split RMSE / focus range 0.1164, synthetic_focal 0.142 / 0.0523, motorcycle 0.321 / 0.305),
so it is not shipped.
"""

from configs.common import apply_runlocal, base_config, engine_source, eval_split, eval_suite, parse_arg, train_source

FIRST_STAGE_EXPORT = "dualfocus_jax/pretrained/small_engine_candidate"
SECOND_STAGE_EXPORT = "dualfocus_jax/pretrained/small_engine_stage2"
THIRD_STAGE_EXPORT = "dualfocus_jax/pretrained/small_engine_stage3"
FOURTH_STAGE_EXPORT = "dualfocus_jax/pretrained/small_engine_stage4"
FIFTH_STAGE_EXPORT = "dualfocus_jax/pretrained/small_engine_stage5"
THIRTEENTH_STAGE_EXPORT = "dualfocus_jax/pretrained/small_engine_stage13"
FOURTEENTH_STAGE_EXPORT = "dualfocus_jax/pretrained/small_engine_stage14"


def get_config(arg=None):
    arg = parse_arg(arg, runlocal=False, steps=0, variant="dualfocus", stage=1)
    config = base_config()
    config.model.update(size="small", variant=arg.variant)
    config.input.update(prepare_if_missing=True, batch_size=4, crop_size=(64, 64), num_slices=5,
                        slice_counts=(3, 5, 7, 10, 16), num_threads=2, prefetch=4)
    config.input.sources.engine = engine_source()
    config.optimizer.update(name="adamw", lr=1e-3, weight_decay=1e-4, grad_clip_norm=1.0, schedule="warmup_cosine",
                            warmup_steps=200, final_lr_fraction=0.05)
    if arg.stage == 2:
        config.model_init.checkpoint = FIRST_STAGE_EXPORT
        config.input.crop_sizes = ((64, 64), (96, 96))
        config.optimizer.update(lr=3e-4, warmup_steps=100)
    elif arg.stage == 3:
        config.model_init.checkpoint = SECOND_STAGE_EXPORT
        config.input.crop_sizes = ((96, 96), (128, 128))
        config.optimizer.update(lr=2e-4, warmup_steps=100)
    elif 4 <= arg.stage <= 16:
        config.model_init.checkpoint = {4: THIRD_STAGE_EXPORT, 5: FOURTH_STAGE_EXPORT, 14: THIRTEENTH_STAGE_EXPORT,
                                        15: FOURTEENTH_STAGE_EXPORT, 16: FOURTEENTH_STAGE_EXPORT}.get(
                                            arg.stage, FIFTH_STAGE_EXPORT)
        config.input.crop_sizes = ((96, 96), (128, 128)) if arg.stage == 4 else ((128, 128),)
        # Its stacks have 5 slices: 3 of them sorted at random for 3-slice batches, all 5 for 5-slice ones.
        config.input.sources.synthetic_focal = train_source(
            "synthetic_focal", "train[:180]", slice_sampling="random_sorted", slice_counts=(3, 5),
            normalise_focus_range=True)
        config.optimizer.update(lr=1.5e-4 if arg.stage == 4 else 1e-4, warmup_steps=100)
        if arg.stage == 6:
            config.input.sources.engine.engine.blur_range_px = (1.5, 40.0)
        if arg.stage == 7:
            config.input.sources.engine.engine.detail_zoom_range = (1.0, 3.0)
        if arg.stage == 8:
            config.model.expectation = "inverse_focus"
        if arg.stage == 9:
            config.input.sources.engine.engine.update(sharp_coc_px_range=(1.0, 3.0), hard_layer_share=0.3)
        if arg.stage in (10, 14, 15, 16):
            config.input.sources.engine.engine.window_gaussian_share = 0.3
        if arg.stage in (11, 16):
            config.model.full_resolution_refinement = True
            config.optimizer.lr = 1.5e-4  # the refinement starts from scratch
        if arg.stage == 12:
            config.model.cost_upsampling = "joint_bilateral"  # its reach and sigma: DualFocusConfig's defaults
        if arg.stage in (13, 14, 15, 16):
            config.model.slice_prior = "blur_cells"
        if arg.stage == 15:
            # Depth errors are fractions of the focus range, so beta = 1 left every error in the quadratic part:
            # a squared loss, whose best answer where a pixel may be either side of an edge is the mean of the two.
            config.model.smooth_l1_beta = 0.05
    elif arg.stage != 1:
        raise ValueError(f"configs/engine_small.py: stage must be 1 to 16, not {arg.stage}")
    steps = arg.steps or {1: 20000, 2: 8000, 3: 5000, 11: 2500, 16: 2000}.get(arg.stage, 3000)
    config.train.update(total_steps=steps, log_every_steps=100, validate_every_steps=2000)
    config.checkpoint.update(every_steps=500, keep_latest=2, keep_best=1, best_metric="rmse", best_mode="min")
    config.validation = eval_split("synthetic_focal", "train[180:]", "synthetic_focal", batch_size=4, num_panels=0)
    config.evals.update(eval_suite("test", "synthetic_focal", "test", "synthetic_focal", batch_size=4, num_panels=4,
                                   kinds=("network", "classical")))
    if arg.runlocal:
        apply_runlocal(config)
        config.input.slice_counts = (3, 4)
        if "synthetic_focal" in config.input.sources:
            config.input.sources.synthetic_focal.slice_counts = (3,)
    return config
