"""Motion-I2V core: pure-torch models, ops and loaders (no ComfyUI imports)."""
