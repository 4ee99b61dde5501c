import pytest

from model import ConfigError, VTFPARConfig, get_config, list_presets


def test_presets_are_data_and_overridable():
    assert {"tiny", "vtfpar-b16", "vtfpar-l14"} <= set(list_presets())
    b16 = get_config("vtfpar-b16")
    assert (b16.clip_arch, b16.taps, b16.side_width, b16.side_heads, b16.frames, b16.fusion_depth) == (
        "ViT-B-16-quickgelu",
        (0, 3, 6, 9, 11),
        240,
        6,
        6,
        1,
    )
    assert b16.mean == b16.std == (0.5, 0.5, 0.5)
    eight = get_config("vtfpar-b16", frames=8, side_width=256, side_heads=8)
    assert (eight.frames, eight.side_width) == (8, 256)
    assert VTFPARConfig.from_dict(eight.to_dict()) == eight


def test_invalid_overrides_fail_clearly():
    with pytest.raises(ConfigError, match="unknown config field"):
        get_config("tiny", depth=3)
    with pytest.raises(ConfigError, match="divisible"):
        get_config("tiny", side_heads=5)
    with pytest.raises(ConfigError, match="unknown preset"):
        get_config("vtfpar-huge")
