# SPDX-License-Identifier: GPL-2.0
#
# mblit top-level targets. The module itself is built by Kbuild:
#   make -C $(KDIR) M=$(CURDIR)
# KDIR defaults to the cached test kernel that scripts/setup builds.

KDIR ?= $(shell scripts/kdir)/build
KMAKE_ARGS := $(shell . scripts/env.sh && mblit_kmake_args)

.PHONY: all module setup host-test check test demo clean

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

# rustfmt and clippy over the host-buildable logic, rustfmt over all Rust.
check:
	# rustfmt follows the mod tree, rust/ included.
	rustfmt --check --edition 2021 src/mblit_main.rs src/logic/lib.rs
	cargo clippy --quiet --manifest-path $(CURDIR)/Cargo.toml --all-targets -- -D warnings

test: host-test module
	scripts/check-stack $(CURDIR)/mblit.ko
	scripts/vm-test $(CURDIR)/mblit.ko

# The migration demo: one VM boot that migrates a running workload between
# two mdevs through the DEVICE_STATE region and checks the result.
demo: module
	scripts/vm-test --demo $(CURDIR)/mblit.ko

clean:
	$(MAKE) -C $(KDIR) M=$(CURDIR) $(KMAKE_ARGS) clean
	rm -rf target
