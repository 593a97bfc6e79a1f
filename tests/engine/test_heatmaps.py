"""Class-activation heatmaps: they light up what drove a class, for CNNs, channels-last
stages and ViT tokens alike, and leave the model exactly as they found it."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision.models import VisionTransformer
from torchvision.transforms import v2 as T

from finetune_studio.engine.backbones import build_model
from finetune_studio.engine.errors import UserFacingError
from finetune_studio.engine.freezing import FreezePlan, apply_freeze_plan, hold_frozen_modules
from finetune_studio.engine.heads import replace_head
from finetune_studio.engine.images import load_for_model
from finetune_studio.engine.preprocessing import Preprocessing
from finetune_studio.engine.review.heatmaps import HeatmapError, explain, heatmap_layer
from support.tiny import TINY, TINY_PREPROCESSING

SQUARE_PRE = Preprocessing(32, 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "bilinear")
RED, BLUE, GREY = (200, 40, 40), (40, 40, 200), (128, 128, 128)


def _colour_detector() -> nn.Conv2d:
    """Channel 0 sees red (R - B), channel 1 sees blue (B - R), pixel by pixel."""
    conv = nn.Conv2d(3, 2, 3, padding=1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[0, 0, 1, 1], conv.weight[0, 2, 1, 1] = 1.0, -1.0
        conv.weight[1, 2, 1, 1], conv.weight[1, 0, 1, 1] = 1.0, -1.0
    return conv


def _identity_linear(scale: float) -> nn.Linear:
    layer = nn.Linear(2, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(2) * scale)
        layer.bias.zero_()
    return layer


class RedOrBlue(nn.Module):
    """Class 0 is "there is red", class 1 "there is blue": we know where each looks."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(_colour_detector(), nn.ReLU(), nn.AvgPool2d(4))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = _identity_linear(4.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


class ChannelsLastRedOrBlue(nn.Module):
    """The same decision through a Swin-like stage that works on (B, H, W, C)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(_colour_detector(), nn.ReLU(), nn.AvgPool2d(4))
        self.mix = _identity_linear(1.0)  # a channels-last layer, as in Swin's MLPs
        self.fc = _identity_linear(4.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = self.stem(x).permute(0, 2, 3, 1)
        return self.fc(torch.relu(self.mix(grid)).mean(dim=(1, 2)))


def _tiny_vit() -> VisionTransformer:
    torch.manual_seed(0)
    model = VisionTransformer(
        image_size=32, patch_size=8, num_layers=4, num_heads=2, hidden_dim=16, mlp_dim=16
    )
    replace_head(model, "heads.head", 2)  # as for a user's classes (torchvision's is zeros)
    return model.eval()


def _red_left_blue_right(path: Path, size: tuple[int, int] = (32, 32)) -> Path:
    """A red square in the left half and a blue one in the right half."""
    pixels = np.full((size[1], size[0], 3), GREY, np.uint8)
    pixels[12:20, 2:10] = RED
    pixels[12:20, 22:30] = BLUE
    Image.fromarray(pixels).save(path)
    return path


def _peak(heatmap: np.ndarray) -> tuple[int, int]:
    row, column = np.unravel_index(int(heatmap.argmax()), heatmap.shape)
    return int(row), int(column)


def _assert_points_at_squares(maps: dict[int, np.ndarray]) -> None:
    red, blue = maps[0], maps[1]
    assert 8 <= _peak(red)[0] < 24 and _peak(red)[1] < 16
    assert 8 <= _peak(blue)[0] < 24 and _peak(blue)[1] >= 16
    assert red[:, :16].mean() > 10 * red[:, 16:].mean()
    assert blue[:, 16:].mean() > 10 * blue[:, :16].mean()


def test_each_class_map_lights_up_what_drove_that_class(tmp_path: Path) -> None:
    picture = _red_left_blue_right(tmp_path / "both.png")

    explanation = explain(RedOrBlue().eval(), "fc", SQUARE_PRE, picture, [0, 1])

    assert explanation.layer == "features"
    _assert_points_at_squares(explanation.maps)
    assert explanation.picture[15, 5].tolist() == list(RED)
    assert explanation.picture[15, 25].tolist() == list(BLUE)


def test_channels_last_stages_are_read_as_grids(tmp_path: Path) -> None:
    picture = _red_left_blue_right(tmp_path / "both.png")

    explanation = explain(ChannelsLastRedOrBlue().eval(), "fc", SQUARE_PRE, picture, [0, 1])

    assert explanation.layer == "mix"
    _assert_points_at_squares(explanation.maps)


def test_vit_tokens_give_maps_from_the_last_block_that_reaches_the_class_token(
    tmp_path: Path,
) -> None:
    picture = _red_left_blue_right(tmp_path / "both.png")
    model = _tiny_vit()

    explanation = explain(model, "heads.head", SQUARE_PRE, picture, [1, 0])

    # The head reads the class token only: the last block's patch tokens reach nothing.
    assert explanation.layer == "encoder.layers.encoder_layer_2"
    assert heatmap_layer(model, "heads.head", size=32) == explanation.layer
    for heatmap in explanation.maps.values():
        assert heatmap.shape == (32, 32) and heatmap.dtype == np.float32
        assert heatmap.min() >= 0.0 and heatmap.max() == pytest.approx(1.0)
        assert heatmap.std() > 0.01
    assert sum(explanation.probabilities) == pytest.approx(1.0)


def test_a_real_picture_is_shown_as_the_model_saw_it(tmp_path: Path) -> None:
    path = tmp_path / "wide.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(path)
    built = build_model(TINY, 3, weights="default")
    pre = TINY_PREPROCESSING

    explanation = explain(built.model.eval(), built.head_path, pre, path, [2, 0])

    expected = np.asarray(T.CenterCrop(pre.crop_size)(load_for_model(path, pre.resize_size)))
    assert explanation.picture.dtype == np.uint8
    assert explanation.picture.shape == (pre.crop_size, pre.crop_size, 3)
    assert np.abs(explanation.picture.astype(int) - expected).max() <= 1
    assert sorted(explanation.maps) == [0, 2]
    assert all(m.shape == (pre.crop_size, pre.crop_size) for m in explanation.maps.values())
    assert len(explanation.probabilities) == 3
    assert explanation.layer == heatmap_layer(built.model, built.head_path, pre.crop_size)


def _hooks(model: nn.Module) -> int:
    kinds = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return sum(len(getattr(module, kind)) for module in model.modules() for kind in kinds)


def test_the_model_is_left_exactly_as_it_was(tmp_path: Path) -> None:
    picture = _red_left_blue_right(tmp_path / "both.png")
    built = build_model(TINY, 2, weights="default")
    model = built.model
    apply_freeze_plan(model, built.head_path, FreezePlan("head"))
    model.train()
    hold_frozen_modules(model)  # a training model with frozen parts in eval mode
    state = {k: v.clone() for k, v in model.state_dict().items()}
    trainable = {n: p.requires_grad for n, p in model.named_parameters()}
    modes = {n: m.training for n, m in model.named_modules()}

    explain(model, built.head_path, TINY_PREPROCESSING, picture, [0, 1])

    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert {n: p.requires_grad for n, p in model.named_parameters()} == trainable
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert all(p.grad is None for p in model.parameters())
    assert _hooks(model) == 0


def test_works_inside_inference_mode(tmp_path: Path) -> None:
    picture = _red_left_blue_right(tmp_path / "both.png")
    model = RedOrBlue().eval()
    outside = explain(model, "fc", SQUARE_PRE, picture, [0, 1])

    with torch.inference_mode():
        inside = explain(model, "fc", SQUARE_PRE, picture, [0, 1])

    assert all(np.array_equal(outside.maps[c], inside.maps[c]) for c in (0, 1))


def test_predictions_in_another_thread_are_unaffected(tmp_path: Path) -> None:
    picture = _red_left_blue_right(tmp_path / "both.png")
    model = _tiny_vit()
    batch = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = model(batch)
    reference = explain(model, "heads.head", SQUARE_PRE, picture, [0, 1])
    explanations = []

    def explain_repeatedly() -> None:
        explanations.extend(
            explain(model, "heads.head", SQUARE_PRE, picture, [0, 1]) for _ in range(10)
        )

    worker = threading.Thread(target=explain_repeatedly)
    worker.start()
    with torch.inference_mode():
        while worker.is_alive():
            assert torch.equal(model(batch), expected)
    worker.join()

    assert len(explanations) == 10
    for explanation in explanations:
        assert all(np.allclose(explanation.maps[c], reference.maps[c]) for c in (0, 1))
    assert _hooks(model) == 0


def test_a_network_without_positions_says_so(tmp_path: Path) -> None:
    picture = _red_left_blue_right(tmp_path / "both.png")
    flat = nn.Sequential(
        nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 8), nn.ReLU()), nn.Linear(8, 2)
    )

    with pytest.raises(HeatmapError, match="no heatmap"):
        explain(flat, "1", SQUARE_PRE, picture, [0])
    assert _hooks(flat) == 0


def test_an_unreadable_picture_is_a_user_facing_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.png"
    path.write_text("not a picture")

    with pytest.raises(UserFacingError, match=r"broken\.png"):
        explain(RedOrBlue().eval(), "fc", SQUARE_PRE, path, [0])
