# The two commands: `make demo` and `make test`. Both install into .venv first when it is missing or stale.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO   ?= demo_out
# The demo trains for 60 steps: enough to see the loss fall from ~10.8 to ~6.3 in well under a minute on 2 cores.
# `make demo-full` trains the same tiny model for 300 steps (~3 minutes on 2 cores).
DEMO_STEPS ?= 60

.PHONY: install engines package demo demo-full test bench clean

install: $(STAMP)

# A machine without CUDA gets torch 2.13.0 (its CPU build where one is on the pip path) before the project,
# so that the [train] extra does not pull a multi-GB CUDA build. The GPT-2 vocabulary is cached for offline use.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	if ! command -v nvidia-smi >/dev/null 2>&1; then $(PY) -m pip install -q "torch==2.13.0"; fi
	$(PY) -m pip install -q -e '.[train,test]'
	$(PY) -m core.tokenizer --fetch >/dev/null
	touch $(STAMP)

# Beam's Flink and Spark job-server jars (for --runner FlinkRunner / SparkRunner) into .engines/ with mvn, once,
# and Beam's Prism runner (--runner PrismRunner) built with `go` from the Go module proxy into .engines/prism.
# Never fails: where Maven does not serve a jar, or there is no `go`, it records why, and the engine tests skip with it.
engines: $(STAMP)
	$(PY) -m pipeline.engines fetch

# The wheel a cluster's workers install (--extra_package, or baked into an SDK container): GPT-2 vocabulary inside.
package: $(STAMP)
	$(PY) -m pipeline.worker_package dist

demo: $(STAMP)
	$(VENV)/bin/webtext demo --out $(DEMO)
	$(VENV)/bin/webtext shards verify $(DEMO)/shards
	$(VENV)/bin/webtext train --config tiny --data $(DEMO)/shards --out $(DEMO)/train --max-steps $(DEMO_STEPS) --overwrite
	$(VENV)/bin/webtext sample --ckpt $(DEMO)/train/ckpt.pt --prompt "The" --max-new-tokens 40 --num-samples 1

demo-full:
	$(MAKE) demo DEMO_STEPS=300

test: $(STAMP)
	$(VENV)/bin/pytest -q

bench: $(STAMP)
	$(PY) bench/pipeline.py
	$(PY) bench/fetch.py
	$(PY) bench/train_speed.py

clean:
	rm -rf $(DEMO) .pytest_cache build *.egg-info
