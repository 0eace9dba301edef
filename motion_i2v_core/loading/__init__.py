"""Reading, validating, converting and assembling Motion-I2V weights (no ComfyUI imports)."""

from motion_i2v_core.loading.validate import CheckpointError, check_state_dict, identify_state_dict  # noqa: F401
from motion_i2v_core.loading.files import read_state_dict, read_metadata  # noqa: F401
from motion_i2v_core.loading.ldm import convert_ldm_unet_state_dict, convert_ldm_vae_state_dict, load_ldm_checkpoint  # noqa: F401
from motion_i2v_core.loading.official import Stage1Models, Stage2Models, load_stage1, load_stage2  # noqa: F401
from motion_i2v_core.loading.convert import component_info, convert_official_tree, load_component, save_component  # noqa: F401
from motion_i2v_core.loading.convert import load_converted_stage1, load_converted_stage2  # noqa: F401
from motion_i2v_core.loading.official import official_paths  # noqa: F401
from motion_i2v_core.loading.weight_sets import WeightSet, find_weight_sets, load_weight_set  # noqa: F401
