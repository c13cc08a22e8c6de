# SPDX-License-Identifier: GPL-2.0
# Shared settings for mblit's scripts; sourced, not run.
#
# The kernel and bindgen live in a cache outside the work tree (make clean
# with M= deletes every .ko below M=, and a clean clone must not rebuild what
# this machine already built).

MBLIT_KVER_MAJOR=${MBLIT_KVER_MAJOR:-7.3}
# test: the test kernel, every check on; bench: the benchmark kernel.
MBLIT_KFLAVOUR=${MBLIT_KFLAVOUR:-test}
MBLIT_CACHE=${MBLIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mblit}
MBLIT_BINDGEN_VERSION=0.73.0
MBLIT_BINDGEN=$MBLIT_CACHE/cargo/bin/bindgen
LIBCLANG_PATH=/usr/lib/llvm-19/lib
# Debian's rustc-web ships the library source the kernel needs; the rustup
# toolchain first on PATH does not.
MBLIT_RUSTC=/usr/bin/rustc
export LIBCLANG_PATH MBLIT_CACHE MBLIT_KVER_MAJOR MBLIT_KFLAVOUR

# The make variables every kernel or module build gets.
mblit_kmake_args() {
	printf '%s\n' "RUSTC=$MBLIT_RUSTC" "BINDGEN=$MBLIT_BINDGEN" \
		"HOSTRUSTC=$MBLIT_RUSTC" "RUSTDOC=/usr/bin/rustdoc"
}
