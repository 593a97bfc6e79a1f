"""The real bundled backbone, end to end: train, check, export, reload, predict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from finetune_studio.cli import main
from finetune_studio.engine.backbones import get_spec, pretrained_state_dict
from finetune_studio.engine.export import load_model_folder
from finetune_studio.engine.predict import Predictor, expand_paths


@pytest.mark.slow
def test_efficientnet_lite0_head_only_on_real_photos(
    photo_dataset: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "model"
    code = main(
        [
            "train",
            str(photo_dataset),
            "--out",
            str(out),
            "--epochs",
            "3",
            "--batch-size",
            "12",
            "--lr",
            "0.01",
            "--workers",
            "0",
        ]
    )
    assert code == 0, capsys.readouterr().err

    meta = json.loads((out / "model.json").read_text())
    assert meta["class_names"] == ["cat", "coffee", "rocket"]
    assert meta["metrics"]["val_acc"] >= 0.9  # chance is 0.33

    loaded = load_model_folder(out)
    pretrained = pretrained_state_dict(get_spec("efficientnet_lite0"))
    after = loaded.model.state_dict()
    untouched = [k for k in pretrained if not k.startswith("classifier.")]
    assert len(untouched) > 250
    for key in untouched:  # frozen weights *and* BatchNorm statistics
        assert torch.equal(after[key], pretrained[key]), key

    pictures = expand_paths([photo_dataset])
    predictor = Predictor(
        loaded.model, loaded.class_names, loaded.preprocessing, calibration=loaded.calibration
    )
    assert main(["predict", str(out), str(photo_dataset), "--json"]) == 0
    from_cli = json.loads(capsys.readouterr().out)
    from_python = [p.to_dict() for p in predictor.predict(pictures)]
    assert from_cli == from_python
    correct = sum(Path(p["path"]).parent.name == p["top"][0]["class"] for p in from_python)
    assert correct / len(from_python) >= 0.9
