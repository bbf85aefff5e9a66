/* The experiment runner end to end on a tiny model (tests/data/train_ref/init.safetensors,
 * the contest vocabulary from ../shared/contest): hypothesis-file validation, a run with a
 * computed verdict, the report files, --check against tampering, the cache (a re-run
 * reuses everything; a deleted piece is recomputed to the same numbers), A/A, budgets,
 * fit, and trained arms against a trained reference. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/file.h"
#include "core/status.h"
#include "lab/hypothesis.h"
#include "lab/report.h"
#include "lab/runner.h"
#include "tests/testlib.h"

static const char *vocab_path(void) { return qg_test_contest_file("fineweb_1024_bpe.vocab"); }

/* An experiment file in dir from a body that uses MODEL, VOCAB, VAL as placeholders. */
static const char *write_yaml(const char *dir, const char *name, const char *body) {
  static char path[4096];
  char text[8192];
  char model[2048], val[2048];
  snprintf(model, sizeof model, "%s/tests/data/train_ref/init.safetensors", QG_SOURCE_DIR);
  snprintf(val, sizeof val, "%s/tests/data/train_ref/train.bin", QG_SOURCE_DIR);
  const char *vocab = vocab_path();
  size_t o = 0;
  for (const char *p = body; *p && o < sizeof text - 2100;) {
    if (!strncmp(p, "MODEL", 5)) o += (size_t)snprintf(text + o, sizeof text - o, "%s", model), p += 5;
    else if (!strncmp(p, "VOCAB", 5)) o += (size_t)snprintf(text + o, sizeof text - o, "%s", vocab ? vocab : "/nonexistent"), p += 5;
    else if (!strncmp(p, "VAL", 3)) o += (size_t)snprintf(text + o, sizeof text - o, "%s", val), p += 3;
    else text[o++] = *p++;
  }
  text[o] = 0;
  snprintf(path, sizeof path, "%s/%s", dir, name);
  qg_test_write(path, text, o);
  return path;
}

#define HEAD                                                                                          \
  "hypothesis: \"int4 is farther from float than int8\"\nmodel: MODEL\ntokenizer: VOCAB\n"           \
  "data: {val: 'VAL', seq_len: 64, max_tokens: 2048}\n"

static qg_status parse(const char *dir, const char *body, qg_lab_hypothesis *h) {
  return qg_lab_hypothesis_load(write_yaml(dir, "x.yaml", body), h);
}

static void expect_error(const char *dir, const char *body, const char *needle) {
  qg_lab_hypothesis h;
  qg_status s = parse(dir, body, &h);
  if (s == QG_OK) {
    qg_lab_hypothesis_free(&h);
    fail_msg("accepted a bad file; expected an error containing '%s'", needle);
  }
  assert_int_equal(s, QG_ERR_INPUT);
  if (!strstr(qg_last_error(), needle)) fail_msg("error '%s' lacks '%s'", qg_last_error(), needle);
  if (!strstr(qg_last_error(), "x.yaml")) fail_msg("error '%s' does not name the file", qg_last_error());
  if (strchr(qg_last_error(), '\n')) fail_msg("error '%s' is not one line", qg_last_error());
}

static void test_validation(void **st) {
  (void)st;
  const char *v;
  QG_REQUIRE_CONTEST_FILE(v, "fineweb_1024_bpe.vocab");
  char *dir = qg_test_tmpdir();
  const char *arms = "baseline: a\narms:\n  a: {spec: '*: rowwise bits=8'}\n  b: {spec: '*: rowwise bits=4'}\n";
  char body[4096];
  qg_lab_hypothesis h;
  snprintf(body, sizeof body, HEAD "%s", arms);
  assert_int_equal(parse(dir, body, &h), QG_OK);
  assert_string_equal(h.id, "x"); /* the file's stem */
  assert_int_equal(h.n_arms, 2);
  assert_int_equal(h.expect, -1);
  assert_int_equal(h.n_seeds, 1);
  assert_string_equal(h.reference, "float");
  qg_lab_hypothesis_free(&h);

  expect_error(dir, "hypothesis: [unclosed\n", "malformed YAML");
  {
    static char deep[20000];
    size_t k = 0;
    k += (size_t)snprintf(deep, sizeof deep, "hypothesis: ");
    for (int i = 0; i < 5000; i++) deep[k++] = '[';
    deep[k++] = '\n';
    deep[k] = 0;
    expect_error(dir, deep, "deep");
  }
  snprintf(body, sizeof body, HEAD "%scolour: blue\n", arms);
  expect_error(dir, body, "colour: unknown key");
  snprintf(body, sizeof body, HEAD "%sbudget: {code_bytes: 100}\n", arms);
  expect_error(dir, body, "budget.code_bytes");
  snprintf(body, sizeof body, HEAD "%sbudget: {bytes: 100, code_bytes: 100}\n", arms);
  expect_error(dir, body, "leaves no bytes");
  snprintf(body, sizeof body, HEAD "%sbudget: {bytes: 1000, code_bytes: lots}\n", arms);
  expect_error(dir, body, "expected an integer");
  snprintf(body, sizeof body, HEAD "baseline: zz\narms:\n  a: {spec: '*: rowwise bits=8'}\n  b: {spec: '*: fp16'}\n");
  expect_error(dir, body, "'zz' is not an arm");
  snprintf(body, sizeof body, HEAD "%sreference: nope\n", arms);
  expect_error(dir, body, "'nope' is neither float nor an arm");
  snprintf(body, sizeof body, HEAD "baseline: a\narms:\n  a: {spec: '*: rowwize bits=8'}\n  b: {spec: '*: fp16'}\n");
  expect_error(dir, body, "unknown quantizer 'rowwize'");
  snprintf(body, sizeof body, HEAD "%s", "baseline: a\narms:\n  a: {spec: '*: rowwise', colour: 1}\n  b: {spec: '*: fp16'}\n");
  expect_error(dir, body, "arms.a.colour: unknown key");
  snprintf(body, sizeof body, "hypothesis: h\nmodel: /no/such/model.pt\ntokenizer: VOCAB\ndata: {val: 'VAL'}\n%s", arms);
  expect_error(dir, body, "cannot read '/no/such/model.pt'");
  snprintf(body, sizeof body, "hypothesis: h\nmodel: MODEL\ntokenizer: VOCAB\ndata: {val: '/no/such/val_*.bin'}\n%s", arms);
  expect_error(dir, body, "data.val: no file matches");
  snprintf(body, sizeof body, HEAD "%smetric: ppl\n", arms);
  expect_error(dir, body, "expected kld, nll, bpb or bytes");
  snprintf(body, sizeof body, HEAD "%salpha: 2\n", arms);
  expect_error(dir, body, "alpha");
  snprintf(body, sizeof body, HEAD "%sseeds: [1, 1]\n", arms);
  expect_error(dir, body, "listed twice");
  snprintf(body, sizeof body, HEAD "baseline: a\narms:\n  a: {spec: '*: rowwise bits=8'}\n");
  expect_error(dir, body, "at least two arms");
  snprintf(body, sizeof body, HEAD "baseline: a\narms:\n  a: {spec: '*: rowwise bits=8'}\n"
           "  b: {spec: '*: rowwise bits=6', fit: {param: bits, values: [4, 5], to: budget}}\n");
  expect_error(dir, body, "must contain {bits}");
  snprintf(body, sizeof body, HEAD "baseline: a\narms:\n  a: {spec: '*: rowwise bits=8'}\n"
           "  b: {spec: '*: rowwise bits={bits}', fit: {param: bits, values: [4, 5], to: budget}}\n");
  expect_error(dir, body, "budget.bytes");
  snprintf(body, sizeof body, HEAD "baseline: a\narms:\n  a: {spec: '*: rowwise bits=8'}\n"
           "  b: {spec: none, train: {layers: 2, bogus-option: 3, train: 'VAL'}}\n");
  expect_error(dir, body, "not an option of quantgolf train");
  snprintf(body, sizeof body, HEAD "baseline: a\narms:\n  a: {spec: '*: rowwise bits=8'}\n"
           "  b: {spec: none, train: {layers: x, train: 'VAL'}}\n");
  expect_error(dir, body, "expects an integer");
  /* trained arms need a trained reference: KLD to each arm's own weights is not comparable */
  snprintf(body, sizeof body, HEAD "baseline: a\narms:\n  a: {spec: '*: rowwise bits=8'}\n"
           "  b: {spec: none, train: {layers: 2, train: 'VAL'}}\n");
  expect_error(dir, body, "reference: is 'float' but arms train");
  snprintf(body, sizeof body, HEAD "%srule: contest\nmetric: kld\n", arms);
  expect_error(dir, body, "contest fixes metric nll");
  snprintf(body, sizeof body, HEAD "%srule: contest\n", arms);
  assert_int_equal(parse(dir, body, &h), QG_OK);
  assert_int_equal(h.metric, QG_METRIC_NLL);
  assert_true(h.margin == 0.005 && h.alpha == 0.01 && h.expect == -1);
  qg_lab_hypothesis_free(&h);
  qg_test_rmdir(dir);
}

static qg_status run_file(const char *path, const char *out, qg_lab_result *r, qg_lab_hypothesis *h, int force) {
  QG_TRY(qg_lab_hypothesis_load(path, h));
  char cache[4200];
  snprintf(cache, sizeof cache, "%s/.cache", out);
  qg_lab_opts o = {.cache_dir = cache, .force = force, .git_commit = "test"};
  qg_status s = qg_lab_run(h, &o, r);
  if (!s) s = qg_lab_write_report(r, out, "quantgolf run x.yaml");
  if (!s) s = qg_lab_write_index(out);
  if (s) qg_lab_hypothesis_free(h);
  return s;
}

static void free_run(qg_lab_result *r, qg_lab_hypothesis *h) {
  qg_lab_result_free(r);
  qg_lab_hypothesis_free(h);
}

static void test_run_and_cache(void **st) {
  (void)st;
  const char *v;
  QG_REQUIRE_CONTEST_FILE(v, "fineweb_1024_bpe.vocab");
  char *dir = qg_test_tmpdir();
  char path[4096], out[4096];
  snprintf(path, sizeof path, "%s/tests/data/experiments/tiny.yaml", QG_SOURCE_DIR);
  snprintf(out, sizeof out, "%s/reports", dir);
  qg_lab_result r;
  qg_lab_hypothesis h;
  assert_int_equal(run_file(path, out, &r, &h, 0), QG_OK);
  assert_int_equal(r.verdict, QG_VERDICT_SUCCESS);
  assert_int_equal(r.agree, 2);
  assert_true(r.confidence > 0.99);
  int int4 = qg_lab_arm_index(&h, "int4");
  const qg_lab_cell *c = &r.cells[int4 * r.n_seeds];
  /* the KLD difference equals the direct mean over tokens, and the interval holds it */
  const qg_lab_cell *b = &r.cells[qg_lab_arm_index(&h, "int8") * r.n_seeds];
  double direct = 0;
  for (size_t i = 0; i < c->tok.n; i++) direct += c->tok.kld[i] - b->tok.kld[i];
  direct /= (double)c->tok.n;
  assert_true(fabs(c->d[QG_METRIC_KLD].estimate - direct) <= 1e-12 * fabs(direct));
  assert_true(c->d[0].lo < direct && direct < c->d[0].hi && c->d[0].lo > 0);
  /* BPB from the stored per-token NLL and bytes, as the contest computes it */
  double nll = 0, bytes = 0;
  for (size_t i = 0; i < c->tok.n; i++) nll += c->tok.nll[i], bytes += c->tok.bytes[i];
  assert_true(fabs(c->bpb.estimate - nll / log(2.0) / bytes) < 1e-12);
  assert_int_equal(c->tok.n, (4096 - 1) / 64 * 64); /* eval_val truncates to whole windows */
  assert_true(c->artifact_bytes > 0 && c->artifact_bytes < b->artifact_bytes);
  /* seeds do not change a rowwise artifact: one cache entry serves both */
  assert_string_equal(c->artifact_key, r.cells[int4 * r.n_seeds + 1].artifact_key);
  double kld0 = c->kld.estimate, d0 = c->d[0].estimate, lo0 = c->d[0].lo;
  /* every arm of a seed is scored in one pass (the reference's forward once per batch) */
  size_t ntok = c->tok.n;
  double *kld_batched = malloc(sizeof *kld_batched * ntok), *nll_batched = malloc(sizeof *nll_batched * ntok);
  for (size_t i = 0; i < ntok; i++) kld_batched[i] = c->tok.kld[i], nll_batched[i] = c->tok.nll[i];
  free_run(&r, &h);

  const char *rj = qg_test_path(out, "tiny/result.json");
  assert_true(qg_test_exists(rj));
  assert_true(qg_test_exists(qg_test_path(out, "tiny/report.md")));
  assert_true(qg_test_exists(qg_test_path(out, "tiny/figures/kld_vs_bytes.svg")));
  assert_true(qg_test_exists(qg_test_path(out, "INDEX.md")));
  int matches;
  qg_buf sum;
  qg_buf_init(&sum);
  assert_int_equal(qg_lab_check(qg_test_path(out, "tiny/result.json"), &matches, &sum), QG_OK);
  assert_int_equal(matches, 1);
  qg_buf_free(&sum);
  /* a hand-edited verdict is caught */
  uint8_t *text;
  size_t len;
  char rjp[4200];
  snprintf(rjp, sizeof rjp, "%s/tiny/result.json", out);
  assert_int_equal(qg_read_file(rjp, &text, &len, 1 << 26), QG_OK);
  char *p = strstr((char *)text, "\"result\": \"success\"");
  assert_non_null(p);
  memcpy(p, "\"result\": \"failure\"", 19);
  char tampered[4300];
  snprintf(tampered, sizeof tampered, "%s/tampered.json", dir);
  qg_test_write(tampered, text, len);
  free(text);
  qg_buf_init(&sum);
  assert_int_equal(qg_lab_check(tampered, &matches, &sum), QG_OK);
  assert_int_equal(matches, 0);
  assert_non_null(strstr((const char *)sum.p, "stored verdict failure, recomputed success"));
  qg_buf_free(&sum);

  /* a re-run reuses everything and gives the same numbers */
  assert_int_equal(run_file(path, out, &r, &h, 0), QG_OK);
  assert_int_equal(r.setup.reused_all, 1);
  c = &r.cells[int4 * r.n_seeds];
  assert_true(c->kld.estimate == kld0 && c->d[0].estimate == d0 && c->d[0].lo == lo0);
  char tok[4300];
  snprintf(tok, sizeof tok, "%s/.cache/eval/%s.tok", out, c->eval_key);
  free_run(&r, &h);
  /* a run killed after some pieces: delete one, the next run recomputes it identically,
   * scored alone this time: token for token what the shared pass gave */
  assert_int_equal(remove(tok), 0);
  assert_int_equal(run_file(path, out, &r, &h, 0), QG_OK);
  assert_int_equal(r.setup.reused_all, 0);
  c = &r.cells[int4 * r.n_seeds];
  assert_true(c->kld.estimate == kld0 && c->d[0].estimate == d0 && c->d[0].lo == lo0);
  assert_int_equal(c->tok.n, ntok);
  for (size_t i = 0; i < ntok; i++) assert_true(c->tok.kld[i] == kld_batched[i] && c->tok.nll[i] == nll_batched[i]);
  free(kld_batched), free(nll_batched);
  free_run(&r, &h);
  qg_test_rmdir(dir);
}

static void test_aa_budget_fit(void **st) {
  (void)st;
  const char *v;
  QG_REQUIRE_CONTEST_FILE(v, "fineweb_1024_bpe.vocab");
  char *dir = qg_test_tmpdir();
  char out[4096], body[4096];
  snprintf(out, sizeof out, "%s/reports", dir);
  qg_lab_result r;
  qg_lab_hypothesis h;
  /* A/A: the same quantization twice is inconclusive with an interval of exactly [0, 0] */
  snprintf(body, sizeof body, HEAD "id: aa\nbaseline: a\narms:\n  a: {spec: '*: rowwise bits=6'}\n"
           "  b: {spec: '*: rowwise bits=6'}\n");
  assert_int_equal(run_file(write_yaml(dir, "aa.yaml", body), out, &r, &h, 0), QG_OK);
  assert_int_equal(r.verdict, QG_VERDICT_INCONCLUSIVE);
  const qg_lab_cell *c = &r.cells[1];
  assert_true(c->d[0].lo == 0 && c->d[0].hi == 0 && c->d[0].p_one_sided == 1);
  /* one artifact, one evaluation: the second arm reads the first's records */
  assert_string_equal(c->eval_key, r.cells[0].eval_key);
  assert_true(!(r.cells[0].reused & 4) && (c->reused & 4));
  assert_int_equal(c->tok.n, r.cells[0].tok.n);
  assert_memory_equal(c->tok.kld, r.cells[0].tok.kld, sizeof *c->tok.kld * c->tok.n);
  int64_t six = c->artifact_bytes;
  free_run(&r, &h);
  /* budget: an arm over the byte cap is an error naming it */
  snprintf(body, sizeof body, HEAD "id: cap\nbaseline: a\nbudget: {bytes: %lld}\narms:\n"
           "  a: {spec: '*: rowwise bits=2'}\n  b: {spec: '*: rowwise bits=6'}\n", (long long)six - 1);
  assert_int_equal(run_file(write_yaml(dir, "cap.yaml", body), out, &r, &h, 0), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "arm 'b'"));
  assert_non_null(strstr(qg_last_error(), "budget"));
  snprintf(body, sizeof body, HEAD "id: eq\nbaseline: a\nbudget: {equal: 0.01}\narms:\n"
           "  a: {spec: '*: rowwise bits=2'}\n  b: {spec: '*: rowwise bits=6'}\n");
  assert_int_equal(run_file(write_yaml(dir, "eq.yaml", body), out, &r, &h, 0), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "budget.equal"));
  /* metric bytes: exact, the interval is the point itself */
  snprintf(body, sizeof body, HEAD "id: bytes\nbaseline: a\nmetric: bytes\nexpect: higher\narms:\n"
           "  a: {spec: '*: rowwise bits=4'}\n  b: {spec: '*: rowwise bits=6'}\n  c: {spec: '*: rowwise bits=2', expect: lower}\n");
  assert_int_equal(run_file(write_yaml(dir, "bytes.yaml", body), out, &r, &h, 0), QG_OK);
  assert_int_equal(r.verdict, QG_VERDICT_SUCCESS);
  const qg_boot_result *db = &r.cells[1].d[QG_METRIC_BYTES];
  assert_true(db->lo == db->hi && db->estimate == (double)(r.cells[1].artifact_bytes - r.cells[0].artifact_bytes));
  assert_true(db->estimate > 0 && r.cells[2].d[QG_METRIC_BYTES].estimate < 0);
  free_run(&r, &h);
  /* the headline explains the verdict: the first arm agrees with the hypothesis, the second
   * decides against it, so the failing arm is the headline */
  snprintf(body, sizeof body, HEAD "id: headline\nbaseline: a\nmetric: bytes\nexpect: higher\narms:\n"
           "  a: {spec: '*: rowwise bits=4'}\n  b: {spec: '*: rowwise bits=6'}\n  c: {spec: '*: rowwise bits=2'}\n");
  assert_int_equal(run_file(write_yaml(dir, "headline.yaml", body), out, &r, &h, 0), QG_OK);
  assert_int_equal(r.verdict, QG_VERDICT_FAILURE);
  assert_int_equal(r.headline, qg_lab_arm_index(&h, "c"));
  free_run(&r, &h);
  /* fit: the largest artifact within the budget (bits 6 fits exactly; 8 does not) */
  snprintf(body, sizeof body, HEAD "id: fit\nbaseline: a\nbudget: {bytes: %lld}\narms:\n"
           "  a: {spec: '*: rowwise bits=4'}\n"
           "  b: {spec: '*: rowwise bits={bits}', fit: {param: bits, values: [3, 8, 6, 5], to: budget}}\n"
           "  c: {spec: '*: rowwise bits={bits}', fit: {param: bits, values: [2, 3, 8], to: a}}\n"
           "expect: higher\n", (long long)six);
  assert_int_equal(run_file(write_yaml(dir, "fit.yaml", body), out, &r, &h, 0), QG_OK);
  assert_string_equal(r.cells[1].fit_value, "6");
  assert_int_equal(r.cells[1].artifact_bytes, six);
  assert_int_equal(r.cells[1].n_trials, 4);
  assert_string_equal(r.cells[2].fit_value, "3"); /* closest in bytes to the 4-bit arm */
  free_run(&r, &h);
  /* budget.code_bytes: the shipped code counts against budget.bytes; exactly the 6-bit
   * artifact plus the code fits, one more code byte leaves room for 5 bits only */
  for (int extra = 0; extra < 2; extra++) {
    snprintf(body, sizeof body, HEAD "id: code%d\nbaseline: a\nbudget: {bytes: %lld, code_bytes: %d}\narms:\n"
             "  a: {spec: '*: rowwise bits=4'}\n"
             "  b: {spec: '*: rowwise bits={bits}', fit: {param: bits, values: [3, 8, 6, 5], to: budget}}\n"
             "expect: higher\n", extra, (long long)six + 1000, 1000 + extra);
    assert_int_equal(run_file(write_yaml(dir, "code.yaml", body), out, &r, &h, 0), QG_OK);
    assert_int_equal(h.budget_code_bytes, 1000 + extra);
    assert_string_equal(r.cells[1].fit_value, extra ? "5" : "6");
    free_run(&r, &h);
  }
  /* ... and an arm over it is refused */
  snprintf(body, sizeof body, HEAD "id: codecap\nbaseline: a\nbudget: {bytes: %lld, code_bytes: 1001}\narms:\n"
           "  a: {spec: '*: rowwise bits=4'}\n  b: {spec: '*: rowwise bits=6'}\n", (long long)six + 1000);
  assert_int_equal(run_file(write_yaml(dir, "codecap.yaml", body), out, &r, &h, 0), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "budget.code_bytes"));
  snprintf(body, sizeof body, HEAD "id: codeauto\nbaseline: a\nbudget: {bytes: 16000000, code_bytes: auto}\narms:\n"
           "  a: {spec: '*: rowwise bits=4'}\n  b: {spec: '*: rowwise bits=6'}\n");
  assert_int_equal(parse(dir, body, &h), QG_OK);
  assert_true(h.budget_code_bytes > 10000 && h.budget_code_bytes < 100000);
  qg_lab_hypothesis_free(&h);
  qg_test_rmdir(dir);
}

static void test_trained_arms(void **st) {
  (void)st;
  const char *v;
  QG_REQUIRE_CONTEST_FILE(v, "fineweb_1024_bpe.vocab");
  char *dir = qg_test_tmpdir();
  char out[4096], body[4096];
  snprintf(out, sizeof out, "%s/reports", dir);
  /* plain and QAT trained at the same steps; KLD to the plain float model (one layer: a
   * model without skips, which the trainer writes without skip_weights) */
  snprintf(body, sizeof body,
           "id: trained\nhypothesis: \"STE QAT int4 beats post-training int4\"\ntokenizer: VOCAB\n"
           "data: {val: 'VAL', seq_len: 32, max_tokens: 1024}\nreference: plain\nbaseline: ptq\n"
           "train: {train: 'VAL', layers: 1, dim: 32, heads: 2, kv-heads: 1, seq-len: 32, batch-tokens: 256,\n"
           "        grad-accum: 1, iterations: 3, warmup-steps: 0, warmdown: 1}\n"
           "arms:\n  plain: {spec: none, train: {}}\n  ptq: {spec: '*: rowwise bits=4', train: {}}\n"
           "  qat: {spec: '*: rowwise bits=4', train: {qat: '*: rowwise bits=4'}}\nseeds: [7]\n");
  qg_lab_result r;
  qg_lab_hypothesis h;
  qg_status s = run_file(write_yaml(dir, "trained.yaml", body), out, &r, &h, 0);
  if (s) fail_msg("%s", qg_last_error());
  const qg_lab_cell *plain = &r.cells[0], *ptq = &r.cells[1], *qat = &r.cells[2];
  /* the reference is the plain arm's float model: its own KLD is exactly zero, and the
   * post-training arm quantizes that same model */
  assert_true(plain->kld.estimate == 0);
  assert_string_equal(plain->train_key, ptq->train_key);
  assert_true(strcmp(plain->train_key, qat->train_key) != 0);
  assert_true(ptq->kld.estimate > 0 && qat->kld.estimate > 0);
  free_run(&r, &h);
  qg_test_rmdir(dir);
}

static void test_cli(void **st) {
  (void)st;
  const char *v;
  QG_REQUIRE_CONTEST_FILE(v, "fineweb_1024_bpe.vocab");
  char *dir = qg_test_tmpdir();
  char body[4096], args[8192], o[4096], e[4096];
  snprintf(body, sizeof body, HEAD "baseline: a\narms:\n  a: {spec: '*: rowwise bits=8'}\n  b: {spec: '*: rowwise bits=4', x: 1}\n");
  const char *y = write_yaml(dir, "bad.yaml", body);
  snprintf(args, sizeof args, "run '%s' --out '%s/r'", y, dir);
  assert_int_equal(qg_test_run_cli(args, o, sizeof o, e, sizeof e), 2);
  assert_non_null(strstr(e, "arms.b.x: unknown key"));
  assert_int_equal((int)(strchr(e, '\n') - e), (int)strlen(e) - 1); /* one line */
  assert_false(qg_test_exists(qg_test_path(dir, "r")));             /* nothing written */
  snprintf(args, sizeof args, "run --check '%s/none.json'", dir);
  assert_int_equal(qg_test_run_cli(args, o, sizeof o, e, sizeof e), 2);
  qg_test_rmdir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_validation), cmocka_unit_test(test_run_and_cache), cmocka_unit_test(test_aa_budget_fit),
      cmocka_unit_test(test_trained_arms), cmocka_unit_test(test_cli),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
