/* quant/calibrate.c: calibration sequences and Hessians. The Hessian of block 0's
 * attention input is recomputed independently in double from its definition
 * (rms_norm(resid_mix of the normed embeddings)); the fast fp32-block accumulation agrees
 * with exact fp64; c_q/c_k/c_v share one Hessian; GPTQ with these Hessians beats
 * round-to-nearest on the model's own Hessian-weighted error; sampling is seeded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "io/checkpoint.h"
#include "kernels/cpu/cpu_hessian.h"
#include "quant/artifact.h"
#include "quant/calibrate.h"
#include "quant/pipeline.h"
#include "tests/testlib.h"

static void test_fast_accumulate(void **st) {
  (void)st;
  enum { K = 96, N = 5000 };
  float *x = malloc(sizeof *x * K * N);
  uint64_t rng = 11;
  for (int i = 0; i < K * N; i++) x[i] = qg_test_randf(&rng) + 0.3f; /* a mean: harder sums */
  qg_hessian a, b;
  assert_int_equal(qg_hessian_init(&a, K), QG_OK);
  assert_int_equal(qg_hessian_init(&b, K), QG_OK);
  assert_int_equal(qg_hessian_accumulate(&a, x, N, K), QG_OK);
  assert_int_equal(qg_hessian_accumulate_fast(&b, x, 1234, K), QG_OK);
  assert_int_equal(qg_hessian_accumulate_fast(&b, x + 1234 * K, N - 1234, K), QG_OK);
  assert_int_equal(qg_hessian_finalize(&a), QG_OK);
  assert_int_equal(qg_hessian_finalize(&b), QG_OK);
  double worst = 0;
  for (int i = 0; i < K * K; i++) {
    double r = fabs(a.H[i] - b.H[i]) / (fabs(a.H[i]) + 1e-3);
    worst = r > worst ? r : worst;
  }
  assert_true(worst < 1e-5);
  qg_hessian_free(&a);
  qg_hessian_free(&b);
  free(x);
}

/* The pooled block sums (kernels/cpu/cpu_hessian.c) are the bits of the plain loop: one
 * single-threaded fp32 ssyrk per 1024-row block, added into fp64 block after block; so
 * the Hessians do not depend on the thread count. (The reference runs one BLAS thread, as
 * the pool's blocks do: a threaded ssyrk may split its sums differently, and does with
 * OpenBLAS's Haswell kernels.) Several widths, row counts that leave a partial block,
 * fresh random rows. */
static void test_pooled_blocks_bitwise(void **st) {
  (void)st;
  const int64_t shapes[][2] = {{5000, 96}, {3001, 384}, {2049, 130}, {700, 768}};
  uint64_t rng = 77;
  for (size_t c = 0; c < sizeof shapes / sizeof *shapes; c++) {
    int64_t N = shapes[c][0], K = shapes[c][1];
    float *x = malloc(sizeof *x * (size_t)(N * K)), *blk = malloc(sizeof *blk * (size_t)(K * K));
    double *a = calloc((size_t)(K * K), sizeof *a), *b = calloc((size_t)(K * K), sizeof *b);
    for (int64_t i = 0; i < N * K; i++) x[i] = qg_test_randf(&rng) * (i % 3 ? 1.0f : 3.0f) + 0.1f;
    int blas_threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
    for (int64_t r0 = 0; r0 < N; r0 += 1024) {
      int64_t nr = N - r0 < 1024 ? N - r0 : 1024;
      cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)K, (int)nr, 1.0f, x + r0 * K, (int)K, 0.0f, blk, (int)K);
      for (int64_t i = 0; i < K; i++)
        for (int64_t j = i; j < K; j++) a[i * K + j] += blk[i * K + j];
    }
    openblas_set_num_threads(blas_threads);
    assert_int_equal(qg_cpu_hessian_add(b, x, N, K), QG_OK);
    assert_memory_equal(a, b, sizeof *a * (size_t)(K * K));
    free(x), free(blk), free(a), free(b);
  }
}

/* The op table's accumulator (kernels/ops.h hacc_*) on the CPU: fed in parts, read back
 * as the full symmetric sum with its row count, equal to the fp64 reference within the
 * fp32-block error, and symmetric exactly. */
static void test_backend_hacc(void **st) {
  (void)st;
  enum { K = 80, N = 3001 };
  float *x = malloc(sizeof *x * K * N);
  uint64_t rng = 29;
  for (int i = 0; i < K * N; i++) x[i] = qg_test_randf(&rng) - 0.2f;
  qg_hessian ref;
  assert_int_equal(qg_hessian_init(&ref, K), QG_OK);
  assert_int_equal(qg_hessian_accumulate(&ref, x, N, K), QG_OK);
  const qg_ops *o = qg_ops_cpu();
  qg_hacc *h;
  assert_int_equal(o->hacc_create(o, K, &h), QG_OK);
  assert_int_equal(o->hacc_add(o, h, x, 1000), QG_OK);
  assert_int_equal(o->hacc_add(o, h, x + 1000 * K, N - 1000), QG_OK);
  double *H = malloc(sizeof *H * K * K);
  int64_t rows = -1;
  assert_int_equal(o->hacc_read(o, h, H, &rows), QG_OK);
  assert_int_equal(rows, N);
  for (int i = 0; i < K; i++)
    for (int j = 0; j < K; j++) {
      double r = ref.H[(i < j ? i : j) * K + (i < j ? j : i)]; /* the reference's upper triangle */
      assert_true(fabs(H[i * K + j] - r) <= 1e-5 * (fabs(r) + 1));
      assert_true(H[i * K + j] == H[j * K + i]);
    }
  o->hacc_free(o, h);
  qg_hessian_free(&ref);
  free(H), free(x);
}

static void test_model_hessians(void **st) {
  (void)st;
  const char *p;
  QG_REQUIRE_CONTEST_FILE(p, "tiny3L128d_nolanvild_3c063e5.pt");
  qg_state s;
  assert_int_equal(qg_checkpoint_load(p, &s, NULL), QG_OK);
  qg_gpt m;
  qg_gpt_options opt = {.mlp_power = 3};
  assert_int_equal(qg_gpt_init(&m, &s, &opt, qg_ops_cpu()), QG_OK);
  enum { N = 4, L = 64 };
  int32_t seqs[N * L], again[N * L];
  assert_int_equal(qg_calib_generate(&m, N, L, 1.0f, 77, 1, seqs), QG_OK);
  assert_int_equal(qg_calib_generate(&m, N, L, 1.0f, 77, 1, again), QG_OK);
  assert_memory_equal(seqs, again, sizeof seqs); /* seeded */
  for (int i = 0; i < N; i++) assert_int_equal(seqs[i * L], 1);
  qg_hessian_map map;
  qg_hessian_map_init(&map);
  assert_int_equal(qg_calib_hessians(&m, seqs, N, L, 3, &map), QG_OK);
  assert_int_equal(map.n, 3 * 6 + 1); /* 6 linear weights per block + the tied head */
  const qg_hessian *hq = qg_hessian_map_find(&map, "blocks.0.attn.c_q.weight");
  const qg_hessian *hk = qg_hessian_map_find(&map, "blocks.0.attn.c_v.weight");
  assert_non_null(hq);
  assert_non_null(hk);
  assert_memory_equal(hq->H, hk->H, sizeof(double) * 128 * 128);
  assert_int_equal(hq->n, N * L);
  assert_int_equal(qg_hessian_map_find(&map, "blocks.2.mlp.proj.weight")->k, 256);
  assert_non_null(qg_hessian_map_find(&map, "tok_emb.weight"));
  /* independent: block 0's attention input is rms(mix0*x0 + mix1*x0), x0 = rms(emb[tok]) */
  const qg_tensor *emb = qg_state_find_c(&s, "tok_emb.weight"), *mix = qg_state_find_c(&s, "blocks.0.resid_mix");
  const float *E = emb->data, *M = mix->data;
  double *H = calloc(128 * 128, sizeof *H), v[128];
  for (int r = 0; r < N * L; r++) {
    const float *e = E + (int64_t)seqs[r] * 128;
    double ss = 0;
    for (int j = 0; j < 128; j++) ss += (double)e[j] * e[j];
    double inv = 1 / sqrt(ss / 128 + 1.1920928955078125e-07);
    double s2 = 0;
    for (int j = 0; j < 128; j++) {
      double x0 = e[j] * inv;
      v[j] = M[j] * x0 + M[128 + j] * x0;
      s2 += v[j] * v[j];
    }
    double inv2 = 1 / sqrt(s2 / 128 + 1.1920928955078125e-07);
    for (int j = 0; j < 128; j++) v[j] *= inv2;
    for (int i = 0; i < 128; i++)
      for (int j = 0; j < 128; j++) H[i * 128 + j] += v[i] * v[j];
  }
  double worst = 0;
  for (int i = 0; i < 128 * 128; i++) {
    double want = 2.0 * H[i] / (N * L), r = fabs(hq->H[i] - want) / (fabs(want) + 1e-3);
    worst = r > worst ? r : worst;
  }
  assert_true(worst < 1e-4);
  free(H);

  /* GPTQ with these Hessians vs round-to-nearest, same grid: lower weighted error */
  qg_spec sg, sr;
  assert_int_equal(qg_spec_parse_inline("blocks.*.mlp.fc.weight: gptq bits=3", &sg), QG_OK);
  assert_int_equal(qg_spec_parse_inline("blocks.*.mlp.fc.weight: rowwise bits=3", &sr), QG_OK);
  qg_quantize_opts qo = {.hessians = &map};
  qg_qmodel g, r;
  assert_int_equal(qg_quantize_model(&s, &sg, &qo, &g), QG_OK);
  assert_int_equal(qg_quantize_model(&s, &sr, &qo, &r), QG_OK);
  int compared = 0;
  for (int i = 0; i < g.n; i++)
    if (strstr(g.t[i].q.name, "mlp.fc.weight")) {
      assert_true(g.t[i].herr < r.t[i].herr);
      compared++;
    }
  assert_int_equal(compared, 3);
  qg_qmodel_free(&g);
  qg_qmodel_free(&r);
  qg_spec_free(&sg);
  qg_spec_free(&sr);
  qg_hessian_map_free(&map);
  qg_gpt_free(&m);
  qg_state_free(&s);
}

/* Stream position <-> token: multiplication by an odd constant is a bijection mod 2^16,
 * so every position below 65536 has its own token and neighbours get unrelated ones
 * (a sequence shifted by one, or read twice, cannot pass for another). */
#define POS_MUL 40503u
static uint16_t pos_token(int64_t pos) { return (uint16_t)((uint32_t)pos * POS_MUL); }

/* The documented rule, written out: slots of len tokens from skip on; n distinct slot
 * indices drawn with splitmix64 (seeded) modulo the slot count, a repeat redrawn; in
 * stream order. */
static void expected_starts(int64_t total, int n, int len, uint64_t seed, int64_t skip, int64_t *starts) {
  int64_t slots = (total - skip) / len;
  uint64_t st = seed;
  for (int i = 0; i < n; i++) {
    int64_t r;
    int dup;
    do {
      r = (int64_t)(qg_test_rand(&st) % (uint64_t)slots);
      dup = 0;
      for (int j = 0; j < i; j++) dup |= starts[j] == r;
    } while (dup);
    starts[i] = r;
  }
  for (int i = 1; i < n; i++) /* insertion sort: n is small */
    for (int j = i; j > 0 && starts[j - 1] > starts[j]; j--) {
      int64_t t = starts[j];
      starts[j] = starts[j - 1], starts[j - 1] = t;
    }
  for (int i = 0; i < n; i++) starts[i] = skip + starts[i] * len;
}

/* Shard calibration: every sequence is the stream run at a slot of the documented rule
 * (checked position by position, so a slot read twice, a shifted offset or a wrong
 * order fails), slots do not overlap and lie after the skipped prefix, a read may
 * cross a shard boundary, the seed decides the picks. */
static void test_from_shards(void **st) {
  (void)st;
  enum { NT = 10000, CUT = 4025, N = 20, LEN = 50, SKIP = 2000 };
  uint16_t *t = malloc(sizeof *t * NT);
  for (int i = 0; i < NT; i++) t[i] = pos_token(i);
  int32_t *pos_of = malloc(sizeof *pos_of * 65536);
  for (int i = 0; i < 65536; i++) pos_of[i] = -1;
  for (int i = 0; i < NT; i++) pos_of[t[i]] = i;
  char *dir = qg_test_tmpdir();
  char path[4200];
  /* two shards, split inside a slot (4025 - 2000 is not a multiple of 50) */
  snprintf(path, sizeof path, "%s/train_000000.bin", dir);
  assert_int_equal(qg_shard_write(path, t, CUT), QG_OK);
  snprintf(path, sizeof path, "%s/train_000001.bin", dir);
  assert_int_equal(qg_shard_write(path, t + CUT, NT - CUT), QG_OK);
  snprintf(path, sizeof path, "%s/train_*.bin", dir);
  qg_shards s;
  assert_int_equal(qg_shards_open(path, &s), QG_OK);
  assert_int_equal(qg_shards_count(&s), NT);
  int32_t out[N * LEN], first[N * LEN], again[N * LEN];
  int64_t want[N];
  int crossings = 0;
  for (uint64_t seed = 9; seed < 12; seed++) {
    assert_int_equal(qg_calib_from_shards(&s, N, LEN, seed, SKIP, out), QG_OK);
    expected_starts(NT, N, LEN, seed, SKIP, want);
    for (int i = 0; i < N; i++) {
      int64_t start = pos_of[(uint16_t)out[i * LEN]];
      if (start < 0) fail_msg("seed %llu sequence %d: token %d is not from the stream", (unsigned long long)seed, i,
                              out[i * LEN]);
      if (start != want[i])
        fail_msg("seed %llu sequence %d starts at stream position %lld, the rule gives %lld", (unsigned long long)seed,
                 i, (long long)start, (long long)want[i]);
      /* properties the rule implies, stated on their own */
      assert_true(start >= SKIP && start + LEN <= NT);
      assert_int_equal((start - SKIP) % LEN, 0);
      if (i) assert_true(start >= want[i - 1] + LEN); /* in order and not overlapping */
      crossings += start < CUT && start + LEN > CUT;
      for (int k = 0; k < LEN; k++)
        if (out[i * LEN + k] != pos_token(start + k))
          fail_msg("seed %llu sequence %d token %d: position %d, expected %lld", (unsigned long long)seed, i, k,
                   pos_of[(uint16_t)out[i * LEN + k]], (long long)(start + k));
    }
    if (seed == 9) memcpy(first, out, sizeof out);
  }
  /* seeded: the same seed repeats exactly; another seed picks other slots */
  assert_int_equal(qg_calib_from_shards(&s, N, LEN, 9, SKIP, again), QG_OK);
  assert_memory_equal(first, again, sizeof first);
  assert_int_equal(qg_calib_from_shards(&s, N, LEN, 10, SKIP, again), QG_OK);
  assert_true(memcmp(first, again, sizeof first) != 0);
  print_message("3 seeds x %d sequences at the rule's positions; %d reads crossed the shard boundary\n", N, crossings);
  /* all 160 slots: the whole stream after skip, in order (a read across the boundary
   * at 4025 among them) */
  int32_t *all = malloc(sizeof *all * 160 * LEN);
  assert_int_equal(qg_calib_from_shards(&s, 160, LEN, 5, SKIP, all), QG_OK);
  for (int64_t i = 0; i < 160 * LEN; i++)
    if (all[i] != pos_token(SKIP + i)) fail_msg("all slots: token %lld is position %d", (long long)i, pos_of[(uint16_t)all[i]]);
  free(all);
  assert_int_equal(qg_calib_from_shards(&s, 161, LEN, 9, SKIP, out), QG_ERR_INPUT); /* only 160 slots */
  qg_shards_close(&s);
  qg_test_rmdir(dir);
  free(t), free(pos_of);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fast_accumulate),
      cmocka_unit_test(test_backend_hacc),
      cmocka_unit_test(test_pooled_blocks_bitwise),
      cmocka_unit_test(test_model_hessians),
      cmocka_unit_test(test_from_shards),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
