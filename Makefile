# gemrepro: the two commands of the README.
#   make book [SCALE=tiny|small|paper]   regenerate every chapter with papermill, build the HTML book
#   make test                            unit tests + nbval on the committed chapters
SCALE ?= tiny
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BUILD := _build/$(SCALE)

.PHONY: book test install clean-book

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e .
	touch $(STAMP)

book: $(STAMP)
	$(PY) -m gemrepro.workflow.book --scale $(SCALE) --build-dir $(BUILD)
	@echo "book: $(BUILD)/html/index.html"

test: $(STAMP)
	$(PY) -m pytest tests book/chapters --nbval-lax --durations=15

clean-book:
	rm -rf _build
