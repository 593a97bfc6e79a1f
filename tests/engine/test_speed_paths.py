"""The fast paths (cached features, decoded pictures) change nothing but the speed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from finetune_studio.engine.backbones import build_model
from finetune_studio.engine.events import BatchEnd, EpochEnd, Log
from finetune_studio.engine.features import cache_blocker, find_feature_split
from finetune_studio.engine.freezing import FreezePlan, apply_freeze_plan, hold_frozen_modules
from finetune_studio.engine.recipe import Recipe
from finetune_studio.engine.training import Trainer


def run(recipe: Recipe, **options: object) -> tuple[list[float], list[EpochEnd], list[str]]:
    trainer = Trainer(recipe, **options)  # type: ignore[arg-type]
    events = list(trainer.events())
    losses = [e.loss for e in events if isinstance(e, BatchEnd)]
    epochs = [e for e in events if isinstance(e, EpochEnd)]
    logs = [e.message for e in events if isinstance(e, Log)]
    return losses, epochs, logs


def assert_same_run(a: tuple, b: tuple) -> None:
    assert a[0] == pytest.approx(b[0], abs=1e-4)
    for first, second in zip(a[1], b[1]):
        assert first.val_loss == pytest.approx(second.val_loss, abs=1e-4)
        assert first.val_acc == second.val_acc
        assert first.train_acc == second.train_acc


def test_cached_features_give_the_same_run_as_the_whole_network(tiny_recipe: Recipe) -> None:
    cached = run(tiny_recipe.replace(epochs=3))
    plain = run(tiny_recipe.replace(epochs=3, feature_cache=False))

    assert any("cached features" in m for m in cached[2])
    assert any("whole network" in m for m in plain[2])
    assert_same_run(cached, plain)


@pytest.mark.slow
def test_cached_features_match_with_real_weights_and_head_dropout(photo_dataset: Path) -> None:
    # EfficientNet-Lite0's head block is Dropout + Linear: dropout must act the same way.
    recipe = Recipe(
        dataset=str(photo_dataset),
        epochs=2,
        batch_size=8,
        workers=0,
        augmentation="none",
        lr=0.01,
        head_fit="epochs",  # epoch by epoch, as the whole network trains
    )
    assert_same_run(run(recipe), run(recipe.replace(feature_cache=False)))


def test_decoding_ahead_gives_the_same_run(tiny_recipe: Recipe) -> None:
    recipe = tiny_recipe.replace(feature_cache=False, freeze=FreezePlan("none"), epochs=2)
    assert_same_run(run(recipe), run(recipe, decode_budget_bytes=0))


@pytest.mark.parametrize("whole_network", [True, False])
def test_worker_processes_give_the_same_run(tiny_recipe: Recipe, whole_network: bool) -> None:
    # Workers start from a fork server and read the decoded pictures from shared memory.
    recipe = tiny_recipe
    if whole_network:
        recipe = recipe.replace(feature_cache=False, freeze=FreezePlan("none"))
    assert_same_run(run(recipe.replace(workers=1)), run(recipe))


@pytest.mark.parametrize(
    ("name", "capture", "block"),
    [
        ("efficientnet_lite0", "classifier.0", ("classifier.0", "classifier.1")),
        ("resnet18", "fc", ("fc",)),
        ("mobilenet_v3_small", "classifier.1", ("classifier.1", "classifier.2", "classifier.3")),
        ("vit_b_16", "heads.head", ("heads.head",)),
    ],
)
def test_the_cut_keeps_the_heads_own_dropout(name: str, capture: str, block: tuple) -> None:
    built = build_model(name, 3, weights="none")
    split = find_feature_split(built.model, built.head_path)
    assert (split.capture_path, split.head_block_paths) == (capture, block)
    apply_freeze_plan(built.model, built.head_path, FreezePlan("head"))
    built.model.train()
    hold_frozen_modules(built.model)
    assert cache_blocker(built.model, split) is None


def test_runs_the_cache_would_change_are_not_cached() -> None:
    vgg = build_model("vgg11", 3, weights="none")
    apply_freeze_plan(vgg.model, vgg.head_path, FreezePlan("head"))
    vgg.model.train()
    hold_frozen_modules(vgg.model)
    split = find_feature_split(vgg.model, vgg.head_path)
    assert "classifier.2 (Dropout)" in cache_blocker(vgg.model, split)

    resnet = build_model("resnet18", 3, weights="none")
    apply_freeze_plan(resnet.model, resnet.head_path, FreezePlan("last:1"))
    split = find_feature_split(resnet.model, resnet.head_path)
    assert cache_blocker(resnet.model, split) == "layers other than the head are trainable"


def test_augmented_views_are_cached_and_cycled(tiny_recipe: Recipe) -> None:
    losses, epochs, logs = run(tiny_recipe.replace(augmentation="light", cached_views=3, epochs=3))
    assert any("3 view(s) per picture" in m for m in logs)
    assert len(epochs) == 3 and all(torch.isfinite(torch.tensor(losses)))


def test_features_come_from_the_disk_cache_the_second_time(
    tiny_recipe: Recipe, colour_dataset: Path, tmp_path: Path
) -> None:
    from finetune_studio.engine.feature_store import FeatureStore

    store = FeatureStore(tmp_path / "cache")
    first = run(tiny_recipe, feature_store=store)
    second = run(tiny_recipe, feature_store=store)
    assert not any("from the cache" in m for m in first[2])
    assert any("Computing features: 36 of 36 from the cache" in m for m in second[2])
    assert_same_run(first, second)

    touched = next((colour_dataset / "red").iterdir())
    touched.write_bytes(touched.read_bytes())  # a new modification time: a new key
    third = run(tiny_recipe, feature_store=store)
    cached = [m for m in third[2] if "Computing features:" in m and "from the cache" in m]
    assert (
        cached and "of 36" in cached[0] and not cached[0].startswith("Computing features: 36 of 36")
    )

    # Another seed draws another split and head, but the features do not depend on it.
    other = run(tiny_recipe.replace(seed=1), feature_store=store)
    assert any("Computing features: 36 of 36 from the cache" in m for m in other[2])


def test_the_store_keeps_within_its_budget(tmp_path: Path) -> None:
    from finetune_studio.engine.feature_store import FeatureStore

    store = FeatureStore(tmp_path, budget_bytes=10_000)
    assert store.save("a", {"x": torch.zeros(1000)})  # 4,000 bytes
    assert store.save("b", {"y": torch.zeros(1500)})  # 6,000 bytes: evicts "a"
    assert not (tmp_path / "a.safetensors").exists()
    assert not store.save("c", {"z": torch.zeros(3000)})  # 12,000 bytes: never fits
    assert store.load("b", ["y"])["y"].shape == (1500,)


def _extracted_features(
    dataset: Path, threads: int, amp_dtype: torch.dtype | None
) -> dict[int, torch.Tensor]:
    from torch import nn

    from finetune_studio.engine.backbones import get_spec
    from finetune_studio.engine.features import extract_features
    from finetune_studio.engine.inspection import inspect_dataset
    from finetune_studio.engine.loading import ImageDataset, make_loader
    from finetune_studio.engine.preprocessing import eval_transform

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 3),
    ).to(memory_format=torch.channels_last)
    pre = get_spec("resnet18").preprocessing
    samples = inspect_dataset(dataset).train
    loader = make_loader(ImageDataset(samples, eval_transform(pre), pre), 4, False, 0, 0)
    cpu = torch.device("cpu")
    torch.set_num_threads(threads)
    work = extract_features(
        model, find_feature_split(model, "6"), loader, cpu, True, None, amp_dtype
    )
    try:
        while True:
            next(work)
    except StopIteration as finished:
        assert torch.get_num_threads() == threads  # the run's own setting, given back
        return finished.value.features  # type: ignore[no-any-return]


@pytest.mark.parametrize("amp_dtype", [None, torch.bfloat16])
def test_batches_computed_side_by_side_give_the_same_features(
    colour_dataset: Path, amp_dtype: torch.dtype | None
) -> None:
    # With several threads the CPU computes several batches at once (single-threaded each).
    from finetune_studio.engine.features import cpu_streams

    assert cpu_streams(torch.device("cpu"), 4)[0] > 1
    threads = torch.get_num_threads()
    try:
        one_at_a_time = _extracted_features(colour_dataset, 1, amp_dtype)
        side_by_side = _extracted_features(colour_dataset, 4, amp_dtype)
    finally:
        torch.set_num_threads(threads)
    assert len(one_at_a_time) > 8  # more batches than run at once
    assert one_at_a_time.keys() == side_by_side.keys()
    for index, feature in one_at_a_time.items():
        assert torch.equal(feature, side_by_side[index])


@pytest.mark.parametrize("whole_network", [False, True])
def test_a_run_opens_each_picture_once_and_the_run_is_the_same(
    tiny_recipe: Recipe, whole_network: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The run's own check keeps the pictures it decoded for the model; a run handed a
    # checked dataset decodes them itself.
    from finetune_studio.engine import images, loading
    from finetune_studio.engine.inspection import inspect_dataset

    recipe = tiny_recipe.replace(workers=0)
    if whole_network:
        recipe = recipe.replace(feature_cache=False, freeze=FreezePlan("none"), epochs=1)
    given = run(recipe, dataset=inspect_dataset(recipe.dataset, recipe.val_fraction, recipe.seed))
    # The tiny backbone's pictures are smaller than the plain check decodes, so the
    # keeper would run that check too: count what the keeping itself opens.
    monkeypatch.setattr(loading, "CHECK_SIDE", 0)
    opened: list[str] = []
    real_open = images._open

    def counting_open(path: Path) -> object:
        opened.append(str(path))
        return real_open(path)

    monkeypatch.setattr(images, "_open", counting_open)
    checked_here = run(recipe, feature_store=None)
    assert opened and len(opened) == len(set(opened))
    assert_same_run(checked_here, given)


def _decoded_dataset(root: Path, augmentation: str) -> object:
    from finetune_studio.engine.backbones import get_spec
    from finetune_studio.engine.inspection import inspect_dataset
    from finetune_studio.engine.loading import DecodedPictures, ImageDataset, decode_pictures
    from finetune_studio.engine.preprocessing import train_transform
    from support.tiny import TINY

    samples = inspect_dataset(str(root), 0.0, 0).train
    pre = get_spec(TINY).preprocessing
    decoded = DecodedPictures()
    for _ in decode_pictures(samples, pre, 2**30, decoded):
        pass
    return ImageDataset(samples, train_transform(pre, augmentation), pre, decoded)


@pytest.mark.parametrize("workers", [1, 2])
def test_batches_made_in_process_are_those_workers_make(colour_dataset: Path, workers: int) -> None:
    # Random crops, flips and colour changes: each worker's generator, in turn.
    from finetune_studio.engine.in_process_loader import InProcessLoader
    from finetune_studio.engine.loading import make_loader

    dataset = _decoded_dataset(colour_dataset, "standard")
    by_workers = make_loader(dataset, 4, True, workers, seed=3)  # type: ignore[arg-type]
    here = make_loader(dataset, 4, True, workers, seed=3, in_process=True)  # type: ignore[arg-type]
    assert isinstance(here, InProcessLoader) and not isinstance(by_workers, InProcessLoader)

    torch.manual_seed(11)
    expected_draw = torch.rand(3)
    torch.manual_seed(11)
    made_here = list(here)
    made_by_workers = list(by_workers)
    assert torch.equal(torch.rand(3), expected_draw)  # the caller's own draws are untouched
    assert len(made_here) == len(made_by_workers) == len(by_workers) > 2
    for ours, theirs in zip(made_here, made_by_workers):
        assert ours.indices == theirs.indices
        assert torch.equal(ours.images, theirs.images)
        assert torch.equal(ours.labels, theirs.labels)


def test_a_small_cpu_run_makes_its_batches_in_process_and_the_run_is_the_same(
    tiny_recipe: Recipe, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its own check keeps the pictures: no loader starts a worker (nor the fork server).
    from finetune_studio.engine import loading
    from finetune_studio.engine.training import data

    recipe = tiny_recipe.replace(
        workers=1, feature_cache=False, freeze=FreezePlan("none"), augmentation="light"
    )
    monkeypatch.setattr(data, "loads_in_process", lambda device: False)
    with_workers = run(recipe)
    monkeypatch.setattr(data, "loads_in_process", lambda device: True)
    started: list[int] = []
    monkeypatch.setattr(data, "start_worker_server", lambda: started.append(1))
    monkeypatch.setattr(loading, "worker_context", lambda: pytest.fail("a worker started"))
    in_process = run(recipe)
    assert not started
    assert_same_run(in_process, with_workers)
