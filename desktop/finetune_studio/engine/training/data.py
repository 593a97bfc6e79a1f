"""Engine layer: what a run's epochs train and validate on.

Cached features through the head block when only the head trains (computed once,
kept on disk by the feature store), otherwise decoded pictures through the whole
network. Both report progress as events and stop between batches on cancel.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from ..backbones import BackboneSpec
from ..cache_decision import cached_view_count, recipe_cache_blocker
from ..events import Event, Log, StageProgress, as_stage_progress
from ..feature_store import FeatureStore, StoredFeatures, file_key
from ..features import (
    Extracted,
    FeatureSplit,
    FeatureTable,
    extract_features,
    feature_table,
    find_feature_split,
)
from ..in_process_loader import loads_in_process
from ..inspection import DatasetReport, Sample
from ..loading import (
    DecodedPictures,
    ImageDataset,
    PictureKeeper,
    decode_pictures,
    default_workers,
    make_loader,
    start_worker_server,
)
from ..preprocessing import Preprocessing, eval_transform, train_transform
from ..recipe import Recipe
from .distributed import ONE_PROCESS, Processes, any_process, gather_rows, wait_for_all

FeatureRows = tuple[torch.Tensor, torch.Tensor, list[int]]


@dataclass
class RunData:
    """Loaders for the epochs (one per cached view) and what runs on their batches;
    on the cached path also the feature tensors themselves (features, labels)."""

    train: list[DataLoader[object]]
    val: DataLoader[object]
    forward: nn.Module
    channels_last: bool
    val_paths: list[str]  # the picture a validation batch's index ``i`` stands for
    train_features: list[FeatureTable] | None = None
    val_features: FeatureTable | None = None
    val_shared: bool = False  # each process validates its share (the trainer gathers them)

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train[0])

    def train_loader(self, epoch: int) -> DataLoader[object]:
        loader = self.train[(epoch - 1) % len(self.train)]
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)  # each epoch's shuffle, the same in every process
        return loader

    def generators(self) -> list[torch.Generator]:
        """The loaders' shuffling generators, whose states a checkpoint keeps."""
        loaders = [*self.train, self.val]
        return [loader.generator for loader in loaders if loader.generator is not None]


@dataclass
class DataPreparation:
    """Everything data preparation needs from the run, stated explicitly."""

    recipe: Recipe
    device: torch.device
    channels_last: bool
    amp_dtype: torch.dtype | None
    cancel: threading.Event
    feature_store: FeatureStore | None
    decode_budget_bytes: int
    unreadable: set[str]  # filled with pictures that fail to load
    kept: PictureKeeper | None = None  # pictures the run's own check decoded
    processes: Processes = ONE_PROCESS  # under torchrun, this process among the run's

    def _kept(self, samples: Sequence[Sample], pre: Preprocessing) -> DecodedPictures | None:
        """The check's decoded pictures of ``samples``, if it kept them for this model."""
        if self.kept is None or self.kept.preprocessing != pre:
            return None
        return self.kept.decoded(samples)

    @property
    def workers(self) -> int:
        return default_workers() if self.recipe.workers is None else self.recipe.workers

    def warm_up(self) -> None:
        """Start the data-loading processes' server now, so its import of torch
        overlaps the dataset check and the model build instead of delaying the
        first batch. Not when the run's check keeps the pictures for loaders that
        make their batches in this process (``in_process_loader``): then no worker
        may ever start (one that does starts the server itself)."""
        views = cached_view_count(self.recipe.augmentation, self.recipe.cached_views)
        kept_in_process = self.kept is not None and views == 1 and loads_in_process(self.device)
        if self.workers > 0 and not kept_in_process:
            start_worker_server()

    @property
    def pin(self) -> bool:
        return self.device.type == "cuda"

    def prepare(
        self, model: nn.Module, head_path: str, spec: BackboneSpec, report: DatasetReport
    ) -> Generator[Event, None, RunData]:
        """Cached features when the run allows it, else decoded pictures."""
        recipe = self.recipe
        split = find_feature_split(model, head_path)
        blocker = recipe_cache_blocker(recipe, model, head_path)
        if blocker is None:
            return (yield from self._feature_data(model, split, spec, report))
        yield Log(f"Running the whole network every epoch: {blocker}.")
        return (yield from self._picture_data(model, spec.preprocessing, report))

    def _picture_data(
        self, model: nn.Module, pre: Preprocessing, report: DatasetReport
    ) -> Generator[Event, None, RunData]:
        recipe = self.recipe
        decoded_train, decoded_val = DecodedPictures(), DecodedPictures()
        kept_train, kept_val = self._kept(report.train, pre), self._kept(report.val, pre)
        if kept_train is not None and kept_val is not None:
            decoded_train, decoded_val = kept_train, kept_val
        elif recipe.epochs > 1:
            # Pictures met only once are decoded by the loader while the steps run:
            # decoding them all first would only delay the first step.
            decoded_train = yield from self._decode(report.train, pre, "Decoding pictures")
            decoded_val = yield from self._decode(report.val, pre, "Decoding validation pictures")
        if self.kept is not None:
            self.kept.forget()
        train_set = ImageDataset(
            report.train, train_transform(pre, recipe.augmentation), pre, decoded_train
        )
        val_set = ImageDataset(report.val, eval_transform(pre), pre, decoded_val)
        return RunData(
            train=[self._loader(train_set, shuffle=True)],
            val=self._val_loader(val_set),
            forward=model,
            channels_last=self.channels_last,
            val_paths=[sample.path for sample in report.val],
            val_shared=self.processes.active,
        )

    def _loader(self, dataset: ImageDataset, shuffle: bool) -> DataLoader[object]:
        """Under torchrun, training batches are this process's share of the global
        batch."""
        recipe, processes = self.recipe, self.processes
        if not (shuffle and processes.active):
            return make_loader(
                dataset, recipe.batch_size, shuffle, self.workers, recipe.seed, self.pin,
                in_process=loads_in_process(self.device),
            )  # fmt: skip
        sampler: DistributedSampler[int] = DistributedSampler(
            dataset, processes.world_size, processes.rank, shuffle=True, seed=recipe.seed
        )
        batch = processes.per_process_batch(recipe.batch_size)
        return make_loader(dataset, batch, True, self.workers, recipe.seed, self.pin, sampler)

    def _val_loader(self, dataset: ImageDataset) -> DataLoader[object]:
        """Under torchrun, this process's share of the validation pictures."""
        if not self.processes.active:
            return self._loader(dataset, shuffle=False)
        recipe, share = self.recipe, self.processes.shard(range(len(dataset)))
        return make_loader(
            dataset, recipe.batch_size, False, self.workers, recipe.seed, self.pin, share
        )

    def _decode(
        self, samples: tuple[Sample, ...], pre: Preprocessing, stage: str
    ) -> Generator[Event, None, DecodedPictures]:
        """Decode every picture once (within the memory budget), reporting progress."""
        decoded = DecodedPictures()
        work = decode_pictures(samples, pre, self.decode_budget_bytes, decoded, self.cancel)
        for done, total in work:
            yield StageProgress(stage, done, total)
        return decoded

    def _feature_data(
        self, model: nn.Module, split: FeatureSplit, spec: BackboneSpec, report: DatasetReport
    ) -> Generator[Event, None, RunData]:
        recipe = self.recipe
        pre = spec.preprocessing
        views = cached_view_count(recipe.augmentation, recipe.cached_views)
        if recipe.augmentation != "none" and views == 1:
            yield Log(
                "Training the head on cached features of each picture, without "
                "augmentation (augmented copies, the recipe's cached_views, add it)."
            )
        else:
            yield Log(f"Training the head on cached features ({views} view(s) per picture).")
        store_key = self._store_key(spec, split)
        # One pass over training and validation pictures: one loader start, not two.
        both = ImageDataset((*report.train, *report.val), eval_transform(pre), pre)
        table = yield from self._features(model, split, both, "Computing features", store_key)
        is_train = torch.tensor([i < len(report.train) for i in table.indices], dtype=torch.bool)
        size, seed = recipe.batch_size, recipe.seed
        tables, val_table = [table.subset(is_train)], table.subset(~is_train)
        for view in range(1, views):
            augmented = ImageDataset(report.train, train_transform(pre, recipe.augmentation), pre)
            stage = f"Computing augmented features (view {view + 1} of {views})"
            tables.append(
                (yield from self._features(model, split, augmented, stage, None, augmented=True))
            )
        if self.kept is not None:
            self.kept.forget()
        return RunData(
            train=[t.batches(size, True, seed) for t in tables],
            val=val_table.batches(size, False, seed),
            forward=split.head_block(model),
            channels_last=False,
            val_paths=[both.samples[i].path for i in val_table.indices],
            train_features=tables,
            val_features=val_table,
        )

    def head_features(
        self,
        model: nn.Module,
        head_path: str,
        spec: BackboneSpec,
        samples: Sequence[Sample],
        stage: str,
    ) -> Generator[Event, None, FeatureRows]:
        """What the head sees for each picture (no augmentation), from the disk store
        where a head-only run already put it: the features, labels, and the positions in
        ``samples`` of the pictures that loaded."""
        split = find_feature_split(model, head_path)
        pre = spec.preprocessing
        dataset = ImageDataset(samples, eval_transform(pre), pre)
        key = self._store_key(spec, split)
        table = yield from self._features(model, split, dataset, stage, key)
        features, labels = table.gathered()
        return features, labels, table.indices

    def _store_key(self, spec: BackboneSpec, split: FeatureSplit) -> str | None:
        if self.feature_store is None:
            return None
        return self.feature_store.feature_model_key(
            spec,
            self.recipe.weights,
            split.capture_path,
            spec.preprocessing,
            str(self.amp_dtype),
            self.recipe.seed,
        )

    def _features(
        self,
        model: nn.Module,
        split: FeatureSplit,
        dataset: ImageDataset,
        stage: str,
        store_key: str | None,
        augmented: bool = False,
    ) -> Generator[Event, None, FeatureTable]:
        """The features of the pictures that loaded: mapped from the disk store where
        it holds them all (no copy in memory), computed (then stored) otherwise."""
        store = self.feature_store if store_key else None
        keys = [file_key(s.path) for s in dataset.samples]
        stored = store.open(store_key) if store and store_key else None
        absent = [stored is None or key not in stored.rows for key in keys]
        # Caches differ between nodes: whatever one process lacks, all compute.
        absent = any_process(self.processes, *absent)
        missing = [i for i, is_absent in enumerate(absent) if is_absent]
        computed: dict[int, torch.Tensor] = {}
        if missing:
            computed = yield from self._compute(model, split, dataset, missing, stage, augmented)
        if len(missing) < len(keys):
            yield Log(f"{stage}: {len(keys) - len(missing)} of {len(keys)} from the cache.")
        labels = [sample.label for sample in dataset.samples]
        if store is not None and store_key is not None and self.processes.active:
            return self._shared_table(keys, labels, computed, stored, store, store_key)
        saving = store if not self.cancel.is_set() else None
        return feature_table(keys, labels, computed, stored, saving, store_key)

    def _shared_table(
        self,
        keys: list[str | None],
        labels: list[int],
        computed: dict[int, torch.Tensor],
        stored: StoredFeatures | None,
        store: FeatureStore,
        store_key: str,
    ) -> FeatureTable:
        """Under torchrun, the first process of each machine saves the features to that
        machine's store; the others then map its file instead of keeping a copy."""
        if self.processes.local_rank == 0:
            saving = store if not self.cancel.is_set() else None
            table = feature_table(keys, labels, computed, stored, saving, store_key)
            wait_for_all(self.processes)
            return table
        wait_for_all(self.processes)
        mapped = feature_table(keys, labels, {}, store.open(store_key))
        had = [i for i, key in enumerate(keys) if i in computed or (stored and key in stored.rows)]
        if mapped.indices == had:
            return mapped
        return feature_table(keys, labels, computed, stored)  # not saved: kept in memory

    def _compute(
        self,
        model: nn.Module,
        split: FeatureSplit,
        dataset: ImageDataset,
        indices: list[int],
        stage: str,
        augmented: bool,
    ) -> Generator[Event, None, dict[int, torch.Tensor]]:
        everyone, processes = indices, self.processes
        indices = processes.shard(indices)  # each picture computed by one process
        if processes.active:
            yield Log(f"{stage}: shared between {processes.world_size} processes.")
        samples = [dataset.samples[i] for i in indices]
        decoded = self._kept(samples, dataset.preprocessing)
        subset = ImageDataset(samples, dataset.transform, dataset.preprocessing, decoded)
        recipe = self.recipe
        workers = self.workers
        if not augmented and decoded is not None and len(decoded) == len(samples):
            # Decoded already, and cropped the same way in any process: starting workers
            # (and waiting for their server's import of torch) would cost more than it saves.
            workers = 0
        loader = make_loader(subset, recipe.batch_size, False, workers, recipe.seed, self.pin)
        work = extract_features(
            model, split, loader, self.device, self.channels_last, self.cancel, self.amp_dtype
        )
        extracted: Extracted = yield from as_stage_progress(work, stage)
        for failure in extracted.failures:
            self.unreadable.add(failure.path)
            yield Log(f"Skipped {failure.path}: {failure.reason}", "warning")
        mine = {indices[i]: feature for i, feature in extracted.features.items()}
        if not processes.active:
            return mine
        gathered = gather_rows(processes, mine)
        for index in everyone:
            if index not in gathered:  # another process could not read it, and said so
                self.unreadable.add(dataset.samples[index].path)
        return gathered
