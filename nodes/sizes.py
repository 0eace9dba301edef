"""Widget inputs shared by several nodes: generation size and frame count."""

from comfy_api.latest import io

from motion_i2v_core.motion import image_prep
from motion_i2v_core.pipelines.common import MAX_FRAMES
SIZE_STEP = image_prep.SIZE_MULTIPLE  # 64: the UNet needs latents that are multiples of 8


def size_inputs():
    return [
        io.Int.Input("width", default=512, min=64, max=2048, step=SIZE_STEP,
                     tooltip="Video width in pixels (multiple of 64). The official models were trained at 512x320."),
        io.Int.Input("height", default=320, min=64, max=2048, step=SIZE_STEP,
                     tooltip="Video height in pixels (multiple of 64). The image is resized to cover it and centre-cropped."),
    ]


def frames_input():
    return io.Int.Input("num_frames", default=16, min=2, max=MAX_FRAMES,
                        tooltip=f"Frames of the video, the reference image included (2 to {MAX_FRAMES}).")


def long_frames_input():
    """Frame count of a motion that may be longer than one render (Render Long Shot chains segments)."""
    from motion_i2v_core.pipelines.long_shot import MAX_LONG_FRAMES

    return io.Int.Input("num_frames", default=16, min=2, max=MAX_LONG_FRAMES,
                        tooltip=f"Frames of the motion, the reference image included. Render Video takes up to "
                                f"{MAX_FRAMES}; Render Long Shot chains longer ones (up to {MAX_LONG_FRAMES}).")


def check_size(width: int, height: int) -> None:
    """Both sides multiples of 64 (API clients can send any value; the UNet halves the latent 3 times)."""
    try:
        image_prep.check_size(height, width)
    except ValueError as e:
        raise ValueError(f"Motion-I2V size {width}x{height}: {e}") from None
