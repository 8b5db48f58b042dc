# Gatehouse entry points. Every target installs what it needs on a fresh Debian 12.
# ARCH=x86_64 (default) or ARCH=aarch64 picks the image the targets build and boot.
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
OUT ?= build
ARCH ?= x86_64
ifeq ($(ARCH),x86_64)
TARGET := x86_64-unknown-linux-gnu
BIN := target/$(TARGET)/release
CARGO_ENV :=
else ifeq ($(ARCH),aarch64)
TARGET := aarch64-unknown-linux-gnu
# Cross build with Debian's rustc-web, which ships an aarch64 std (rustup cannot
# fetch targets here). Its own target dir keeps it apart from the host toolchain.
BIN := target/cross/$(TARGET)/release
CARGO_ENV := RUSTC=/usr/bin/rustc CARGO_TARGET_DIR=target/cross \
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
else
$(error ARCH must be x86_64 or aarch64, not $(ARCH))
endif
IMAGE := $(OUT)/gatehouse-$(ARCH).img
# Production signing: the certificate and key bundles are signed with, and the CA
# the image trusts. Empty: development keys (scripts/signing-keys).
SIGNING_CERT ?=
SIGNING_KEY ?=
KEYRING ?=
export SIGNING_CERT SIGNING_KEY KEYRING

.PHONY: all deps binaries image run bundle bundle-tests update-tests init-tests lane-x86 lane-more boot-bench flash test check unit netns flash-tests e2e e2e-aarch64 clean fmt clippy fuzz

all: image

deps:
	@scripts/install-deps $(ARCH)

# Static binaries (glibc, crt-static): the image carries no Rust runtime deps.
binaries: deps
	$(CARGO_ENV) RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --target $(TARGET) -p gateway -p init

image: binaries
	image/build.sh $(BIN) $(OUT) $(ARCH)

run: image
	scripts/run-qemu $(IMAGE)

# A signed RAUC bundle of this image's root (scripts/signing-keys: development keys
# in ~/.gatehouse-keys unless SIGNING_CERT, SIGNING_KEY and KEYRING name the
# production ones; the image build puts KEYRING in the image).
bundle: image
	scripts/bundle $(ARCH) $(OUT)

# Writes a freshly built image (make run boots and changes the one in $(OUT)) to a
# USB stick or SD card, e.g. make flash DEV=/dev/sdb ARCH=aarch64. scripts/flash
# checks the device, asks before writing and verifies afterwards.
flash:
	@[ -n "$(DEV)" ] || { echo "usage: make flash DEV=/dev/sdX [ARCH=aarch64]" >&2; exit 2; }
	$(MAKE) image ARCH=$(ARCH)
	scripts/flash $(IMAGE) $(DEV)

unit: deps
	cargo test --locked --workspace

netns: deps
	cargo build --locked -p gateway
	scripts/run-netns-tests

# The flash tool against plain files and a loop device: no QEMU, no real disk.
flash-tests:
	@for t in tests/flash/*.sh; do echo "=== $$t"; bash $$t || exit 1; done

e2e: image
	scripts/e2e-qemu $(IMAGE)

# The aarch64 image under TCG, first boot only (boot, leases, DNS, NAT, admin
# page, slot confirmation), to keep CI time down; `make e2e ARCH=aarch64` runs it all.
e2e-aarch64:
	$(MAKE) image ARCH=aarch64
	E2E_QUICK=1 scripts/e2e-qemu $(OUT)/gatehouse-aarch64.img

# Bundles of both images (built by e2e and e2e-aarch64): verified, and rejected when damaged.
bundle-tests: e2e e2e-aarch64
	tests/bundle/bundle.sh x86_64 aarch64

# A/B updates in QEMU on the x86_64 image (built by e2e): happy path, broken gatewayd,
# power cut mid-install, kernel panic, bad bundles, config schema migration and rollback.
update-tests: e2e
	tests/update/update-qemu.sh $(OUT)/gatehouse-x86_64.img

# PID 1 in QEMU on the x86_64 image (built by e2e): service table, logs, backoff and
# crash loop, zombies, watchdog, fatal-error recovery; the WAN port rule and cable
# unplug/plug; the WLAN access point on mac80211_hwsim.
init-tests: e2e
	tests/init/init-qemu.sh $(OUT)/gatehouse-x86_64.img
	tests/net/link-qemu.sh $(OUT)/gatehouse-x86_64.img
	tests/wlan/wlan-qemu.sh $(OUT)/gatehouse-x86_64.img

# Fast loop: unit, netns and flash tests, no QEMU.
check: unit netns flash-tests

# Everything, QEMU included. Both images are built first; then the QEMU suites run
# as two lanes side by side (a guest spends much of its time waiting on timers, so
# two share the two cores; a compile beside them would starve them), each line
# tagged with its lane: [x86] the end-to-end test and the update tests; [more] the
# aarch64 end-to-end test, then the PID 1, WAN and WLAN tests. The bundle tests
# need both images, so they come last. Each suite alone: the targets above.
X86_IMAGE := $(OUT)/gatehouse-x86_64.img
test: check
	$(MAKE) image ARCH=x86_64
	$(MAKE) image ARCH=aarch64
	$(MAKE) boot-bench
	$(MAKE) -j2 lane-x86 lane-more
	tests/bundle/bundle.sh x86_64 aarch64

# The init issue's boot figure (PID 1 start -> DHCP answering) on a quiet machine, before
# the lanes start: a few boots of each image, one at a time. The figures are printed, not
# asserted; a boot that never gets there fails.
boot-bench:
	set -o pipefail; { scripts/bench-boot $(X86_IMAGE) 3 && \
	    scripts/bench-boot $(OUT)/gatehouse-aarch64.img 2; } 2>&1 | sed -u 's/^/[boot] /'

lane-x86:
	set -o pipefail; { scripts/e2e-qemu $(X86_IMAGE) && \
	    tests/update/update-qemu.sh $(X86_IMAGE); } 2>&1 | sed -u 's/^/[x86]  /'

lane-more:
	set -o pipefail; { LAB=ghr E2E_QUICK=1 scripts/e2e-qemu $(OUT)/gatehouse-aarch64.img && \
	    tests/init/init-qemu.sh $(X86_IMAGE) && \
	    tests/net/link-qemu.sh $(X86_IMAGE) && \
	    tests/wlan/wlan-qemu.sh $(X86_IMAGE); } 2>&1 | sed -u 's/^/[more] /'

fmt:
	cargo fmt --all

clippy:
	cargo clippy --workspace --all-targets -- -D warnings

clean:
	rm -rf $(OUT) target

# Each cargo-fuzz target (network-input parsers) for FUZZ_SECONDS (default 20) seconds.
fuzz: deps
	scripts/fuzz-smoke
