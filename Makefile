# The two commands a fresh machine needs (as root): `make quickstart` and `make test`.
# Everything else is plain CMake; see README.md.
JOBS ?= $(shell nproc)
BUILD ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_RUNS ?= 1000000
# the seeded short run of every harness inside `make test`
FUZZ_SHORT_RUNS ?= 20000
FUZZ_SEED ?= 1
CMAKE_FLAGS ?=

.PHONY: all deps build test test-fast test-asan test-fuzz quickstart fuzz fuzz-build clean

all: build

deps:
	bash scripts/install-deps.sh

build:
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)

# The whole suite, then once more under ASan + UBSan (CPU only: sanitizers and nvcc
# objects do not mix, and the CUDA code is already compiled by the first build; without
# MPI: the MPI library's own allocations at exit would read as leaks, and the MPI tests
# already ran in the first build).
# ctest hides the output of passing tests; the SKIP lines (tests that need files absent
# here, such as ../shared/contest) are repeated after the run so they stay visible.
SHOW_SKIPS = grep -h '^SKIP' $(1)/Testing/Temporary/LastTest.log | sort | uniq -c | sed 's/^ */skipped x/' || true

test: deps build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	@$(call SHOW_SKIPS,$(BUILD))
	$(MAKE) test-asan
	$(MAKE) test-fuzz

test-fast: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	@$(call SHOW_SKIPS,$(BUILD))

test-asan:
	cmake -S . -B $(ASAN_BUILD) -DQG_SANITIZE=ON -DQG_CUDA=OFF -DQG_MPI=OFF -DCMAKE_BUILD_TYPE=Debug $(CMAKE_FLAGS)
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --output-on-failure -j $(JOBS)
	@$(call SHOW_SKIPS,$(ASAN_BUILD))

quickstart: deps build
	bash scripts/quickstart.sh $(BUILD)/quantgolf

# libFuzzer harnesses, seeded with the real contest files; FUZZ_RUNS executions each.
fuzz-build:
	CC=clang cmake -S . -B $(FUZZ_BUILD) -DQG_FUZZ=ON -DQG_CUDA=OFF -DQG_MPI=OFF -DQG_BUILD_TESTS=OFF \
	  -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build $(FUZZ_BUILD) -j $(JOBS)

fuzz: deps fuzz-build
	bash scripts/run-fuzzers.sh $(FUZZ_BUILD) $(FUZZ_RUNS)

# Every harness for FUZZ_SHORT_RUNS seeded executions (UB fatal), so CI catches a reader
# regression that the unit tests miss; clang comes from `make deps`.
test-fuzz: fuzz-build
	bash scripts/run-fuzzers.sh $(FUZZ_BUILD) $(FUZZ_SHORT_RUNS) $(FUZZ_SEED)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
