# Gatehouse entry points. Every target installs what it needs on a fresh Debian 12.
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
OUT ?= build
TARGET := x86_64-unknown-linux-gnu
BIN := target/$(TARGET)/release
IMAGE := $(OUT)/gatehouse-x86_64.img

.PHONY: all deps binaries image run test check unit netns e2e clean fmt clippy fuzz

all: image

deps:
	@scripts/install-deps

# Static binaries (glibc, crt-static): the image carries no Rust runtime deps.
binaries: deps
	RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --target $(TARGET) -p gateway -p init

image: binaries
	image/build.sh $(BIN) $(OUT)

run: image
	scripts/run-qemu $(IMAGE)

unit: deps
	cargo test --locked --workspace

netns: deps
	cargo build --locked -p gateway
	scripts/run-netns-tests

e2e: image
	scripts/e2e-qemu $(IMAGE)

# Fast loop: unit and netns tests, no QEMU.
check: unit netns

# Everything, QEMU included.
test: check e2e

fmt:
	cargo fmt --all

clippy:
	cargo clippy --workspace --all-targets -- -D warnings

clean:
	rm -rf $(OUT) target

# Each cargo-fuzz target (network-input parsers) for FUZZ_SECONDS (default 20) seconds.
fuzz: deps
	scripts/fuzz-smoke
