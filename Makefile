# The two commands a newcomer runs (see README.md):
#   make demo   the whole pipeline on the bundled sample study -> out/demo/
#   make test   lint + the test suite
# Both create .venv/ on first use with the pinned, known-good stack (requirements/).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PIP    := $(BIN)/python -m pip --disable-pip-version-check
OUT    ?= out/demo

.PHONY: setup demo test lint clean model-kinds

setup: $(STAMP)

$(STAMP): requirements/constraints.txt requirements/venv.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -c requirements/constraints.txt -r requirements/venv.txt
	@# pyradiomics 3.0.1 builds only against the numpy/versioneer already installed (its 3.1.0 sdist is broken)
	$(PIP) install --no-build-isolation -c requirements/constraints.txt pyradiomics==3.0.1
	$(PIP) install --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: setup
	$(BIN)/virtualbiopsy demo --out $(OUT) --overwrite

test: setup lint
	$(BIN)/python -m pytest --junitxml=out/test-results.xml

# the tiny nnU-Net models of every kind (issue 13; about 10 min, cached), then their tests
model-kinds: setup
	VIRTUALBIOPSY_MODEL_KINDS=build $(BIN)/python -m pytest Testing/Python/test_model_kinds.py

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) out build
