"""Parity runner: replay a reference bundle made by the official code and compare our numbers.

A bundle (format of tests/data/parity/, see tests/data/README.md) holds tiny random-weight models in
the official file layout, the recorded inputs and random draws, and the official outputs. Every
setting (sizes, steps, guidance, tracks, strides, model configs) is read from the bundle itself.

    python -m motion_i2v_core parity BUNDLE_DIR [--level module|pipeline|all] [--only SUBSTRING]

prints one line per quantity and exits non-zero if any quantity is out of tolerance.
"""

from __future__ import annotations

import json
import re
import time
import traceback
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

import torch
from safetensors.torch import load_file

# Tolerances from the bundle README section 7, as max|ours - ref| / max|ref| ("rel") or absolute.
TOLERANCES = {
    "exact": (1e-6, "abs"),  # deterministic preprocessing and DDIM tables
    "posterior": (2e-5, "rel"),  # VAE posteriors, control latent, image latent
    "forward": (2e-3, "rel"),  # single UNet / ControlNet forwards
    "loop": (1e-2, "rel"),  # after the DDIM loops
    "video": (1e-2, "abs"),
    "splat": (1e-5, "rel"),
}


@dataclass
class Result:
    name: str
    max_abs: float
    rel: float
    tol: float
    mode: str
    error: Optional[str] = None

    @property
    def passed(self) -> bool:
        if self.error is not None:
            return False
        value = self.rel if self.mode == "rel" else self.max_abs
        return value <= self.tol

    def line(self) -> str:
        status = "PASS" if self.passed else "FAIL"
        if self.error is not None:
            return f"{status}  {self.name:<44} error: {self.error}"
        return (
            f"{status}  {self.name:<44} max_abs={self.max_abs:.3e}  rel={self.rel:.3e}  "
            f"tol={self.tol:.0e} ({self.mode})"
        )


def compare(name: str, ours: torch.Tensor, ref: torch.Tensor, kind: str) -> Result:
    tol, mode = TOLERANCES[kind]
    ours = torch.as_tensor(ours).detach().double().cpu()
    ref = torch.as_tensor(ref).detach().double().cpu()
    if tuple(ours.shape) != tuple(ref.shape):
        return Result(name, float("nan"), float("nan"), tol, mode,
                      error=f"shape {tuple(ours.shape)} != reference {tuple(ref.shape)}")
    finite = torch.isfinite(ref)
    if not torch.equal(finite, torch.isfinite(ours)):
        return Result(name, float("nan"), float("nan"), tol, mode, error="non-finite values differ from the reference")
    diff = (ours - ref)[finite].abs()
    max_abs = float(diff.max()) if diff.numel() else 0.0
    scale = float(ref[finite].abs().max()) if diff.numel() else 0.0
    rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    return Result(name, max_abs, rel, tol, mode)


class Bundle:
    """Lazy access to a parity bundle's files and the models built from it by our loader."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not (self.root / "meta.json").is_file():
            raise FileNotFoundError(f"{self.root} is not a parity bundle (no meta.json)")
        self.meta = json.loads((self.root / "meta.json").read_text())
        self.config = self.meta["config"]
        tracks_file = self.root / "tracks.json"
        self.tracks_info = json.loads(tracks_file.read_text()) if tracks_file.is_file() else {}

    def tensors(self, name: str) -> Dict[str, torch.Tensor]:
        """The tensors of `<name>.safetensors`, read once."""
        if name not in self._files:
            self._files[name] = load_file(str(self.root / f"{name}.safetensors"))
        return self._files[name]

    @cached_property
    def _files(self) -> Dict[str, Dict[str, torch.Tensor]]:
        return {}

    s1_in = property(lambda self: self.tensors("stage1_inputs"))
    s1_out = property(lambda self: self.tensors("stage1_outputs"))
    s2_in = property(lambda self: self.tensors("stage2_inputs"))
    s2_out = property(lambda self: self.tensors("stage2_outputs"))
    units = property(lambda self: self.tensors("units"))

    # The run's settings as meta.json records them.
    height = property(lambda self: int(self.config["H"]))
    width = property(lambda self: int(self.config["W"]))
    steps = property(lambda self: int(self.config["steps"]))
    guidance = property(lambda self: float(self.config["guidance"]))

    @property
    def model_length(self) -> int:
        return int(self.meta.get("model_length", self.tracks_info.get("model_length", 16)))

    @property
    def unet_additional_kwargs(self) -> dict:
        """The official inference.yaml UNet settings the bundle was made with."""
        return dict(self.meta.get("unet_additional_kwargs", {}))

    @cached_property
    def stage1(self):
        from motion_i2v_core.loading import load_stage1

        return load_stage1(
            self.root / "models" / "stage1" / "StableDiffusion-FlowGen",
            image_vae_dir=self.root / "models" / "stage2" / "StableDiffusion" / "vae",
            dtype=torch.float32,
            unet_additional_kwargs=self.unet_additional_kwargs,
        )

    @cached_property
    def stage2(self):
        from motion_i2v_core.loading import load_stage2

        return load_stage2(
            self.root / "models" / "stage2",
            dtype=torch.float32,
            unet_additional_kwargs=self.unet_additional_kwargs,
        )


CheckFn = Callable[[Bundle], Iterator[Result]]
MODULE_CHECKS: List[CheckFn] = []
PIPELINE_CHECKS: List[CheckFn] = []


def module_check(fn: CheckFn) -> CheckFn:
    MODULE_CHECKS.append(fn)
    return fn


def pipeline_check(fn: CheckFn) -> CheckFn:
    PIPELINE_CHECKS.append(fn)
    return fn


# ---------------------------------------------------------------- module level


@module_check
def stage1_unet_forward(b: Bundle) -> Iterator[Result]:
    i, o = b.s1_in, b.s1_out
    unet = b.stage1.unet
    args = (i["fwd_sample"], i["fwd_timestep"], i["stride"], i["fwd_encoder_hidden_states"])
    with torch.no_grad():
        eps, (down_res, mid_res) = unet(*args, control=i["fwd_control"], return_control_residuals=True)
        eps_no_control = unet(*args, control=None)
    yield compare("stage1/fwd_eps", eps, o["fwd_eps"], "forward")
    for key in sorted(o):
        m = re.fullmatch(r"fwd_ctrl_down_res_(\d+)", key)
        if m:
            yield compare(f"stage1/{key}", down_res[int(m.group(1))], o[key], "forward")
    yield compare("stage1/fwd_ctrl_mid_res", mid_res, o["fwd_ctrl_mid_res"], "forward")
    yield compare("stage1/fwd_eps_no_control", eps_no_control, o["fwd_eps_no_control"], "forward")


@module_check
def stage2_unet_forward(b: Bundle) -> Iterator[Result]:
    i, o = b.s2_in, b.s2_out
    unet = b.stage2.unet
    flow = b.s1_out["flow_pre"][None]
    sample, t, ctx = i["fwd_sample"], i["fwd_timestep"], i["fwd_encoder_hidden_states"]
    with torch.no_grad():
        eps_compat = unet(sample, t, ctx, flow=flow.expand(2, -1, -1, -1, -1), official_compat=True)
        eps_default = unet(sample, t, ctx, flow=flow.expand(2, -1, -1, -1, -1), official_compat=False)
        eps_u = unet(sample[:1], t, i["text_uncond"], flow=flow)
        eps_c = unet(sample[1:], t, i["text_cond"], flow=flow)
    yield compare("stage2/fwd_eps (official_compat, Q1)", eps_compat, o["fwd_eps"], "forward")
    yield compare("stage2/fwd_eps_b1_uncond", eps_u, o["fwd_eps_b1_uncond"], "forward")
    yield compare("stage2/fwd_eps_b1_cond", eps_c, o["fwd_eps_b1_cond"], "forward")
    ref_default = torch.cat([o["fwd_eps_b1_uncond"], o["fwd_eps_b1_cond"]])
    yield compare("stage2/fwd_eps (default = per-branch warp)", eps_default, ref_default, "forward")


@module_check
def vae_posteriors(b: Bundle) -> Iterator[Result]:
    from motion_i2v_core.models.vae_frames import encode_frames as vae_encode_frames

    s1, s2 = b.stage1, b.stage2
    with torch.no_grad():
        mean, std = vae_encode_frames(s1.image_vae, b.s1_in["image01"][None])
        yield compare("stage1/img_posterior_mean", mean, b.s1_in["img_posterior_mean"], "posterior")
        yield compare("stage1/img_posterior_std", std, b.s1_in["img_posterior_std"], "posterior")
        sparse = b.s1_in["sparse_flow01"][0].transpose(0, 1)  # (F, 2, H, W): the (b f) order
        mean, std = vae_encode_frames(s1.flow_vae, sparse)
        yield compare("stage1/ctrl_posterior_mean", mean, b.s1_in["ctrl_posterior_mean"], "posterior")
        yield compare("stage1/ctrl_posterior_std", std, b.s1_in["ctrl_posterior_std"], "posterior")
        mean, std = vae_encode_frames(s2.vae, b.s2_in["image_pm1"][None])
        yield compare("stage2/img_posterior_mean", mean, b.s2_in["img_posterior_mean"], "posterior")
        yield compare("stage2/img_posterior_std", std, b.s2_in["img_posterior_std"], "posterior")


@module_check
def vae_decodes(b: Bundle) -> Iterator[Result]:
    from motion_i2v_core.models.vae_frames import decode_frames as vae_decode_frames
    from motion_i2v_core.pipelines.common import LATENT_SCALE

    with torch.no_grad():
        lat = b.s1_out["final_latents"][0].transpose(0, 1) / LATENT_SCALE
        flow01 = vae_decode_frames(b.stage1.flow_vae, lat).transpose(0, 1)[None]
        yield compare("stage1/decoded_flow01 (from recorded latents)", flow01, b.s1_out["decoded_flow01"], "loop")
        lat = b.s2_out["final_latents"][0].transpose(0, 1) / LATENT_SCALE
        video = (vae_decode_frames(b.stage2.vae, lat) / 2 + 0.5).clamp(0, 1).transpose(0, 1)[None]
        yield compare("stage2/video (from recorded latents)", video, b.s2_out["video"], "video")


# ---------------------------------------------------------------- pipeline level


@pipeline_check
def scheduler_tables(b: Bundle) -> Iterator[Result]:
    from motion_i2v_core.schedulers import DDIMSchedule

    sched = DDIMSchedule(**_scheduler_kwargs(b))
    ts = torch.as_tensor(sched.timesteps(b.steps)).long()
    u = b.units
    yield compare("units/ddim_timesteps", ts, u["ddim_timesteps"], "exact")
    yield compare("units/alphas_cumprod", sched.alphas_cumprod, u["alphas_cumprod"], "exact")
    yield compare("units/ddim_alphas_cumprod_t", sched.alphas_cumprod[ts], u["ddim_alphas_cumprod_t"], "exact")
    prev = torch.stack([sched.alpha(sched.prev_timestep(ts.tolist(), k)) for k in range(len(ts))])
    yield compare("units/ddim_alphas_cumprod_prev", prev, u["ddim_alphas_cumprod_prev"], "exact")


@pipeline_check
def splat_unit_example(b: Bundle) -> Iterator[Result]:
    from motion_i2v_core.ops.splat import forward_splat

    u = b.units
    if "softsplat_example_in" not in u:
        return
    x, flow = u["softsplat_example_in"], u["softsplat_example_flow"]
    yield compare("units/softsplat_avg", forward_splat(x, flow, "avg"), u["softsplat_example_avg_out"], "splat")
    yield compare("units/softsplat_sum", forward_splat(x, flow, "sum"), u["softsplat_example_sum_out"], "splat")


def _hints(b: Bundle):
    """The bundle's drag input as MotionHints at the generation size (app scale factor 1)."""
    from motion_i2v_core.motion.hints import MotionHints

    import numpy as np

    tracks = b.tracks_info.get("tracks", b.config.get("tracks", []))
    painted = b.s1_in["brush_painted"]  # 255 = painted (movable)
    return MotionHints(
        tracks=[np.asarray(t, dtype=np.float64) for t in tracks],
        movable_mask=(painted / 255.0).float(),
        width=b.width,
        height=b.height,
        warnings=[],
    )


def _flow_unit(b: Bundle) -> int:
    return int(b.tracks_info.get("flow_unit", b.config.get("flow_unit")))


@pipeline_check
def stage1_preprocessing(b: Bundle) -> Iterator[Result]:
    from motion_i2v_core.motion.control import encode_control, sparse_flow_from_hints

    i = b.s1_in
    frames = i["stride"].shape[-1]
    sparse01, sparse_mask, brush_static = sparse_flow_from_hints(
        _hints(b), b.height, b.width, num_frames=frames, flow_unit=_flow_unit(b)
    )
    yield compare("stage1/brush_mask", brush_static, i["brush_mask"], "exact")
    yield compare("stage1/sparse_flow01", sparse01, i["sparse_flow01"], "exact")
    yield compare("stage1/sparse_mask", sparse_mask, i["sparse_mask"].expand_as(sparse_mask), "exact")
    with torch.no_grad():
        control = encode_control(b.stage1.flow_vae, sparse01, sparse_mask, noise=i["ctrl_posterior_eps"])
    yield compare("stage1/control_mask_8", control[:, 4:], i["control_mask_8"], "exact")
    yield compare("stage1/control_latent", control[:, :4], i["control_latent"], "posterior")
    yield compare("stage1/control", control, i["control"], "posterior")


@pipeline_check
def stage1_sampling(b: Bundle) -> Iterator[Result]:
    from motion_i2v_core.models.vae_frames import decode_frames as vae_decode_frames
    from motion_i2v_core.pipelines.common import LATENT_SCALE
    from motion_i2v_core.pipelines.common import reference_latent
    from motion_i2v_core.pipelines.stage1 import predict_flow

    i, o = b.s1_in, b.s1_out
    with torch.no_grad():
        latent = reference_latent(b.stage1.image_vae, i["image01"], i["img_posterior_eps"])
    yield compare("stage1/image_latent", latent, i["image_latent"], "posterior")
    result = predict_flow(
        b.stage1,
        i["image01"],
        i["text_cond"],
        i["text_uncond"],
        control=i["control"],
        static_mask=i["brush_mask"][0, 0, 0],
        num_frames=i["stride"].shape[-1] + 1,
        stride=[float(s) for s in i["stride"][0]],
        steps=b.steps,
        guidance=b.guidance,
        noise=i["init_noise_8ch"][:, :4],
        image_noise=i["img_posterior_eps"],
        official_compat=True,
        keep_step_latents=True,
    )
    yield compare("stage1/step_latents", torch.stack(result.step_latents), o["step_latents"], "loop")
    yield compare("stage1/final_latents", result.latents, o["final_latents"], "loop")
    with torch.no_grad():
        flow01 = vae_decode_frames(b.stage1.flow_vae, result.latents[0].transpose(0, 1) / LATENT_SCALE)
    yield compare("stage1/decoded_flow01", flow01.transpose(0, 1)[None], o["decoded_flow01"], "loop")
    yield compare("stage1/flow_pre", result.flow, o["flow_pre"], "loop")


@pipeline_check
def stage2_sampling(b: Bundle) -> Iterator[Result]:
    from motion_i2v_core.pipelines.stage2 import latent_static_mask, render_video

    i, o = b.s2_in, b.s2_out
    image01 = b.s1_in["image01"]
    yield compare("stage2/image_pm1", image01 * 2 - 1, i["image_pm1"], "exact")
    static = i["brush_mask"][0, 0, 0]
    yield compare("stage2/brush_mask_8", latent_static_mask(static), i["brush_mask_8"], "exact")
    result = render_video(
        b.stage2,
        image01,
        i["text_cond"],
        i["text_uncond"],
        b.s1_out["flow_pre"],
        static_mask=static,
        steps=b.steps,
        guidance=b.guidance,
        noise=i["init_latents"],
        image_noise=i["img_posterior_eps"],
        official_compat=True,
        keep_step_latents=True,
    )
    yield compare("stage2/image_latent", result.latents[:, :, :1], i["image_latent"], "posterior")
    yield compare("stage2/step_latents", torch.stack(result.step_latents), o["step_latents"], "loop")
    yield compare("stage2/final_latents", result.latents, o["final_latents"], "loop")
    video = result.frames.permute(3, 0, 1, 2)[None]  # (F,H,W,3) -> (1,3,F,H,W)
    yield compare("stage2/video", video, o["video"], "video")


def _scheduler_kwargs(b: Bundle) -> dict:
    s = b.meta.get("scheduler", {})
    if s.get("beta_schedule", "linear") != "linear":
        raise ValueError(f"bundle scheduler beta_schedule {s['beta_schedule']!r} is not supported (linear only)")
    return {
        k: s[k] for k in ("beta_start", "beta_end", "steps_offset") if k in s
    }


# ---------------------------------------------------------------- runner


def run(bundle_dir: str | Path, level: str = "all", only: Optional[str] = None, out=print) -> List[Result]:
    bundle = Bundle(bundle_dir)
    checks: List[CheckFn] = []
    if level in ("module", "all"):
        checks += MODULE_CHECKS
    if level in ("pipeline", "all"):
        checks += PIPELINE_CHECKS
    results: List[Result] = []
    for check in checks:
        start = time.perf_counter()
        try:
            for result in check(bundle):
                if only and only not in result.name:
                    continue
                results.append(result)
                out(result.line())
        except Exception as exc:  # a broken check is a failed quantity, not a crashed run
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            result = Result(check.__name__, float("nan"), float("nan"), 0.0, "rel", error=detail)
            results.append(result)
            out(result.line())
        out(f"      ({check.__name__}: {time.perf_counter() - start:.1f} s)")
    failed = sum(not r.passed for r in results)
    out(f"parity: {len(results) - failed} passed, {failed} failed")
    return results
