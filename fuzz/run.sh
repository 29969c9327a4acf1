#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 30) on a corpus seeded from the repository's own
# files (examples, fixtures) plus the regression inputs in tests/fixtures/fuzz/. Needs the nightly
# toolchain and cargo-fuzz. A crash exits non-zero; libFuzzer writes the input to
# fuzz/artifacts/TARGET/, and the input belongs in tests/fixtures/fuzz/TARGET/ as a regression.
# Usage: fuzz/run.sh [SECONDS] [TARGET ...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(check fmt safetensors npy image)
corpus=target/fuzz-corpus
for t in "${targets[@]}"; do
  mkdir -p "$corpus/$t"
  case $t in
    check|fmt) cp examples/*.cnn examples/errors/*.cnn tests/fixtures/jit/*.cnn "$corpus/$t/" ;;
    safetensors) cp tests/fixtures/ops/conv3x3.safetensors tests/fixtures/ops/bn.safetensors "$corpus/$t/" ;;
    npy) cp tests/fixtures/ops/conv3x3.input.npy tests/fixtures/ops/gap.input.npy "$corpus/$t/" ;;
    image) cp examples/images/digit_*.png tests/fixtures/images/*.png tests/fixtures/images/*.jpg "$corpus/$t/" ;;
  esac
  if [ -d "tests/fixtures/fuzz/$t" ]; then cp tests/fixtures/fuzz/$t/* "$corpus/$t/" 2>/dev/null || true; fi
  echo "== fuzz $t for ${seconds}s"
  (cd fuzz && cargo +nightly fuzz run "$t" "../$corpus/$t" -- -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1) 2>&1 \
    | grep -E "^(stat::|#[0-9]+ *DONE|==|SUMMARY|ERROR|Done)|cov:|panicked" | tail -12
done
