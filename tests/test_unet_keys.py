"""State-dict key names and shapes of the SD1.5-size UNets equal the official lists (built on meta)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from motion_i2v_core.models.config import UNetConfig
from motion_i2v_core.models.unet3d import FlowUNet, RenderUNet
from harness.reference import KEYS



def read_key_list(path: Path) -> dict[str | None, dict[str, tuple[int, ...]]]:
    """Parse ``key<TAB>shape`` lines grouped by ``## [X] ...`` section headers (None before any header)."""
    sections: dict[str | None, dict[str, tuple[int, ...]]] = {}
    current = None
    for line in path.read_text().splitlines():
        header = re.match(r"^##\s*\[(\w+)\]", line)
        if header:
            current = header.group(1)
            continue
        if not line.strip() or line.startswith("#"):
            continue
        key, shape = line.split("\t")
        sections.setdefault(current, {})[key] = tuple(int(d) for d in re.findall(r"\d+", shape))
    return sections


def shapes_of(module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def assert_same_keys(ours: dict, official: dict) -> None:
    missing = sorted(set(official) - set(ours))
    unexpected = sorted(set(ours) - set(official))
    wrong = {k: (ours[k], official[k]) for k in official if k in ours and ours[k] != official[k]}
    assert not missing, f"{len(missing)} missing keys, e.g. {missing[:5]}"
    assert not unexpected, f"{len(unexpected)} unexpected keys, e.g. {unexpected[:5]}"
    assert not wrong, f"{len(wrong)} mis-shaped keys (ours, official), e.g. {list(wrong.items())[:5]}"


def test_stage1_flow_unet_with_controlnet_matches_official_keys():
    sections = read_key_list(KEYS / "stage1_keys.txt")
    official = {**sections["A"], **sections["B"]}
    assert len(sections["A"]) == 1278 and len(sections["B"]) == 584
    assert all(k.startswith("controlnet.") for k in sections["B"])
    model = FlowUNet(UNetConfig.sd15_flow(), device="meta")
    assert_same_keys(shapes_of(model), official)


def test_stage1_flow_unet_without_controlnet_is_section_a():
    sections = read_key_list(KEYS / "stage1_keys.txt")
    model = FlowUNet(UNetConfig.sd15_flow(), with_controlnet=False, device="meta")
    assert_same_keys(shapes_of(model), sections["A"])


def test_stage2_render_unet_matches_official_keys():
    official = read_key_list(KEYS / "stage2_unet_keys_all.txt")[None]
    assert len(official) == 1274
    model = RenderUNet(UNetConfig.sd15_render(), device="meta")
    assert_same_keys(shapes_of(model), official)


def test_pe_buffers_are_persistent_and_counted():
    model = RenderUNet(UNetConfig.sd15_render(), device="meta")
    pe_keys = [k for k in model.state_dict() if k.endswith("pos_encoder.pe")]
    assert len(pe_keys) == 42  # 21 motion modules x 2 attention blocks
    assert all(model.state_dict()[k].shape[:2] == (1, 32) for k in pe_keys)
