# Everything builds and tests with the committed Cargo.lock.
CARGO ?= cargo
NAMES ?= alice bob
ARGS ?=
BIN := target/release/chat

.PHONY: build certs run test soak bench fuzz

build:
	$(CARGO) build --release --locked

# Creates certs/NAME.crt and certs/NAME.key for each of NAMES, skipping existing ones.
certs: build
	@for name in $(NAMES); do \
		if [ -e certs/$$name.crt ] || [ -e certs/$$name.key ]; then \
			echo "certs/$$name: exists, skipped"; \
		else \
			$(BIN) certs --name $$name --dir certs || exit 1; \
		fi; \
	done

# make run ARGS="--name alice --listen 7001": identities from certs/, as make certs made them.
run:
	$(CARGO) run --release --locked -- --certs-dir certs $(ARGS)

# The case-insensitive download folder of tests/it/folders.rs and tests/it/transfer.rs
# is an NTFS image mounted by ntfs-3g (tests/support/install-ntfs-3g, as for the NAT
# tools below).
# tests/it/nat.rs and tests/it/reach.rs need nft (nftables), miniupnpd and tcpdump:
# installed with apt-get where this
# runs as root, else that test says why it is skipped.
NAT_PACKAGES := nftables miniupnpd miniupnpd-nftables tcpdump
# The integration tests mostly wait on the processes they start, so more of them run
# at once than there are cores.
TEST_THREADS ?= 8
# cargo audit checks Cargo.lock against the RustSec advisories (tests/support/audit:
# a prebuilt cargo-audit from PyPI; CHAT_ADVISORY_DB=DIR reads a copy of the database
# instead of fetching it; skipped, with the reason printed, where neither can be had).
# Clippy lints every target while it is built for the tests (tests/support/linted),
# so each dependency compiles once. The Windows build is linted too
# (tests/support/windows-clippy installs the target and MinGW, or says why it skips);
# it cannot be run here.
# The fuzz crate's own Cargo.lock must follow the crate's dependencies, or make fuzz
# stops at its first step: checked here, where nothing else would notice.
test:
	@tests/support/install-nat-tools $(NAT_PACKAGES)
	@tests/support/install-ntfs-3g
	$(CARGO) fmt --check
	$(CARGO) metadata --locked --manifest-path fuzz/Cargo.toml --format-version 1 >/dev/null
	@tests/support/audit
	tests/support/linted $(CARGO) test --locked --all-targets --no-run
	@CARGO="$(CARGO)" tests/support/windows-clippy
	tests/support/linted $(CARGO) test --locked -- --show-output --test-threads=$(TEST_THREADS)

# The seeded soak under random faults (tests/it/soak.rs), for SOAK_SECONDS; it prints its
# seed, and CHAT_SOAK_SEED=S make soak replays that run's actions.
SOAK_SECONDS ?= 120
soak:
	CHAT_SOAK_SECONDS=$(SOAK_SECONDS) $(CARGO) test --locked --release --test it -- --nocapture soak::

# chat vs OpenSSL's tools and scp, scp -r, tar | ssh and rsync -a (if sshd and rsync
# are installed) on loopback, the receivers writing to this repository's disk and to
# tmpfs. BENCH_MIB, BENCH_ROUNDS and BENCH_DIR change the defaults; BENCH_CHAT measures
# another build of chat.
bench:
	@benches/support/install-sshd
	$(CARGO) bench --locked --bench transfer
	$(CARGO) bench --locked --bench folders
	$(CARGO) bench --locked --bench floods
	$(CARGO) bench --locked --bench both_ways
	$(CARGO) bench --locked --bench slow_link
	$(CARGO) build --release --locked --examples
	$(CARGO) bench --locked --bench reach

# Coverage-guided fuzzing with cargo fuzz (needs a nightly toolchain and
# `cargo install cargo-fuzz --locked`; not part of make test): writes the seed corpus,
# checks fuzz/Cargo.lock is up to date, then runs each target in turn, one at a time,
# for FUZZ_SECONDS. A failure stops it; the input is in fuzz/artifacts/<target>/.
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?= decoder receiver names manifest sanitizer
fuzz:
	$(CARGO) +nightly metadata --locked --manifest-path fuzz/Cargo.toml --format-version 1 >/dev/null
	$(CARGO) +nightly run --locked --manifest-path fuzz/Cargo.toml --example seeds
	nice -n 10 $(CARGO) +nightly fuzz build
	@for target in $(FUZZ_TARGETS); do \
		echo "fuzz $$target for $(FUZZ_SECONDS) s"; \
		nice -n 10 $(CARGO) +nightly fuzz run $$target -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done
