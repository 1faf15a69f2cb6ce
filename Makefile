# medground — two commands on a fresh Debian bookworm machine:
#   make demo     the main job end to end
#   make test     every test
# Each installs what it needs (make deps is idempotent).

SHELL := /bin/bash
PYTHON_SYS ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

APT_PACKAGES := build-essential pkg-config libdnnl-dev libopenblas-dev libcjson-dev libstb-dev \
	libpcre2-dev libstemmer-dev clang libclang-rt-14-dev default-jre-headless default-jdk-headless \
	python3-venv python3-dev mricron-data

CC ?= gcc
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -fPIC -Wall -Wextra -Werror -Wno-unused-parameter -Wno-format-truncation \
	-Iinclude -Icsrc -I/usr/include/stb -pthread
OPT ?= -O3
CFLAGS = $(CFLAGS_BASE) $(OPT) -g $(CUDA_DEFINE) $(EXTRA_CFLAGS)
LIBS = -ldnnl -lopenblas -lcjson -lpcre2-8 -lstemmer -lstb -lm -lpthread $(CUDA_LIBS)

# Every C file of the library (not the Python glue) goes into libmedground.
LIB_SOURCES := $(shell find csrc -name '*.c' -not -path 'csrc/python/*' | sort)
PY_SOURCES := $(shell find csrc/python -name '*.c' | sort)
LIB_OBJECTS := $(patsubst csrc/%.c,build/obj/%.o,$(LIB_SOURCES))

# CUDA backend: built when nvcc is found, unless MG_CUDA=0. cudart is linked
# statically, so the library loads (and reports "no GPU") on machines without
# a driver; cuBLAS is loaded at run time when present.
NVCC ?= $(shell command -v nvcc 2>/dev/null)
ifeq ($(NVCC),)
MG_CUDA ?= 0
else
MG_CUDA ?= 1
endif
ifeq ($(MG_CUDA),1)
CUDA_HOME ?= $(if $(wildcard /usr/local/cuda/lib64),/usr/local/cuda,$(patsubst %/bin/nvcc,%,$(realpath $(NVCC))))
CUDA_SOURCES := $(shell find csrc -name '*.cu' | sort)
CUDA_OBJECTS := $(patsubst csrc/%.cu,build/obj/%.cu.o,$(CUDA_SOURCES))
LIB_OBJECTS += $(CUDA_OBJECTS)
CUDA_DEFINE := -DMG_HAVE_CUDA
CUDA_LIBS := -L$(CUDA_HOME)/lib64 -L$(CUDA_HOME)/targets/x86_64-linux/lib -lcudart_static -ldl -lrt -lstdc++
NVCC_FLAGS := -O3 -std=c++17 -Xcompiler -fPIC -Xcompiler -Wall -Iinclude -Icsrc \
	-gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90
endif
PY_OBJECTS := $(patsubst csrc/%.c,build/obj/%.o,$(PY_SOURCES))
DEPFILES := $(LIB_OBJECTS:.o=.d) $(PY_OBJECTS:.o=.d)

EXT_SUFFIX = $(shell $(PY) -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
PY_INCLUDES = $(shell $(PY) -c 'import sysconfig, numpy; print("-I" + sysconfig.get_paths()["include"], "-I" + numpy.get_include())')
EXTENSION = python/medground/_C$(EXT_SUFFIX)

TEST_ARGS ?=
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
PYTEST := PYTHONPATH=python $(PY) -m pytest

.PHONY: all deps deps-apt deps-venv build lib test test-c asan demo bench fuzz clean

all: build

# ---------------------------------------------------------------- deps
deps: deps-apt deps-venv

deps-apt:
	@missing=""; for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "apt: installing$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	else echo "apt: all C libraries present"; fi

$(VENV)/.stamp: requirements-dev.txt
	@test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements-dev.txt
	@touch $@

deps-venv: $(VENV)/.stamp

# --------------------------------------------------------------- build
build: deps
	@mkdir -p build
	@flock build/.lock $(MAKE) --no-print-directory -j$(JOBS) lib $(EXTENSION)

lib: build/libmedground.a build/libmedground.so

build/obj/%.o: csrc/%.c
	@mkdir -p $(dir $@)
	@echo "  CC  $<"
	@$(CC) $(CFLAGS) $(if $(filter csrc/python/%,$<),$(PY_INCLUDES)) -MMD -MP -c $< -o $@

build/obj/%.cu.o: csrc/%.cu
	@mkdir -p $(dir $@)
	@echo "  NVCC $<"
	@$(NVCC) $(NVCC_FLAGS) -MMD -MP -c $< -o $@

build/libmedground.a: $(LIB_OBJECTS)
	@rm -f $@.tmp && ar rcs $@.tmp $^ && mv $@.tmp $@

build/libmedground.so: $(LIB_OBJECTS)
	$(CC) -shared -o $@.tmp $^ $(LIBS) && mv $@.tmp $@

$(EXTENSION): $(PY_OBJECTS) build/libmedground.a
	$(CC) -shared -o $@.tmp $(PY_OBJECTS) build/libmedground.a $(LIBS) && mv $@.tmp $@

-include $(DEPFILES)

# ---------------------------------------------------------------- test
test: build
	$(MAKE) --no-print-directory test-c
	$(MAKE) --no-print-directory asan
	$(PYTEST) tests -ra $(TEST_ARGS)

# C unit tests: tests/c/test_*.c, each a program linked against the library.
C_TESTS := $(patsubst tests/c/%.c,build/tests/%,$(wildcard tests/c/test_*.c))
build/tests/%: tests/c/%.c build/libmedground.a
	@mkdir -p build/tests
	$(CC) $(CFLAGS) $< build/libmedground.a $(LIBS) -o $@

test-c: $(C_TESTS)
	@set -e; for t in $(C_TESTS); do echo "== $$t"; $$t; done

# The C tests again under AddressSanitizer + UndefinedBehaviorSanitizer.
asan:
	@mkdir -p build/asan
	$(MAKE) --no-print-directory -j$(JOBS) -f Makefile.asan run

# --------------------------------------------------------------- other
# MODEL=path also runs a BiRD / Qwen-VL checkpoint over the same images.
demo: build
	PYTHONPATH=python $(PY) -m medground demo $(if $(MODEL),--model $(MODEL))

# Benchmark-only peers (llama-cpp-python compiles llama.cpp once, minutes); not needed by test.
$(VENV)/.bench-stamp: requirements-bench.txt $(VENV)/.stamp
	$(PIP) install -q -r requirements-bench.txt
	@touch $@

bench: build $(VENV)/.bench-stamp
	PYTHONPATH=python $(PY) benchmarks/run_all.py

fuzz: build
	$(MAKE) --no-print-directory -f Makefile.fuzz run

clean:
	rm -rf build python/medground/_C*.so
