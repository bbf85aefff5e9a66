/* model/ + eval/ on the CUDA backend against the CPU backend, end to end:
 *  - random-weight models (plain and depth-recurrent, odd sizes): logits agree to 1e-4
 *    in fp32 (norm-wise); the bf16 table stays within a loose sanity bound (printed);
 *  - eval on the real contest checkpoints (7L384d, the recurrent 6x2L512d, tiny3L128d):
 *    per-token NLL and the val_loss / val_bpb totals agree to 1e-4 in fp32;
 *  - kld of tiny3L128d .pt (base) against its .int8.ptz: per-token NLL of both, per-token
 *    KLD, the mean KLD and the same-top rate agree (1e-4, rate within 1e-3);
 *  - the CLI with --device cuda and --precision bf16.
 * Skipped visibly without a GPU (or contest files); --precision bf16 on the CPU is
 * refused in every build. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"
#include "kernels/cuda/cuda_device.h"
#include "kernels/cuda_precision.h"
#include "model/gpt.h"
#include "quant/artifact.h"
#include "tests/testlib.h"
#include "tests/twin.h"

#define TOL 1e-4

static const qg_ops *gpu;

/* The shared preamble (tests/twin.h): a visible skip without a GPU. */
#define NEED_GPU() (gpu = qg_twin_need_gpu())
#define OK QG_TEST_OK

static uint64_t rng = 7;

static void add_rand(qg_state *s, const char *name, int rows, int cols, float scale) {
  int64_t shape[2] = {rows, cols};
  qg_tensor *t;
  OK(qg_state_add(s, name, QG_F32, cols ? 2 : 1, shape, &t));
  float *p = t->data;
  for (int64_t i = 0; i < qg_tensor_numel(t); i++) p[i] = qg_test_randf(&rng) * scale;
}

/* A contest GPT of the given shape with random weights; `repeats` > 1 adds the recurrent
 * model's per-layer adapters (n_blocks unique blocks run `repeats` times). */
static void random_model(qg_state *s, int n_blocks, int repeats, int d, int H, int KVH, int hidden, int V) {
  qg_state_init(s);
  int hd = d / H, L = n_blocks * repeats;
  char name[96];
  add_rand(s, "tok_emb.weight", V, d, 1.0f);
  add_rand(s, "skip_weights", L / 2, d, 1.0f);
  static const char *mats[] = {"attn.c_q.weight", "attn.c_k.weight", "attn.c_v.weight",
                               "attn.proj.weight", "mlp.fc.weight", "mlp.proj.weight"};
  int rows[] = {d, KVH * hd, KVH * hd, d, hidden, d}, cols[] = {d, d, d, d, d, hidden};
  for (int b = 0; b < n_blocks; b++) {
    for (int k = 0; k < 6; k++) {
      snprintf(name, sizeof name, "blocks.%d.%s", b, mats[k]);
      add_rand(s, name, rows[k], cols[k], 1.0f / sqrtf((float)cols[k]));
    }
    snprintf(name, sizeof name, "blocks.%d.attn_scale", b);
    add_rand(s, name, d, 0, 1.0f);
    snprintf(name, sizeof name, "blocks.%d.mlp_scale", b);
    add_rand(s, name, d, 0, 1.0f);
    snprintf(name, sizeof name, "blocks.%d.resid_mix", b);
    add_rand(s, name, 2, d, 1.0f);
    snprintf(name, sizeof name, "blocks.%d.attn.q_gain", b);
    add_rand(s, name, H, 0, 2.0f);
  }
  if (repeats > 1) {
    add_rand(s, "repeat_scales", L, d, 1.0f);
    add_rand(s, "repeat_shifts", L, d, 0.1f);
  }
}

static double rel_err_f(const float *got, const float *ref, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; i++) {
    if (isnan(got[i])) return NAN;
    num += ((double)got[i] - ref[i]) * ((double)got[i] - ref[i]);
    den += (double)ref[i] * ref[i];
  }
  return sqrt(num / (den > 0 ? den : 1));
}

static double rel_err_d(const double *got, const double *ref, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; i++) {
    if (isnan(got[i])) return NAN;
    num += (got[i] - ref[i]) * (got[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return sqrt(num / (den > 0 ? den : 1));
}

/* Forward logits of one state on the CPU, the CUDA fp32 and the CUDA bf16 tables. */
static void compare_forward(const qg_state *s, const char *what, int B, int T) {
  qg_gpt mc, mg, mb;
  OK(qg_gpt_init(&mc, s, NULL, qg_ops_cpu()));
  OK(qg_gpt_init(&mg, s, NULL, gpu));
  qg_gpt_options o16 = {.precision = QG_PRECISION_BF16};
  OK(qg_gpt_init(&mb, s, &o16, gpu));
  assert_string_equal(mb.ops->name, "cuda-bf16");
  int64_t R = (int64_t)B * T, n = R * mc.cfg.vocab;
  int32_t *tok = malloc(sizeof *tok * (size_t)R);
  for (int64_t i = 0; i < R; i++) tok[i] = (int32_t)(qg_test_rand(&rng) % (uint64_t)mc.cfg.vocab);
  float *ref = malloc(sizeof *ref * (size_t)n), *got = malloc(sizeof *got * (size_t)n);
  OK(qg_gpt_forward(&mc, tok, B, T));
  memcpy(ref, mc.logits, sizeof *ref * (size_t)n);
  for (int i = 0; i < (int)n; i++) got[i] = NAN;
  OK(qg_gpt_forward(&mg, tok, B, T));
  OK(gpu->download(gpu, got, mg.logits, sizeof *got * (size_t)n));
  double e32 = rel_err_f(got, ref, n);
  for (int i = 0; i < (int)n; i++) got[i] = NAN;
  OK(qg_gpt_forward(&mb, tok, B, T));
  OK(gpu->download(gpu, got, mb.logits, sizeof *got * (size_t)n));
  double e16 = rel_err_f(got, ref, n);
  print_message("  %s B=%d T=%d: logits rel err fp32 %.2e, bf16 %.2e\n", what, B, T, e32, e16);
  if (!(e32 <= TOL)) fail_msg("%s: fp32 logits differ by %.3e", what, e32);
  /* bf16 has no exact twin; a loose bound only catches a broken path */
  if (!(e16 <= 0.1)) fail_msg("%s: bf16 logits differ by %.3e", what, e16);
  free(tok), free(ref), free(got);
  qg_gpt_free(&mc), qg_gpt_free(&mg), qg_gpt_free(&mb);
}

static void test_random_models(void **st) {
  (void)st;
  NEED_GPU();
  qg_state s;
  random_model(&s, 4, 1, 96, 4, 2, 192, 300); /* hd 24, odd vocab */
  compare_forward(&s, "random 4L d96", 2, 130);
  qg_state_free(&s);
  random_model(&s, 2, 2, 128, 4, 4, 256, 1024); /* recurrent: affine adapters */
  compare_forward(&s, "random recurrent 2x2L d128", 1, 333);
  qg_state_free(&s);
  random_model(&s, 9, 1, 512, 8, 4, 1024, 1024); /* the baseline's shape */
  compare_forward(&s, "random 9x512", 1, 1024);
  qg_state_free(&s);
}

/* ---- eval and kld on real checkpoints --------------------------------------------------- */

typedef struct {
  int64_t n, cap;
  double *nll_a, *nll_b, *kld;
  int64_t same_top;
} collect;

static void sink(void *c, const qg_token_stat *t, int32_t prev, int32_t tgt, int bytes) {
  (void)prev, (void)tgt, (void)bytes;
  collect *k = c;
  if (k->n >= k->cap) return;
  k->nll_a[k->n] = t->nll_a;
  k->nll_b[k->n] = t->nll_b;
  k->kld[k->n] = t->kld;
  k->same_top += t->top_a == t->top_b;
  k->n++;
}

static void collect_init(collect *k, int64_t cap) {
  memset(k, 0, sizeof *k);
  k->cap = cap;
  k->nll_a = calloc((size_t)cap, sizeof(double));
  k->nll_b = calloc((size_t)cap, sizeof(double));
  k->kld = calloc((size_t)cap, sizeof(double));
}

static void collect_free(collect *k) { free(k->nll_a), free(k->nll_b), free(k->kld); }

/* A shard of real text: the reference sequences of tests/data/model_ref, back to back. */
static char *text_shard(char **dir) {
  static const char *refs[] = {"samtruss.txt", "montysteele.txt", "nolanvild_pt_p3.txt"};
  uint16_t *t = malloc(sizeof *t * 3 * 1025);
  int n = 0;
  for (int r = 0; r < 3; r++) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/data/model_ref/%s", QG_SOURCE_DIR, refs[r]);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char buf[1 << 20];
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = 0;
    char *s = strstr(buf, "\nseq 1024\n");
    assert_non_null(s);
    s = strstr(s, "tokens ") + 7;
    for (int i = 0; i <= 1024; i++) t[n++] = (uint16_t)strtol(s, &s, 10);
  }
  *dir = qg_test_tmpdir();
  char *p = strdup(qg_test_path(*dir, "val_000000.bin"));
  OK(qg_shard_write(p, t, (size_t)n));
  free(t);
  return p;
}

static void open_data(const char *shard, qg_shards *val, qg_spm_luts *luts) {
  const char *vp;
  QG_REQUIRE_CONTEST_FILE(vp, "fineweb_1024_bpe.vocab");
  qg_spm tok;
  OK(qg_spm_load(vp, &tok));
  OK(qg_spm_luts_init(luts, &tok, 1024));
  qg_spm_free(&tok);
  OK(qg_shards_open(shard, val));
}

/* Runs eval (base only) or kld (base and model) on both backends and compares. */
static void compare_eval(const char *base_name, const char *model_name, float mlp_power, const qg_eval_opts *eo) {
  const char *p;
  QG_REQUIRE_CONTEST_FILE(p, base_name);
  char base[4096], model[4096] = "";
  snprintf(base, sizeof base, "%s", p);
  if (model_name) {
    QG_REQUIRE_CONTEST_FILE(p, model_name);
    snprintf(model, sizeof model, "%s", p);
  }
  char *dir, *shard = text_shard(&dir);
  qg_shards val;
  qg_spm_luts luts;
  open_data(shard, &val, &luts);
  qg_gpt_options opt = {.mlp_power = mlp_power};
  collect k[2];
  qg_eval_totals t[2];
  for (int be = 0; be < 2; be++) {
    const qg_ops *o = be ? gpu : qg_ops_cpu();
    qg_gpt a, b;
    OK(qg_gpt_load(&a, base, &opt, o));
    if (model_name) OK(qg_gpt_load(&b, model, &opt, o));
    collect_init(&k[be], 4096);
    OK(qg_eval_run(&a, model_name ? &b : NULL, &val, &luts, eo, sink, &k[be], &t[be]));
    qg_gpt_free(&a);
    if (model_name) qg_gpt_free(&b);
  }
  assert_int_equal(k[0].n, k[1].n);
  assert_int_equal(t[0].tokens, t[1].tokens);
  assert_int_equal(t[0].bytes, t[1].bytes);
  double e_tok = rel_err_d(k[1].nll_a, k[0].nll_a, k[0].n);
  double e_loss = fabs(t[1].nll_a - t[0].nll_a) / t[0].nll_a;
  double bpb0 = qg_bpb(t[0].nll_a, t[0].bytes), bpb1 = qg_bpb(t[1].nll_a, t[1].bytes);
  print_message("  %s seq %d stride %d: %lld tokens, val_loss cpu %.8f cuda %.8f (rel %.2e), per-token nll rel %.2e, "
                "val_bpb cpu %.8f cuda %.8f\n",
                base_name, eo->seq_len, eo->stride, (long long)t[0].tokens, t[0].nll_a / (double)t[0].tokens,
                t[1].nll_a / (double)t[1].tokens, e_loss, e_tok, bpb0, bpb1);
  if (!(e_tok <= TOL && e_loss <= TOL)) fail_msg("%s: eval differs (per token %.3e, total %.3e)", base_name, e_tok, e_loss);
  if (model_name) {
    double e_b = rel_err_d(k[1].nll_b, k[0].nll_b, k[0].n), e_kld = rel_err_d(k[1].kld, k[0].kld, k[0].n);
    double m0 = 0, m1 = 0;
    for (int64_t i = 0; i < k[0].n; i++) m0 += k[0].kld[i], m1 += k[1].kld[i];
    m0 /= (double)k[0].n, m1 /= (double)k[1].n;
    double e_mean = fabs(m1 - m0) / m0;
    double top0 = (double)k[0].same_top / (double)k[0].n, top1 = (double)k[1].same_top / (double)k[1].n;
    print_message("  kld %s || %s: mean cpu %.8f cuda %.8f (rel %.2e), per-token kld rel %.2e, model nll rel %.2e, "
                  "same-top cpu %.5f cuda %.5f\n",
                  base_name, model_name, m0, m1, e_mean, e_kld, e_b, top0, top1);
    if (!(e_b <= TOL && e_mean <= TOL && e_kld <= TOL)) fail_msg("kld differs (mean %.3e, per token %.3e)", e_mean, e_kld);
    /* the top token can flip where two logits nearly tie; allow one flip in a thousand */
    assert_true(fabs(top0 - top1) <= 1e-3);
  }
  for (int be = 0; be < 2; be++) collect_free(&k[be]);
  qg_shards_close(&val);
  qg_spm_luts_free(&luts);
  qg_test_rmdir(dir);
  free(shard);
}

static void test_eval_samtruss(void **st) {
  (void)st;
  NEED_GPU();
  qg_eval_opts eo = {.seq_len = 1024, .batch = 2}; /* 3 windows: a full batch and a partial one */
  compare_eval("baseline7L384d_SamTruss_c839523.int8.ptz", NULL, 2, &eo);
  qg_eval_opts sl = {.seq_len = 512, .stride = 256};
  compare_eval("baseline7L384d_SamTruss_c839523.int8.ptz", NULL, 2, &sl);
}

static void test_eval_montysteele(void **st) {
  (void)st;
  NEED_GPU();
  qg_eval_opts eo = {.seq_len = 1024};
  compare_eval("recur6x2L512d_int6qat_MontySteele_dc69b08.int8.ptz", NULL, 2, &eo);
}

static void test_kld_nolanvild(void **st) {
  (void)st;
  NEED_GPU();
  qg_eval_opts eo = {.seq_len = 1024};
  compare_eval("tiny3L128d_nolanvild_3c063e5.pt", "tiny3L128d_nolanvild_3c063e5.int8.ptz", 3, &eo);
  qg_eval_opts sl = {.seq_len = 256, .stride = 64, .batch = 5};
  compare_eval("tiny3L128d_nolanvild_3c063e5.pt", "tiny3L128d_nolanvild_3c063e5.int8.ptz", 3, &sl);
}

/* The CLI: --precision bf16 is refused on the CPU (every build); on a GPU, eval with
 * --device cuda in fp32 matches the CPU's val_loss and bf16 lands near it. */
static void test_cli_precision(void **st) {
  (void)st;
  const char *mp, *vp;
  QG_REQUIRE_CONTEST_FILE(mp, "tiny3L128d_nolanvild_3c063e5.pt");
  char model[4096];
  snprintf(model, sizeof model, "%s", mp);
  QG_REQUIRE_CONTEST_FILE(vp, "fineweb_1024_bpe.vocab");
  char vocab[4096];
  snprintf(vocab, sizeof vocab, "%s", vp);
  char *dir, *shard = text_shard(&dir);
  static char args[20000], out[8192], err[4096];
  snprintf(args, sizeof args, "eval --model '%s' --val '%s' --tokenizer '%s' --device cpu --precision bf16", model, shard,
           vocab);
  assert_int_not_equal(qg_test_run_cli(args, out, sizeof out, err, sizeof err), 0);
  assert_non_null(strstr(err, "CUDA"));
  snprintf(args, sizeof args, "eval --model '%s' --val '%s' --tokenizer '%s' --precision fp16", model, shard, vocab);
  assert_int_equal(qg_test_run_cli(args, out, sizeof out, err, sizeof err), 2);
  if (qg_cuda_device_count() == 0) {
    print_message("SKIP: no CUDA GPU for the --device cuda part\n");
    qg_test_rmdir(dir);
    free(shard);
    skip();
  }
  double loss[3];
  static const char *modes[] = {"--device cpu", "--device cuda", "--device cuda --precision bf16"};
  static const char *devs[] = {"\"cpu\"", "\"cuda\"", "\"cuda-bf16\""};
  for (int i = 0; i < 3; i++) {
    snprintf(args, sizeof args, "eval --model '%s' --mlp-power 3 --val '%s' --tokenizer '%s' --json %s", model, shard,
             vocab, modes[i]);
    if (qg_test_run_cli(args, out, sizeof out, err, sizeof err) != 0) fail_msg("%s: %s", modes[i], err);
    assert_non_null(strstr(out, devs[i]));
    char *v = strstr(out, "\"val_loss\": ");
    assert_non_null(v);
    loss[i] = strtod(v + 12, NULL);
  }
  print_message("  CLI val_loss: cpu %.8f, cuda %.8f, cuda bf16 %.8f\n", loss[0], loss[1], loss[2]);
  assert_true(fabs(loss[1] - loss[0]) <= TOL * loss[0]);
  assert_true(fabs(loss[2] - loss[0]) <= 1e-2 * loss[0]);
  qg_test_rmdir(dir);
  free(shard);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_random_models), cmocka_unit_test(test_eval_samtruss),
      cmocka_unit_test(test_eval_montysteele), cmocka_unit_test(test_kld_nolanvild),
      cmocka_unit_test(test_cli_precision),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
