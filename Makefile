# Two commands on a fresh machine:
#   make demo   -- bootstrap .venv, write the embedded synthetic identities as train.rec/.idx + synthetic.bin,
#                  train UNPG on them, export ONNX, verify it, convert it to fp16 and int8 (each re-verified
#                  against the fp32 model, side-by-side table: size, latency, cosine, accuracy on synthetic.bin)
#   make test   -- bootstrap .venv and run the test suite
# On a GPU machine install your CUDA build of torch into .venv first (or set TORCH_SPEC), as upstream's docs say.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
DEMO_CONFIG ?= recipes/arcface_torch/configs/synthetic_unpg
DEMO_OUT ?= work_dirs/synthetic_unpg
DEMO_DATA ?= work_dirs/synthetic_rec

.PHONY: demo test lint docs fast bench clean-venv

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

demo: $(VENV)/.installed
	test -f $(DEMO_DATA)/train.rec || $(PY) tools/synthetic_to_rec.py $(DEMO_DATA) --config $(DEMO_CONFIG) --quiet
	$(PY) recipes/arcface_torch/train.py $(DEMO_CONFIG) --set rec=$(DEMO_DATA) --set output=$(DEMO_OUT) --force
	$(PY) tools/export_onnx.py $(DEMO_OUT) --output $(DEMO_OUT)/model.onnx --force
	$(PY) tools/verify_onnx.py $(DEMO_OUT)/model.onnx --checkpoint $(DEMO_OUT)
	$(PY) tools/convert_onnx.py $(DEMO_OUT)/model.onnx --output $(DEMO_OUT)/model_fp16.onnx --fp16 --force --quiet \
		--bin $(DEMO_DATA)/synthetic.bin
	$(PY) tools/convert_onnx.py $(DEMO_OUT)/model.onnx --output $(DEMO_OUT)/model_int8.onnx --int8 --force --quiet \
		--calibration $(DEMO_DATA) --bin $(DEMO_DATA)/synthetic.bin

test: $(VENV)/.installed
	$(PY) -m pytest -q tests

lint: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

docs: $(VENV)/.installed
	$(PY) -m mkdocs build --strict --quiet

fast: $(VENV)/.installed
	$(PY) -m pytest -q -m "not slow" tests

bench: $(VENV)/.installed
	$(PY) benchmarks/bench_unpg_head.py
	$(PY) benchmarks/bench_train_throughput.py

clean-venv:
	rm -rf $(VENV)
