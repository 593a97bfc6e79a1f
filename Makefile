# Plain pip on purpose: on the project's build machines it takes torch and torchvision
# from local disk; uv and poetry would download several GB.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench package icons clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[test,export,timm]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/finetune-studio

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/pip install --quiet ruff mypy
	$(BIN)/ruff check desktop tests
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python tests/benchmarks/bench_training.py

# A one-folder desktop build in dist/finetune-studio (not part of `make test`).
package: $(STAMP)
	$(BIN)/pip install --quiet pyinstaller
	$(BIN)/pyinstaller --noconfirm --clean --distpath dist --workpath build/pyinstaller packaging/finetune-studio.spec
	QT_QPA_PLATFORM=offscreen dist/finetune-studio/finetune-studio --self-check

icons: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python packaging/build_icons.py

clean:
	rm -rf $(VENV) build dist *.egg-info desktop/*.egg-info
