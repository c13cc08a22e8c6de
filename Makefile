# SPDX-License-Identifier: GPL-2.0
#
# mblit top-level targets. The module itself is built by Kbuild:
#   make -C $(KDIR) M=$(CURDIR)
# KDIR defaults to the cached test kernel that scripts/setup builds.

# KVER=7.2 builds and tests against that kernel release instead of the
# default (scripts/env.sh); each release has its own cached kernel.
ifneq ($(KVER),)
export MBLIT_KVER_MAJOR := $(KVER)
endif
# $(shell) does not see make's exports (make < 4.4): pass it on by hand.
KENV := $(if $(KVER),MBLIT_KVER_MAJOR=$(KVER))

KDIR ?= $(shell $(KENV) scripts/kdir)/build
KMAKE_ARGS := $(shell . scripts/env.sh && mblit_kmake_args)

.PHONY: all module setup host-test fuzz check test demo stress golden bench e2e clean

all: module

# Run scripts/setup when the toolchain or the kernel is missing.
setup:
	@if ! scripts/kdir --check || ! [ -x "$$(. scripts/env.sh; echo $$MBLIT_BINDGEN)" ]; then \
		scripts/setup; fi

module: setup
	$(MAKE) -C $(KDIR) M=$(CURDIR) $(KMAKE_ARGS) modules

# The no_std logic, unit-tested on the host.
host-test:
	cargo test --quiet --manifest-path $(CURDIR)/Cargo.toml

# The state-decoder fuzzer, on the host (fuzz/README.md): FUZZ_EXECS
# executions (default 10 million), or DURATION seconds; FUZZ_SEED= and
# FUZZ_THREADS= replay a run. Prints executions per second and the total; a
# failing input is saved in fuzz/regressions/, which host-test runs from then
# on. The fuzz profile is optimised with overflow checks on.
fuzz:
	FUZZ_EXECS='$(FUZZ_EXECS)' DURATION='$(DURATION)' FUZZ_SEED='$(FUZZ_SEED)' \
		FUZZ_THREADS='$(FUZZ_THREADS)' cargo test --manifest-path $(CURDIR)/Cargo.toml \
		--profile fuzz --test decoders -- --ignored --exact --nocapture \
		fuzz_state::fuzz_state_decoder

# rustfmt and clippy over the host-buildable logic, rustfmt over all Rust.
check:
	# rustfmt follows the mod tree, rust/ included.
	rustfmt --check --edition 2021 src/mblit_main.rs src/logic/lib.rs
	cargo clippy --quiet --manifest-path $(CURDIR)/Cargo.toml --all-targets -- -D warnings

test: host-test module
	scripts/check-stack $(CURDIR)/mblit.ko
	scripts/vm-test $(CURDIR)/mblit.ko

# The concurrency stress test and the uAPI fuzzer alone, in one VM boot,
# each for DURATION seconds (default 300); SEED= replays a run (a failure
# prints its seed and this command). make test runs them briefly.
STRESS_SECS = $(or $(DURATION),300)
stress: module
	MBLIT_VM_TIMEOUT=$$(( 2 * $(STRESS_SECS) + 900 )) scripts/vm-test \
		--only mblit_stress --env MBLIT_STRESS_SECS=$(STRESS_SECS) \
		--env MBLIT_FUZZ_SECS=$(STRESS_SECS) \
		$(if $(SEED),--env MBLIT_SEED=$(SEED)) $(CURDIR)/mblit.ko

# The golden device states of this build's state format version, into
# selftests/golden/v<N>/ (docs/migration.md §1.9): run once by the change
# that defines a format version; it refuses to overwrite existing ones.
golden: module
	scripts/golden-gen $(CURDIR)/mblit.ko

# The migration demo: one VM boot that migrates a running workload between
# two mdevs through the DEVICE_STATE region and checks the result.
demo: module
	scripts/vm-test --demo $(CURDIR)/mblit.ko

# The benchmarks (scripts/bench): a second cached kernel without the test
# kernel's checks, mblit built against it, one VM boot; prints a table and
# writes it as JSON. Never part of make test.
bench:
	@if ! MBLIT_KFLAVOUR=bench scripts/kdir --check || \
	    ! [ -x "$$(. scripts/env.sh; echo $$MBLIT_BINDGEN)" ]; then \
		MBLIT_KFLAVOUR=bench scripts/setup; fi
	scripts/bench

# The end-to-end test (scripts/e2e): QEMU 10 in the test VM live-migrates a
# guest whose DMA runs on an mblit mdev into a second mdev, on both IOMMU
# back-ends, and the guest verifies every byte. Not part of make test.
# E2E_ARGS= passes options on (e.g. --broken-dirty-log, --only NAME).
e2e: module
	@if ! scripts/fetch-qemu --check; then scripts/setup --e2e; fi
	scripts/e2e $(E2E_ARGS) $(CURDIR)/mblit.ko

clean:
	$(MAKE) -C $(KDIR) M=$(CURDIR) $(KMAKE_ARGS) clean
	rm -rf target
