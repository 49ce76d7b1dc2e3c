# gemrepro: the two commands of the README.
#   make book [SCALE=tiny|small|paper]   execute every chapter with papermill, build the HTML book in _build/
#   make book FRESH=1                    ... recomputing everything the bundle ships, in a cache of its own (data/fresh)
#   make test                            unit tests + nbval on the committed chapters
#   JOBS=n (default 2)                   chapters / test files executed at once, each single-threaded
#   make update-book                     make book at tiny and replace the committed chapters' outputs
#   make publish [REMOTE=origin]          push the HTML of the committed book to the gh-pages branch
SCALE ?= tiny
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BUILD := _build/$(SCALE)
REMOTE ?= origin
JOBS ?= 2
ifeq ($(FRESH),1)
export GEMREPRO_FRESH := 1
export GEMREPRO_DATA := $(CURDIR)/data/fresh
BUILD := _build/$(SCALE)-fresh
endif

.PHONY: book test install clean-book publish update-book

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[book,test]"
	touch $(STAMP)

book: $(STAMP)
	$(PY) -m gemrepro.book.build --scale $(SCALE) --build-dir $(BUILD) --jobs $(JOBS)
	@echo "book: $(BUILD)/_build/html/index.html"

update-book: $(STAMP)
	$(PY) -m gemrepro.book.build --scale tiny --build-dir _build/tiny --update-committed --jobs $(JOBS)
	@echo "committed chapters replaced by the tiny execution: review with git diff book/chapters"

test: $(STAMP)
	$(PY) -m pytest book/chapters tests --nbval-lax --durations=15 -n $(JOBS) --dist loadfile

publish: $(STAMP)
	$(PY) -m gemrepro.book.build --html-only --build-dir _build/publish
	$(VENV)/bin/ghp-import --no-jekyll --force --push --remote $(REMOTE) --branch gh-pages \
		--message "book from $$(git rev-parse --short HEAD)" _build/publish/_build/html

clean-book:
	rm -rf _build
