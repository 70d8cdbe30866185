# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo recipes test lint bench-quick clean data

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned: this takes the CPU wheel; a loose pin could pull a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/prunequant demo --out demo_out
	$(BIN)/prunequant run recipes/analytic.yaml --out demo_out/recipe_analytic

recipes: $(STAMP)
	for r in recipes/*.yaml; do $(BIN)/prunequant run $$r --out demo_out/recipes/$$(basename $$r .yaml) || exit 1; done

test: $(STAMP)
	$(BIN)/python -m pytest tests

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

# Fashion-MNIST (60k + 10k IDX files) from Debian's package, into /usr/share/datasets/fashion-mnist
data:
	@if command -v apt-get >/dev/null 2>&1; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update && $$SUDO apt-get install -y dataset-fashion-mnist; \
	else \
		echo "apt-get not available: put the four Fashion-MNIST IDX files (train-images-idx3-ubyte.gz, ...)"; \
		echo "in a directory and set PRUNEQUANT_FASHION_MNIST=/that/directory"; exit 1; \
	fi

clean:
	rm -rf $(VENV) demo_out .pytest_cache
