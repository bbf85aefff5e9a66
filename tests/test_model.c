/* model/: the contest GPT on the CPU backend against an independent float64 numpy forward
 * pass (tests/reference/make_model_refs.py, vectors in tests/data/model_ref/): per-token
 * NLL of sampled sequences (lengths 1 to 1024 and a batch of 3) on the real checkpoints,
 * within 1e-4 relative. Also the config inference and its errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "io/checkpoint.h"
#include "model/gpt.h"
#include "quant/artifact.h"
#include "tests/testlib.h"

/* Reads the next line of a reference file into buf; 0 at end. */
static int next_line(const char *data, size_t len, size_t *pos, char **line) {
  if (*pos >= len) return 0;
  const char *s = data + *pos, *nl = memchr(s, '\n', len - *pos);
  size_t n = nl ? (size_t)(nl - s) : len - *pos;
  *line = malloc(n + 1);
  memcpy(*line, s, n);
  (*line)[n] = 0;
  *pos += n + (nl ? 1 : 0);
  return 1;
}

static void check_reference(const char *ref_name) {
  char path[4096];
  snprintf(path, sizeof path, "%s/tests/data/model_ref/%s", QG_SOURCE_DIR, ref_name);
  uint8_t *d;
  size_t len, pos = 0;
  assert_int_equal(qg_read_file(path, &d, &len, 0), QG_OK);
  char *line, ckpt[256] = "";
  float p = 2;
  qg_gpt m = {0};
  int loaded = 0, cases = 0;
  double worst = 0;
  int64_t n_checked = 0;
  while (next_line((const char *)d, len, &pos, &line)) {
    if (!strncmp(line, "# checkpoint: ", 14)) snprintf(ckpt, sizeof ckpt, "%s", line + 14);
    if (!strncmp(line, "# mlp_power: ", 13)) p = strtof(line + 13, NULL);
    int B = 0, L = 0;
    if (sscanf(line, "seq %d", &L) == 1) B = 1;
    else if (sscanf(line, "batch %d %d", &B, &L) != 2) B = 0;
    free(line);
    if (!B) continue;
    if (!loaded) {
      const char *cp = qg_test_contest_file(ckpt);
      if (!cp) {
        print_message("SKIP: %s not found (needs ../shared/contest beside the checkout, or QG_CONTEST_DIR)\n", ckpt);
        free(d);
        skip();
      }
      qg_gpt_options opt = {.mlp_power = p};
      assert_int_equal(qg_gpt_load(&m, cp, &opt, qg_ops_cpu()), QG_OK);
      loaded = 1;
    }
    int32_t *seqs = malloc(sizeof *seqs * (size_t)B * (L + 1));
    double *ref = malloc(sizeof *ref * (size_t)B * L);
    for (int b = 0; b < B; b++) {
      assert_true(next_line((const char *)d, len, &pos, &line));
      assert_int_equal(strncmp(line, "tokens ", 7), 0);
      char *s = line + 7;
      for (int t = 0; t <= L; t++) seqs[b * (L + 1) + t] = (int32_t)strtol(s, &s, 10);
      free(line);
      assert_true(next_line((const char *)d, len, &pos, &line));
      assert_int_equal(strncmp(line, "nll ", 4), 0);
      s = line + 4;
      for (int t = 0; t < L; t++) ref[b * L + t] = strtod(s, &s);
      free(line);
    }
    qg_token_stat *st = malloc(sizeof *st * (size_t)B * L);
    assert_int_equal(qg_gpt_score(&m, seqs, B, L, st), QG_OK);
    for (int64_t i = 0; i < (int64_t)B * L; i++) {
      double rel = fabs(st[i].nll_a - ref[i]) / fmax(fabs(ref[i]), 1e-2);
      if (rel > worst) worst = rel;
      if (rel > 1e-4) fail_msg("%s case %d position %lld: nll %.8f, reference %.8f", ref_name, cases, (long long)i, st[i].nll_a, ref[i]);
      n_checked++;
    }
    free(st);
    free(seqs);
    free(ref);
    cases++;
  }
  assert_int_equal(cases, 6);
  print_message("%s: %lld positions, worst relative error %.2e\n", ref_name, (long long)n_checked, worst);
  qg_gpt_free(&m);
  free(d);
}

static void test_samtruss(void **st) { (void)st; check_reference("samtruss.txt"); }
static void test_montysteele(void **st) { (void)st; check_reference("montysteele.txt"); }
static void test_nolanvild_pt(void **st) {
  (void)st;
  check_reference("nolanvild_pt_p2.txt");
  check_reference("nolanvild_pt_p3.txt");
}
static void test_nolanvild_ptz(void **st) {
  (void)st;
  check_reference("nolanvild_ptz_p3.txt");
}

/* Shape inference and the errors for unknown, missing and misshapen tensors. */
static void test_config_errors(void **st) {
  (void)st;
  const char *p;
  QG_REQUIRE_CONTEST_FILE(p, "tiny3L128d_nolanvild_3c063e5.pt");
  qg_state s;
  assert_int_equal(qg_checkpoint_load(p, &s, NULL), QG_OK);
  qg_gpt_config c;
  assert_int_equal(qg_gpt_config_from_state(&s, NULL, &c), QG_OK);
  assert_int_equal(c.n_layers, 3);
  assert_int_equal(c.n_enc, 1);
  assert_int_equal(c.n_skip, 1);
  assert_int_equal(c.n_head, 4);
  assert_int_equal(c.n_kv_head, 2);
  assert_int_equal(c.mlp_hidden, 256);
  assert_true(c.tied);
  assert_int_equal(qg_gpt_param_count(&c), qg_state_numel(&s));
  /* an extra tensor */
  int64_t sh[1] = {3};
  assert_int_equal(qg_state_add(&s, "blocks.1.attn.bias", QG_F32, 1, sh, NULL), QG_OK);
  assert_int_equal(qg_gpt_config_from_state(&s, NULL, &c), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "blocks.1.attn.bias"));
  qg_state_free(&s);
  /* a missing tensor */
  assert_int_equal(qg_checkpoint_load(p, &s, NULL), QG_OK);
  free(s.t[s.n - 1].name);
  s.t[s.n - 1].name = strdup("renamed");
  assert_int_equal(qg_gpt_config_from_state(&s, NULL, &c), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "missing"));
  qg_state_free(&s);
  /* a misshapen tensor */
  assert_int_equal(qg_checkpoint_load(p, &s, NULL), QG_OK);
  qg_tensor *t = qg_state_find(&s, "blocks.2.mlp.proj.weight");
  t->shape[1] = 128;
  t->shape[0] = 256;
  assert_int_equal(qg_gpt_config_from_state(&s, NULL, &c), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "blocks.2.mlp.proj.weight"));
  qg_state_free(&s);
}

/* The same sequence scored alone and inside a batch gives the same numbers (rows of a
 * batch are independent), and the model is deterministic run to run. */
static void test_batch_independence(void **st) {
  (void)st;
  const char *p;
  QG_REQUIRE_CONTEST_FILE(p, "baseline7L384d_SamTruss_c839523.int8.ptz");
  qg_gpt m;
  assert_int_equal(qg_gpt_load(&m, p, NULL, qg_ops_cpu()), QG_OK);
  enum { T = 100 };
  int32_t seqs[3 * (T + 1)];
  uint64_t rng = 3;
  for (int i = 0; i < 3 * (T + 1); i++) seqs[i] = (int32_t)(qg_test_rand(&rng) % 1024);
  qg_token_stat one[T], three[3 * T], again[3 * T];
  assert_int_equal(qg_gpt_score(&m, seqs + (T + 1), 1, T, one), QG_OK);
  assert_int_equal(qg_gpt_score(&m, seqs, 3, T, three), QG_OK);
  assert_int_equal(qg_gpt_score(&m, seqs, 3, T, again), QG_OK);
  for (int t = 0; t < T; t++) assert_true(fabs(one[t].nll_a - three[T + t].nll_a) <= 1e-5 * fabs(one[t].nll_a) + 1e-6);
  for (int i = 0; i < 3 * T; i++) assert_true(three[i].nll_a == again[i].nll_a);
  int32_t bad[3] = {1, 5000, 2};
  assert_int_equal(qg_gpt_score(&m, bad, 1, 2, one), QG_ERR_INPUT);
  qg_gpt_free(&m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_samtruss),       cmocka_unit_test(test_montysteele),
      cmocka_unit_test(test_nolanvild_pt),   cmocka_unit_test(test_nolanvild_ptz),
      cmocka_unit_test(test_config_errors),  cmocka_unit_test(test_batch_independence),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
