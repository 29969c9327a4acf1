#!/usr/bin/env python3
"""The machine's peaks, the figures BENCHMARKS.md divides cnnc's by: FMA GFLOP/s at 128, 256 and
512 bits, and memory copy bandwidth (GB/s read plus written, as a streaming fc layer counts its
reads), each on 1 and on all threads. Compiles a small C program with gcc into a temporary
directory: the FMA loop runs 12 independent vfmadd231ps chains (enough to cover latency x
throughput on Zen and Intel cores); widths the CPU lacks are skipped. The copy moves 256 MiB
with memcpy, split between the threads.

Usage: tools/peaks.py [--seconds 1.0]
Needs: gcc
"""
import argparse
import os
import subprocess
import tempfile

SOURCE = r"""
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long iters;
static volatile float seed[12] = {1.0f, 1.1f, 1.2f, 1.3f, 1.4f, 1.5f, 1.6f, 1.7f, 1.8f, 1.9f, 2.0f, 2.1f};
static int width;

#define CHAINS(T, SET, FMA, STORE)                                                        \
  /* Distinct starts: identical chains would be merged into one by the compiler. */         \
  T a0 = SET(seed[0]), a1 = SET(seed[1]), a2 = SET(seed[2]), a3 = SET(seed[3]),           \
    a4 = SET(seed[4]), a5 = SET(seed[5]), a6 = SET(seed[6]), a7 = SET(seed[7]),           \
    a8 = SET(seed[8]), a9 = SET(seed[9]), a10 = SET(seed[10]), a11 = SET(seed[11]);       \
  T m = SET(0.999999f), c = SET(1e-7f);                                                   \
  for (long i = 0; i < iters; i++) {                                                      \
    a0 = FMA(a0, m, c); a1 = FMA(a1, m, c); a2 = FMA(a2, m, c); a3 = FMA(a3, m, c);       \
    a4 = FMA(a4, m, c); a5 = FMA(a5, m, c); a6 = FMA(a6, m, c); a7 = FMA(a7, m, c);       \
    a8 = FMA(a8, m, c); a9 = FMA(a9, m, c); a10 = FMA(a10, m, c); a11 = FMA(a11, m, c);   \
  }                                                                                       \
  T s = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;                      \
  float out[16]; STORE(out, s); sink += out[0];

static volatile float sink;

__attribute__((target("fma"))) static void run128(void) {
  CHAINS(__m128, _mm_set1_ps, _mm_fmadd_ps, _mm_storeu_ps)
}
__attribute__((target("avx2,fma"))) static void run256(void) {
  CHAINS(__m256, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_storeu_ps)
}
__attribute__((target("avx512f"))) static void run512(void) {
  CHAINS(__m512, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_storeu_ps)
}

static void *work(void *arg) {
  (void)arg;
  if (width == 128) run128();
  else if (width == 256) run256();
  else run512();
  return NULL;
}

#include <string.h>
static char *src_buf, *dst_buf;
static long chunk;
static void *copy(void *arg) {
  long i = (long)arg;
  memcpy(dst_buf + i * chunk, src_buf + i * chunk, chunk);
  return NULL;
}

/* `copy THREADS`: best of 5 copies of 256 MiB, in GB/s read plus written. */
static int copy_bandwidth(int threads) {
  long total = 256L << 20;
  src_buf = malloc(total); dst_buf = malloc(total);
  memset(src_buf, 1, total); memset(dst_buf, 0, total);
  chunk = total / threads;
  double best = 0;
  for (int r = 0; r < 5; r++) {
    pthread_t t[64];
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < threads; i++) pthread_create(&t[i], NULL, copy, (void *)i);
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double s = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) * 1e-9;
    if (2.0 * total / s * 1e-9 > best) best = 2.0 * total / s * 1e-9;
  }
  printf("%.1f\n", best);
  return 0;
}

int main(int argc, char **argv) {
  if (strcmp(argv[1], "copy") == 0) return copy_bandwidth(atoi(argv[2]));
  width = atoi(argv[1]);
  int threads = atoi(argv[2]);
  iters = atol(argv[3]);
  pthread_t t[64];
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, work, NULL);
  for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
  clock_gettime(CLOCK_MONOTONIC, &b);
  double s = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) * 1e-9;
  double flops = 2.0 * 12 * (width / 32) * (double)iters * threads;
  printf("%.1f\n", flops / s * 1e-9);
  return 0;
}
"""


def flags():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0)
    a = ap.parse_args()
    have = flags()
    widths = [w for w, f in ((128, "fma"), (256, "avx2"), (512, "avx512f")) if f in have]
    threads = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as d:
        src, exe = os.path.join(d, "fma.c"), os.path.join(d, "fma")
        open(src, "w").write(SOURCE)
        subprocess.run(["gcc", "-O2", "-pthread", src, "-o", exe], check=True)
        print(f"{'width':>6} {'1 thread':>10} {f'{threads} threads':>11}   GFLOP/s (best of 3)")
        for w in widths:
            row = []
            for t in (1, threads):
                # Calibrate to about the asked duration, then take the best of three runs.
                probe = float(subprocess.run([exe, str(w), "1", "10000000"], capture_output=True,
                                             text=True, check=True).stdout)
                iters = int(probe * 1e9 * a.seconds / (2 * 12 * (w // 32)))
                best = max(float(subprocess.run([exe, str(w), str(t), str(iters)], capture_output=True,
                                                text=True, check=True).stdout) for _ in range(3))
                row.append(best)
            print(f"{w:>6} {row[0]:>10.1f} {row[1]:>11.1f}")
        copy = [float(subprocess.run([exe, "copy", str(t)], capture_output=True, text=True, check=True).stdout)
                for t in (1, threads)]
        print(f"{'copy':>6} {copy[0]:>10.1f} {copy[1]:>11.1f}   GB/s read + written (memcpy, 256 MiB)")


if __name__ == "__main__":
    main()
