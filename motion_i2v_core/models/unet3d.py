"""The two Motion-I2V UNets: stage-1 ``FlowUNet`` and stage-2 ``RenderUNet``.

Both are the SD1.5 UNet inflated to video: per-frame convs / GroupNorms / spatial transformers, and a
motion module after every layer (mid block included). Inputs and outputs are ``(B, C, F, h, w)``;
inside, tensors are frame-batched ``(B*F, C, h, w)``.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from motion_i2v_core.models.config import UNetConfig
from motion_i2v_core.models.controlnet import ControlNet3D
from motion_i2v_core.models.embeddings import batch_timesteps
from motion_i2v_core.models.motion_module import FlowWarpContext
from motion_i2v_core.models.operations import torch_ops
from motion_i2v_core.models.resnet import from_frames, to_frames
from motion_i2v_core.models.unet_blocks import build_up_blocks
from motion_i2v_core.models.unet_encoder import UNetEncoder


class UNet3D(UNetEncoder):
    """The down half (``UNetEncoder``) + up blocks, ``conv_norm_out``, ``conv_out``."""

    def __init__(self, cfg: UNetConfig, dtype=None, device=None, operations=torch_ops, compute_dtype=None):
        super().__init__(cfg, dtype=dtype, device=device, operations=operations, compute_dtype=compute_dtype)
        c0 = cfg.block_out_channels[0]
        self.up_blocks = build_up_blocks(cfg, dtype=dtype, device=device, operations=operations)
        self.conv_norm_out = operations.GroupNorm(
            cfg.norm_num_groups, c0, eps=cfg.norm_eps, affine=True, dtype=dtype, device=device
        )
        self.conv_out = operations.Conv2d(c0, cfg.out_channels, 3, padding=1, dtype=dtype, device=device)

    def _check_inputs(self, sample: torch.Tensor, context: torch.Tensor) -> None:
        cfg = self.config
        if sample.ndim != 5 or sample.shape[1] != cfg.in_channels:
            raise ValueError(
                f"sample must be (B, {cfg.in_channels}, F, h, w), got {tuple(sample.shape)}"
            )
        if context.ndim != 3 or context.shape[0] != sample.shape[0] or context.shape[2] != cfg.cross_attention_dim:
            raise ValueError(
                f"text context must be ({sample.shape[0]}, tokens, {cfg.cross_attention_dim}), got {tuple(context.shape)}"
            )

    def _up(self, x, skips, temb, context, frames, warp):
        for block in self.up_blocks:
            n = len(block.resnets)
            # Upsample to the size of the next skip (odd latent sizes do not double exactly).
            size = tuple(skips[-n - 1].shape[-2:]) if block.upsamplers is not None else None
            x = block(x, skips, temb, context, frames, warp, upsample_size=size)
        return self.conv_out(F.silu(self.conv_norm_out(x), inplace=True))


class FlowUNet(UNet3D):
    """Stage-1 flow UNet: ``[image latent, noisy flow latent]`` (8 ch) -> flow-latent eps (4 ch).

    Per-frame conditioning = time embedding + ``stride_embedding`` of each frame's offset. The ControlNet
    child ``controlnet`` adds its residuals to the 12 skips and to the mid-block output (x ``control_scale``).
    """

    def __init__(
        self, cfg: UNetConfig, with_controlnet: bool = True, dtype=None, device=None, operations=torch_ops,
        compute_dtype=None,
    ):
        if not cfg.stride_embedding:
            raise ValueError("FlowUNet needs a config with stride_embedding=True (e.g. UNetConfig.sd15_flow())")
        kw = dict(dtype=dtype, device=device, operations=operations, compute_dtype=compute_dtype)
        super().__init__(cfg, **kw)
        self.controlnet = ControlNet3D(cfg, **kw) if with_controlnet else None
        self.control_scale = 1.0

    def forward(
        self,
        sample: torch.Tensor,
        timestep,
        stride,
        context: torch.Tensor,
        control: Optional[torch.Tensor] = None,
        return_control_residuals: bool = False,
    ):
        """
        :param sample: ``(B, 8, F, h, w)``, channels 0-3 image latent, 4-7 noisy flow latent.
        :param timestep: 0-d, ``(1,)`` or ``(B,)`` tensor on the sample's device (no host copy, no
            recompilation per step under ``torch.compile``), or a number.
        :param stride: ``(B0, F)`` frame offsets, repeated along the batch.
        :param context: text ``(B, 77, D)``.
        :param control: ``(B, 5, F, h, w)`` or None (None skips the ControlNet; the official app always passes one).
        :return: eps ``(B, 4, F, h, w)``, or ``(eps, (down_residuals, mid_residual))`` with
            ``return_control_residuals`` (residuals ``(B, C, F, h, w)``, empty list / None without control).
        """
        self._check_inputs(sample, context)
        batch, _, frames = sample.shape[:3]
        temb = self.frame_embedding(timestep, stride, batch, frames, sample.device)
        context = context.to(self.dtype)

        down_res, mid_res = [], None
        if control is not None:
            if self.controlnet is None:
                raise ValueError("control was given but this FlowUNet was built without a ControlNet")
            down_res, mid_res = self.controlnet.frame_residuals(
                sample, timestep, stride, context, control, scale=self.control_scale
            )

        x, skips = self.encode(self.conv_in(to_frames(sample.to(self.dtype))), temb, context, frames)
        if down_res:
            skips = [s + r for s, r in zip(skips, down_res)]
        if mid_res is not None:
            x = x + mid_res
        eps = from_frames(self._up(x, skips, temb, context, frames, None), frames)
        if return_control_residuals:
            res = [from_frames(r, frames) for r in down_res]
            return eps, (res, from_frames(mid_res, frames) if mid_res is not None else None)
        return eps


class RenderUNet(UNet3D):
    """Stage-2 render UNet: noisy video latent (frame 0 = clean reference) -> eps, guided by the flow.

    Frame 0 gets the t=1 time embedding. With a flow every motion module uses the motion-augmented
    temporal attention (reference features forward-splatted along the flow).
    """

    def __init__(self, cfg: UNetConfig, dtype=None, device=None, operations=torch_ops, compute_dtype=None):
        if cfg.stride_embedding:
            raise ValueError("RenderUNet has no stride embedding: use a config with stride_embedding=False")
        super().__init__(cfg, dtype=dtype, device=device, operations=operations, compute_dtype=compute_dtype)

    def _check_flow(self, flow: torch.Tensor, batch: int, frames: int) -> torch.Tensor:
        if flow.ndim == 4:
            flow = flow[None]
        if flow.ndim != 5 or flow.shape[2] != 2 or flow.shape[1] != frames or flow.shape[0] not in (1, batch):
            raise ValueError(
                f"flow must be (1 or {batch}, {frames}, 2, H, W) in image pixels (frame 0 = reference), "
                f"got {tuple(flow.shape)}"
            )
        return flow

    def forward(
        self,
        sample: torch.Tensor,
        timestep,
        context: torch.Tensor,
        flow: Optional[torch.Tensor] = None,
        official_compat: bool = False,
    ) -> torch.Tensor:
        """
        :param sample: ``(B, 4, F, h, w)``; frame 0 is the clean reference latent.
        :param timestep: 0-d, ``(1,)`` or ``(B,)`` tensor on the sample's device, or a number; frame 0
            always uses t = 1.
        :param context: text ``(B, 77, D)``.
        :param flow: ``(B_f, F, 2, H_img, W_img)`` pixels (B_f = 1 or B; a 4-D ``(F, 2, H, W)`` means B_f = 1),
            or a ``FlowWarpContext`` of one (its resized copies then serve every call of a run),
            or None for plain temporal attention.
        :param official_compat: warp with the official batch mixing (quirk Q1); needs the CFG batch
            ``[uncond, cond]`` in one call.
        :return: eps ``(B, 4, F, h, w)``.
        """
        self._check_inputs(sample, context)
        batch, _, frames = sample.shape[:3]
        dtype = self.dtype
        warp = flow if isinstance(flow, FlowWarpContext) else None
        if flow is not None:
            flow = self._check_flow(flow.flow if warp is not None else flow, batch, frames)
            pe_rows = self.config.motion_module_pe_max_len
            if 2 * frames - 1 > pe_rows:
                raise ValueError(
                    f"{frames} frames need 2F-1 = {2 * frames - 1} temporal positions but the motion modules have "
                    f"{pe_rows}: use at most {(pe_rows + 1) // 2} frames"
                )
            if warp is None:
                warp = FlowWarpContext(flow, official_compat)
            elif warp.official_compat != bool(official_compat):
                raise ValueError("the FlowWarpContext was made with another official_compat than this call's")

        temb = self.frame_embedding(timestep, None, batch, frames, sample.device)
        context = context.to(dtype)
        x, skips = self.encode(self.conv_in(to_frames(sample.to(dtype))), temb, context, frames, warp)
        return from_frames(self._up(x, skips, temb, context, frames, warp), frames)

    def frame_embedding(self, timestep, stride, batch: int, frames: int, device) -> torch.Tensor:
        """``(B*F, D)``: the time embedding of ``timestep``, except frame 0 (the clean reference), which always
        gets that of t = 1."""
        emb_t = self.time_embedding(self.sinusoid(batch_timesteps(timestep, batch, device)))
        emb_ref = self.time_embedding(self.sinusoid(torch.ones(1, device=device)))
        emb = torch.cat(
            [emb_ref[:, None].expand(batch, 1, -1), emb_t[:, None].expand(batch, frames - 1, -1)], dim=1
        )
        return emb.reshape(batch * frames, -1)
