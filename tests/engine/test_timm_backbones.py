"""timm's models as backbones: naming, weights (cache, download, file), preprocessing,
and the app's generic machinery on them (freezing, cached features, heatmaps, export).

timm's tiny ``test_*`` models stand in for real ones; their "pretrained" weights are
made here and put in a temporary Hugging Face cache or served by a local Hub.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from finetune_studio.engine.backbones import backbone_infos, build_model, get_spec
from finetune_studio.engine.errors import UserFacingError, WeightsError
from finetune_studio.engine.export import load_model_folder, save_model_folder
from finetune_studio.engine.feature_store import FeatureStore
from finetune_studio.engine.features import cache_blocker, find_feature_split
from finetune_studio.engine.freezing import FreezePlan, apply_freeze_plan, hold_frozen_modules
from finetune_studio.engine.predict import Predictor
from finetune_studio.engine.review.heatmaps import candidate_layers, explain
from finetune_studio.engine.runs import RunStore
from finetune_studio.engine.training import Trainer
from finetune_studio.engine.weights import DownloadCancelled
from support.runs import drain
from support.timm_hub import hub_file, put_in_hub_cache, random_state, serve_hub
from support.tiny import tiny_recipe_for

timm = pytest.importorskip("timm")

RESNET = "test_resnet.r160_in1k"
VIT = "test_vit.r160_in1k"


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hf-hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    # Anything that tried the network would fail here: nothing listens on port 9 of
    # an unroutable documentation address.
    monkeypatch.setenv("HF_ENDPOINT", "http://192.0.2.1:9")
    return cache


def test_a_timm_backbone_takes_its_numbers_from_timms_pretrained_config() -> None:
    spec = get_spec(f"timm/{RESNET}")
    model = spec.build()

    assert spec.family == "timm: resnet" and spec.head_path == "fc"
    assert spec.num_params == sum(p.numel() for p in model.parameters())
    pre = spec.preprocessing
    assert (pre.crop_size, pre.resize_size) == (160, 168)  # crop_pct 0.95
    assert (pre.mean, pre.std, pre.interpolation) == ((0.5,) * 3, (0.5,) * 3, "bilinear")
    assert get_spec("timm/resnet18.a1_in1k").preprocessing.interpolation == "bicubic"


def test_weights_come_from_the_hugging_face_cache_without_the_network(hub_cache: Path) -> None:
    state = random_state(VIT, seed=3)
    cached = put_in_hub_cache(hub_cache, VIT, state)
    spec = get_spec(f"timm/{VIT}")

    built = build_model(f"timm/{VIT}", 4)

    assert spec.weights_status() == "cached" and spec.cached_weights_path() == cached
    weight = "blocks.1.mlp.fc1.weight"
    assert torch.equal(built.model.state_dict()[weight], state[weight])
    assert built.head_path == "head" and built.model(torch.randn(2, 3, 160, 160)).shape == (2, 4)


def test_weights_download_on_first_use_with_progress(
    hub_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An older upload: only pytorch_model.bin, so model.safetensors answers 404 first.
    state = random_state(RESNET, seed=5)
    torch.save(state, hub_file(tmp_path / "hub", RESNET, "pytorch_model.bin"))
    spec = get_spec(f"timm/{RESNET}")
    assert spec.weights_status() == "download"
    progress: list[tuple[int, int]] = []

    with serve_hub(tmp_path / "hub") as endpoint:
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        built = build_model(f"timm/{RESNET}", 2, progress=lambda d, t: progress.append((d, t)))

    assert progress[-1][0] == progress[-1][1] > 0
    assert spec.weights_status() == "cached"
    assert torch.equal(built.model.state_dict()["conv1.0.weight"], state["conv1.0.weight"])


def test_a_cancelled_download_keeps_nothing(
    hub_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_file(random_state(RESNET), hub_file(tmp_path / "hub", RESNET, "model.safetensors"))
    cancel = threading.Event()
    cancel.set()

    with serve_hub(tmp_path / "hub") as endpoint:
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        with pytest.raises(DownloadCancelled):
            build_model(f"timm/{RESNET}", 2, cancel=cancel)

    assert get_spec(f"timm/{RESNET}").weights_status() == "download"


def test_no_network_says_where_to_put_the_file(
    hub_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as unreachable:
        unreachable.bind(("127.0.0.1", 0))
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{unreachable.getsockname()[1]}")
        with pytest.raises(WeightsError) as caught:
            build_model(f"timm/{RESNET}", 2)

    message = str(caught.value)
    assert "Could not download" in message and "timm/test_resnet.r160_in1k" in message
    destination = get_spec(f"timm/{RESNET}").weights_source.own_copy("model.safetensors")
    assert str(destination) in message


def test_hf_hub_offline_is_obeyed_with_the_same_advice(
    hub_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match="HF_HUB_OFFLINE") as caught:
        build_model(f"timm/{RESNET}", 2)
    destination = get_spec(f"timm/{RESNET}").weights_source.own_copy("model.safetensors")
    assert str(destination) in str(caught.value)


def test_weights_from_a_file_need_no_cache_and_no_network(hub_cache: Path, tmp_path: Path) -> None:
    state = random_state(VIT, seed=7)
    save_file(state, tmp_path / "vit.safetensors")

    model = build_model(f"timm/{VIT}", 3, weights=str(tmp_path / "vit.safetensors")).model

    assert torch.equal(
        model.state_dict()["patch_embed.proj.weight"], state["patch_embed.proj.weight"]
    )


def test_bad_timm_names_get_one_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UserFacingError, match=r"Did you mean timm/resnet18\."):
        get_spec("timm/resnet18.a1_in1kk")
    with pytest.raises(UserFacingError, match="no single classifier"):
        get_spec("timm/deit_tiny_distilled_patch16_224.fb_in1k")
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(UserFacingError, match=r"^timm/resnet50.a1_in1k needs the timm package"):
        get_spec("timm/resnet50.a1_in1k")  # say, a model folder made where timm was installed
    assert not [i for i in backbone_infos(include_timm=True) if i.name.startswith("timm/")]


def test_the_list_offers_every_usable_pretrained_timm_model(hub_cache: Path) -> None:
    put_in_hub_cache(hub_cache, "resnet18.a1_in1k", {"unused": torch.zeros(1)})
    infos = {info.name: info for info in backbone_infos(include_timm=True)}

    resnet = infos["timm/resnet18.a1_in1k"]
    assert (resnet.family, resnet.input_size, resnet.weights) == ("timm: resnet", 224, "cached")
    assert resnet.num_params is None and not resnet.default
    assert infos["timm/resnet50.a1_in1k"].weights == "download"
    assert "timm/deit_tiny_distilled_patch16_224.fb_in1k" not in infos  # two heads
    assert not [name for name in infos if name.startswith("timm/test_")]
    assert not [info for info in backbone_infos() if info.name.startswith("timm/")]


@pytest.mark.parametrize(
    ("name", "last_two"),
    [
        (RESNET, ["layer3", "layer4"]),
        (VIT, ["blocks.4", "blocks.5"]),  # of 6
        ("test_convnext.r160_in1k", ["stages.2", "stages.3"]),
    ],
)
def test_last_blocks_head_only_features_and_heatmaps_work_on_timm_families(
    name: str, last_two: list[str], tmp_path: Path
) -> None:
    built = build_model(f"timm/{name}", 3, weights="none")
    model, head = built.model, built.head_path
    apply_freeze_plan(model, head, FreezePlan("last:2"))
    trained = {n.rsplit(".", 1)[0] for n, p in model.named_parameters() if p.requires_grad}
    assert {path for path in trained if path.startswith(tuple(last_two))}
    assert all(path.startswith((*last_two, head)) or "norm" in path for path in trained)

    apply_freeze_plan(model, head, FreezePlan("head"))
    model.train()
    hold_frozen_modules(model)
    assert cache_blocker(model, find_feature_split(model, head)) is None

    picture = tmp_path / "picture.png"
    from support.pictures import photo

    photo("chelsea").resize((200, 150)).save(picture)
    explanation = explain(model.eval(), head, get_spec(f"timm/{name}").preprocessing, picture, [0])
    assert explanation.maps[0].shape == (160, 160)
    assert explanation.layer in candidate_layers(model, head)


def test_cached_features_follow_the_timm_weights_file(hub_cache: Path, tmp_path: Path) -> None:
    store = FeatureStore(tmp_path / "features")
    spec = get_spec(f"timm/{RESNET}")
    put_in_hub_cache(hub_cache, RESNET, random_state(RESNET, seed=1))

    def key(weights: str) -> str:
        return store.feature_model_key(spec, weights, "fc", spec.preprocessing, "None", 0)

    pretrained = key("default")
    assert pretrained != key("none")
    cached = spec.cached_weights_path()
    assert cached is not None
    save_file(random_state(RESNET, seed=2), cached)  # new weights, same place
    assert key("default") != pretrained


def test_a_timm_model_folder_says_where_it_comes_from_and_reloads(
    hub_cache: Path, colour_dataset: Path, tmp_path: Path
) -> None:
    put_in_hub_cache(hub_cache, RESNET, random_state(RESNET))
    recipe = tiny_recipe_for(colour_dataset, backbone=f"timm/{RESNET}", epochs=1)
    _, result = drain(Trainer(recipe).events())

    folder = save_model_folder(result, tmp_path / "model")
    meta = json.loads((folder / "model.json").read_text())
    loaded = load_model_folder(folder)

    assert meta["backbone"] == f"timm/{RESNET}" and meta["head"] == "fc"
    assert meta["versions"]["timm"] == timm.__version__  # its modules decide the loading
    pictures = sorted(colour_dataset.rglob("*.png"))[::6]
    original = Predictor(result.model, result.class_names, result.preprocessing)
    again = Predictor(loaded.model, loaded.class_names, loaded.preprocessing)
    assert original.predict(pictures) == again.predict(pictures)

    kept = RunStore(tmp_path / "runs").save(result, datetime.now(timezone.utc))
    [listed] = RunStore(tmp_path / "runs").runs()  # a slash in the name: one folder
    assert listed.folder == kept.folder and listed.backbone == f"timm/{RESNET}"
    reopened = RunStore(tmp_path / "runs").load(listed)
    assert Predictor(reopened.model, reopened.class_names, reopened.preprocessing).predict(
        pictures
    ) == original.predict(pictures)
