# Two commands a new user needs:  make demo   and   make test
# Both create a virtual environment in .venv (Python 3.10+) and install leafseg into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?= -q -n auto

.PHONY: demo test install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python setup.py requirements.txt
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/python scripts/demo.py $(DEMO_ARGS)

test: $(VENV)/.installed
	$(BIN)/python -m pytest tests $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info demo_output
