/* The sensitivity table reader (every key checked), its check against a model, the
 * knapsack instance it gives and the allocation written back as a spec; the allocate CLI's
 * errors and its spec file on the contest's float checkpoint. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "core/sha256.h"
#include "core/util.h"
#include "lab/alloc_arm.h"
#include "lab/alloc_table.h"
#include "lab/hypothesis.h"
#include "quant/spec.h"
#include "tests/testlib.h"

static const char *SHA = "8312c34ee4b04d5a96bec61952583dee8a0fe8fc249c999f5ec4c81abdd16be1";

/* A table over two groups of a two-block model; %s slots: the model sha and an extra
 * cell (or ""). */
static char *table_text(const char *sha, const char *extra) {
  qg_buf b;
  qg_buf_init(&b);
  qg_buf_printf(&b,
                "{\"schema_version\": 1, \"command\": \"sensitivity\", \"model\": {\"path\": \"m.pt\", \"sha256\": \"%s\"},"
                " \"tokens\": 4096, \"windows\": 4, \"metric\": \"kld\","
                " \"base\": \"blocks.*: rowwise bits=6; tok_emb.weight: rowwise bits=8\","
                " \"base_kld\": 0.01, \"base_nll\": 4.5, \"base_artifact_bytes\": 1000, \"fixed_bytes\": 100,"
                " \"groups\": [{\"name\": \"mlp.fc\", \"tensors\": [\"blocks.0.mlp.fc.weight\", \"blocks.1.mlp.fc.weight\"]},"
                "  {\"name\": \"tok_emb\", \"tensors\": [\"tok_emb.weight\"]}],"
                " \"candidates\": [\"rowwise bits=4\", \"rowwise bits=8\"], \"extra_key_from_a_newer_writer\": true,"
                " \"cells\": ["
                "  {\"group\": \"mlp.fc\", \"candidate\": \"rowwise bits=4\", \"delta_kld\": 0.25, \"ci95\": [0.2, 0.3],"
                "   \"delta_nll\": 0.1, \"bytes\": 300, \"base_bytes\": 500, \"bytes_saved\": 200, \"roi\": 800},"
                "  {\"group\": \"mlp.fc\", \"candidate\": \"rowwise bits=8\", \"delta_kld\": -0.5e-2, \"ci95\": [-0.01, 0],"
                "   \"delta_nll\": -0.001, \"bytes\": 700, \"base_bytes\": 500, \"bytes_saved\": -200, \"roi\": null},"
                "  {\"group\": \"tok_emb\", \"candidate\": \"rowwise bits=4\", \"delta_kld\": 0.125, \"ci95\": [0.1, 0.15],"
                "   \"delta_nll\": 0.05, \"bytes\": 200, \"base_bytes\": 400, \"bytes_saved\": 200, \"roi\": 1600}%s]}",
                sha, extra);
  qg_buf_byte(&b, 0);
  return (char *)b.p;
}

static void model_state(qg_state *st) {
  qg_state_init(st);
  const char *names[] = {"tok_emb.weight", "blocks.0.mlp.fc.weight", "blocks.1.mlp.fc.weight", "blocks.0.attn.c_q.weight"};
  for (int i = 0; i < 4; i++) {
    int64_t shape[2] = {i ? 64 : 128, 32};
    assert_int_equal(qg_state_add(st, names[i], QG_F32, 2, shape, NULL), QG_OK);
  }
}

static void test_parse_and_solve(void **s) {
  (void)s;
  char *text = table_text(SHA, "");
  qg_alloc_table t;
  assert_int_equal(qg_alloc_table_parse(text, strlen(text), "t.json", &t), QG_OK);
  free(text);
  assert_int_equal(t.n_groups, 2);
  assert_int_equal(t.n_cands, 2);
  assert_int_equal(t.n_cells, 3);
  assert_true(t.cells[1].delta_kld == -0.005);
  assert_int_equal(t.groups[0].base_bytes, 500);
  assert_int_equal(t.comp, QG_COMP_BROTLI); /* no "compressor": the tables written before it */
  {
    char *named = table_text(SHA, ""), *at = strstr(named, "\"fixed_bytes\": 100,");
    qg_buf nb;
    qg_buf_init(&nb);
    qg_buf_append(&nb, named, (size_t)(at - named));
    qg_buf_printf(&nb, "\"compressor\": \"rans\", %s", at);
    qg_alloc_table tr;
    assert_int_equal(qg_alloc_table_parse((const char *)nb.p, nb.n, "t.json", &tr), QG_OK);
    assert_int_equal(tr.comp, QG_COMP_RANS);
    qg_alloc_table_free(&tr);
    qg_buf_free(&nb);
    free(named);
  }
  qg_state st;
  model_state(&st);
  assert_int_equal(qg_alloc_table_check(&t, &st, SHA), QG_OK);
  assert_int_equal(qg_alloc_table_check(&t, &st, "00"), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "not this model"));
  qg_alloc_tproblem sp;
  assert_int_equal(qg_alloc_tproblem_make(&t, "kld", NULL, 0, 50, &sp), QG_OK);
  /* group 0: base + two cells; group 1: base + one */
  assert_int_equal(sp.p.n_opts[0], 3);
  assert_int_equal(sp.p.n_opts[1], 2);
  assert_int_equal(sp.p.opts[0][0].bytes, 500);
  assert_true(sp.p.opts[0][0].delta == 0);
  assert_int_equal(sp.p.fixed_bytes, 150);
  /* budget 150 + 700 + 200 = 1050: mlp.fc at int8 (-0.005) and tok_emb at int4 (+0.125)
   * beats int6 + int8 (0) only if ... it does not: 0.12 > 0; the answer is base, base */
  qg_alloc_solution sol;
  assert_int_equal(qg_alloc_solve(&sp.p, 1050, 1, 0, &sol), QG_OK);
  assert_int_equal(sol.best.choice[0], 0);
  assert_int_equal(sol.best.choice[1], 0);
  qg_alloc_solution_free(&sol);
  /* 150 + 700 + 400 = 1250: int8 MLP fits */
  assert_int_equal(qg_alloc_solve(&sp.p, 1250, 1, 0, &sol), QG_OK);
  assert_int_equal(sol.best.choice[0], 2);
  assert_int_equal(sol.best.bytes, 1250);
  char *yaml, *inl;
  int cp;
  assert_int_equal(qg_alloc_table_spec(&t, &sp, sol.best.choice, &st, 1, "head\nline two", &yaml, &cp), QG_OK);
  assert_int_equal(qg_alloc_table_spec(&t, &sp, sol.best.choice, &st, 0, NULL, &inl, &cp), QG_OK);
  assert_string_equal(inl, "blocks.0.mlp.fc.weight: rowwise bits=8; blocks.1.mlp.fc.weight: rowwise bits=8; "
                           "blocks.*: rowwise bits=6; tok_emb.weight: rowwise bits=8");
  /* the YAML is a spec that plans every tensor as chosen */
  qg_spec spec;
  assert_int_equal(qg_spec_parse_yaml((const uint8_t *)yaml, strlen(yaml), "alloc.yaml", &spec), QG_OK);
  qg_spec_plan pl;
  assert_int_equal(qg_spec_plan_make(&spec, &st, &pl), QG_OK);
  for (int i = 0; i < pl.n; i++) {
    const qg_spec_rule *r = &spec.rules[pl.a[i].rule];
    const char *nm = st.t[pl.a[i].index].name;
    int want8 = strstr(nm, "mlp.fc") || !strcmp(nm, "tok_emb.weight");
    assert_string_equal(r->method, "rowwise");
    assert_string_equal(r->options, want8 ? "bits=8" : "bits=6");
  }
  qg_spec_plan_free(&pl);
  qg_spec_free(&spec);
  free(yaml), free(inl);
  qg_alloc_solution_free(&sol);
  /* tok_emb at int4 under a tight budget: the base rule for tok_emb is dropped (it would
   * match nothing), and the spec still plans */
  assert_int_equal(qg_alloc_solve(&sp.p, 150 + 300 + 200, 1, 0, &sol), QG_OK);
  assert_int_equal(sol.best.choice[1], 1);
  assert_int_equal(qg_alloc_table_spec(&t, &sp, sol.best.choice, &st, 0, NULL, &inl, &cp), QG_OK);
  assert_null(strstr(inl, "tok_emb.weight: rowwise bits=8"));
  assert_int_equal(qg_spec_parse_inline(inl, &spec), QG_OK);
  assert_int_equal(qg_spec_plan_make(&spec, &st, &pl), QG_OK);
  qg_spec_plan_free(&pl);
  qg_spec_free(&spec);
  free(inl);
  qg_alloc_solution_free(&sol);
  /* a restriction to one candidate; an unmeasured one is an error */
  qg_alloc_tproblem_free(&sp);
  const char *only[] = {"rowwise bits=8"};
  assert_int_equal(qg_alloc_tproblem_make(&t, "nll", only, 1, 0, &sp), QG_OK);
  assert_int_equal(sp.p.n_opts[0], 2);
  assert_true(sp.p.opts[0][1].delta == -0.001);
  qg_alloc_tproblem_free(&sp);
  const char *bad[] = {"gptq bits=3"};
  assert_int_equal(qg_alloc_tproblem_make(&t, "kld", bad, 1, 0, &sp), QG_ERR_INPUT);
  assert_int_equal(qg_alloc_tproblem_make(&t, "bpb", NULL, 0, 0, &sp), QG_ERR_INPUT);
  /* a group whose tensor the model lacks */
  qg_state_free(&st);
  qg_state_init(&st);
  int64_t shape[2] = {64, 32};
  assert_int_equal(qg_state_add(&st, "tok_emb.weight", QG_F32, 2, shape, NULL), QG_OK);
  assert_int_equal(qg_alloc_table_check(&t, &st, NULL), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "'blocks.0.mlp.fc.weight' is not in the model"));
  qg_state_free(&st);
  qg_alloc_table_free(&t);
}

/* Each malformation: one line naming the key. */
static void test_malformed(void **s) {
  (void)s;
  struct {
    const char *from, *to, *msg;
  } cases[] = {
      {"\"schema_version\": 1", "\"schema_version\": 2", "schema_version"},
      {"\"tokens\": 4096,", "", "missing key 'tokens'"},
      {"\"tokens\": 4096", "\"tokens\": \"4096\"", "'tokens' must be a number"},
      {"\"bytes_saved\": 200, \"roi\": 800", "\"bytes_saved\": 201, \"roi\": 800", "bytes_saved' is not base_bytes - bytes"},
      {"\"group\": \"tok_emb\"", "\"group\": \"tok-emb\"", "names no group"},
      {"\"candidate\": \"rowwise bits=8\"", "\"candidate\": \"rowwise bits=4\"", "repeats an earlier (group, candidate)"},
      {"[0.2, 0.3]", "[0.3, 0.2]", "lo <= hi"},
      {"\"metric\": \"kld\"", "\"metric\": \"bpb\"", "metric"},
      {"\"base_bytes\": 400", "\"base_bytes\": 400, \"base_bytes\": 400", "duplicate key"},
      {"\"bytes\": 700, \"base_bytes\": 500, \"bytes_saved\": -200", "\"bytes\": 700, \"base_bytes\": 501, \"bytes_saved\": -199",
       "differs from another cell"},
      {"\"command\": \"sensitivity\",", "\"command\": \"sensitivity\" ", "offset"},
      {"\"fixed_bytes\": 100,", "\"fixed_bytes\": 100, \"compressor\": \"lzma\",", "'compressor' must name a compressor"},
      {"\"fixed_bytes\": 100,", "\"fixed_bytes\": 100, \"compressor\": \"none\",", "'compressor' must name a compressor"},
      {"\"fixed_bytes\": 100,", "\"fixed_bytes\": 100, \"compressor\": 5,", "'compressor' must be a string"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char *text = table_text(SHA, "");
    char *at = strstr(text, cases[i].from);
    assert_non_null(at);
    qg_buf b;
    qg_buf_init(&b);
    qg_buf_append(&b, text, (size_t)(at - text));
    qg_buf_printf(&b, "%s%s", cases[i].to, at + strlen(cases[i].from));
    qg_alloc_table t;
    qg_status st = qg_alloc_table_parse((const char *)b.p, b.n, "t.json", &t);
    if (st != QG_ERR_INPUT || !strstr(qg_last_error(), cases[i].msg))
      fail_msg("case %zu: status %d, message '%s'", i, st, qg_last_error());
    assert_null(strchr(qg_last_error(), '\n'));
    assert_non_null(strstr(qg_last_error(), "t.json"));
    qg_buf_free(&b);
    free(text);
  }
}

/* The CLI on the contest's float checkpoint: exit 2 with one line before any work, and a
 * spec file quantize accepts. */
static void test_cli(void **s) {
  (void)s;
  const char *model;
  QG_REQUIRE_CONTEST_FILE(model, "tiny3L128d_nolanvild_3c063e5.pt");
  char *dir = qg_test_tmpdir();
  char sha[65];
  assert_int_equal(qg_sha256_file(model, sha), QG_OK);
  char *text = table_text(sha, "");
  char tpath[4200], spath[4200], args[12000], out[8192], err[4096];
  snprintf(tpath, sizeof tpath, "%s", qg_test_path(dir, "sens.json"));
  snprintf(spath, sizeof spath, "%s", qg_test_path(dir, "alloc.yaml"));
  assert_int_equal(qg_write_file_atomic(tpath, text, strlen(text)), QG_OK);
  free(text);
  /* too small a budget */
  snprintf(args, sizeof args, "allocate --model '%s' --sensitivity '%s' --budget 599", model, tpath);
  assert_int_equal(qg_test_run_cli(args, out, sizeof out, err, sizeof err), 2);
  assert_non_null(strstr(err, "below the smallest achievable total 600 bytes"));
  assert_int_equal((int)(strchr(err, '\n') - err), (int)strlen(err) - 1);
  /* fine: the spec is written and quantize takes it */
  snprintf(args, sizeof args, "allocate --model '%s' --sensitivity '%s' --budget 1250 --granularity 1 --out '%s'",
           model, tpath, spath);
  assert_int_equal(qg_test_run_cli(args, out, sizeof out, err, sizeof err), 0);
  assert_non_null(strstr(out, "mlp.fc           rowwise bits=8"));
  snprintf(args, sizeof args, "quantize --model '%s' --spec-file '%s' --out '%s' --dry-run", model, spath,
           qg_test_path(dir, "a.qgz"));
  assert_int_equal(qg_test_run_cli(args, out, sizeof out, err, sizeof err), 0);
  /* malformed table, wrong model, no file: exit 2, nothing written */
  assert_int_equal(qg_write_file_atomic(tpath, "{\"schema_version\": 1", 20), QG_OK);
  remove(spath);
  snprintf(args, sizeof args, "allocate --model '%s' --sensitivity '%s' --budget 1250 --out '%s'", model, tpath, spath);
  assert_int_equal(qg_test_run_cli(args, out, sizeof out, err, sizeof err), 2);
  assert_non_null(strstr(err, "sens.json: offset"));
  FILE *f = fopen(spath, "r");
  assert_null(f);
  text = table_text(SHA, "");
  text[strstr(text, SHA) - text] = '9';
  assert_int_equal(qg_write_file_atomic(tpath, text, strlen(text)), QG_OK);
  free(text);
  assert_int_equal(qg_test_run_cli(args, out, sizeof out, err, sizeof err), 2);
  assert_non_null(strstr(err, "not this model"));
  snprintf(args, sizeof args, "allocate --model '%s' --budget 1250", model);
  assert_int_equal(qg_test_run_cli(args, out, sizeof out, err, sizeof err), 2);
  qg_test_rmdir(dir);
}

/* A hypothesis arm `allocate:` is checked when the file is read and becomes the solver's
 * spec when it is resolved (as the runner does), once: the second time from the cache. */
static void test_runner_arm(void **s) {
  (void)s;
  const char *model;
  QG_REQUIRE_CONTEST_FILE(model, "tiny3L128d_nolanvild_3c063e5.pt");
  char mpath[4200];
  snprintf(mpath, sizeof mpath, "%s", model);
  char *dir = qg_test_tmpdir();
  char sha[65];
  assert_int_equal(qg_sha256_file(mpath, sha), QG_OK);
  char *text = table_text(sha, "");
  assert_int_equal(qg_write_file_atomic(qg_test_path(dir, "sens.json"), text, strlen(text)), QG_OK);
  free(text);
  assert_int_equal(qg_write_file_atomic(qg_test_path(dir, "tok.model"), "x", 1), QG_OK);
  assert_int_equal(qg_write_file_atomic(qg_test_path(dir, "val.bin"), "x", 1), QG_OK);
  /* the table has no "compressor": its bytes are brotli's, so the artifact is written with brotli */
  const char *fmt = "hypothesis: h\nmodel: %s\ntokenizer: tok.model\ndata: {val: val.bin}\nbaseline: a\n"
                    "compress: brotli\n"
                    "arms:\n  a: {spec: 'blocks.*: rowwise bits=6; tok_emb.weight: rowwise bits=8'}\n"
                    "  s: {allocate: {budget: %s, candidates: 'rowwise bits=8', groups: roles%s}}\n";
  char yaml[8192], hpath[4200];
  snprintf(hpath, sizeof hpath, "%s", qg_test_path(dir, "h.yaml"));
  qg_lab_hypothesis h;
  /* the default compressor (rans) against that table: refused when the file is read */
  snprintf(yaml, sizeof yaml, fmt, mpath, "1250", ", sensitivity: sens.json");
  char *no_comp = strstr(yaml, "compress: brotli\n");
  memmove(no_comp, no_comp + 17, strlen(no_comp + 17) + 1);
  assert_int_equal(qg_lab_hypothesis_parse(yaml, strlen(yaml), hpath, &h), QG_ERR_INPUT);
  if (!strstr(qg_last_error(), "measured with brotli-11, the artifact would be rans")) fail_msg("%s", qg_last_error());
  snprintf(yaml, sizeof yaml, fmt, mpath, "1250", ", sensitivity: sens.json");
  assert_int_equal(qg_lab_hypothesis_parse(yaml, strlen(yaml), hpath, &h), QG_OK);
  const qg_lab_arm *a = &h.arms[qg_lab_arm_index(&h, "s")];
  assert_true(a->allocates && !a->spec); /* reading the file chooses nothing */
  qg_lab_alloc_ids ids = {sha, "t", "v", ""};
  const char *cache = qg_test_path(dir, "cache");
  for (int pass = 0; pass < 2; pass++) { /* solved, then read back from the cache */
    qg_lab_alloc al;
    if (qg_lab_alloc_resolve(&h, a, &ids, cache, 0, NULL, NULL, &al)) fail_msg("%s", qg_last_error());
    assert_int_equal(al.reused, pass);
    /* the table's optimum (mlp.fc at int8, 1,200 table bytes) is far over the budget for
     * real (the table's bytes are made up) and so is everything else: the repair delivers the
     * smallest real artifact it measured, the base */
    assert_string_equal(al.spec, "blocks.*: rowwise bits=6; tok_emb.weight: rowwise bits=8");
    assert_int_equal(al.predicted_bytes, 1000);
    assert_true(al.predicted_kld == 0.01);
    assert_true(al.repair_rounds >= 1);
    assert_true(al.measured_bytes > 0 && !al.measured_in_place);
    qg_lab_alloc_free(&al);
  }
  qg_lab_hypothesis_free(&h);
  /* too small a budget, no table: one line naming the file and the arm, before any work */
  snprintf(yaml, sizeof yaml, fmt, mpath, "10", ", sensitivity: sens.json");
  assert_int_equal(qg_lab_hypothesis_parse(yaml, strlen(yaml), hpath, &h), QG_ERR_INPUT);
  if (!strstr(qg_last_error(), "arms.s.allocate")) fail_msg("%s", qg_last_error());
  assert_non_null(strstr(qg_last_error(), "smallest achievable total"));
  /* no table and no candidates: nothing for the engine to measure */
  snprintf(yaml, sizeof yaml, "hypothesis: h\nmodel: %s\ntokenizer: tok.model\ndata: {val: val.bin}\nbaseline: a\n"
           "arms:\n  a: {spec: 'blocks.*: rowwise bits=6'}\n  s: {allocate: {budget: 1250}}\n", mpath);
  assert_int_equal(qg_lab_hypothesis_parse(yaml, strlen(yaml), hpath, &h), QG_ERR_INPUT);
  if (!strstr(qg_last_error(), "needs candidates")) fail_msg("%s", qg_last_error());
  /* a table file fixes the groups */
  snprintf(yaml, sizeof yaml, "hypothesis: h\nmodel: %s\ntokenizer: tok.model\ndata: {val: val.bin}\nbaseline: a\n"
           "arms:\n  a: {spec: 'blocks.*: rowwise bits=6'}\n  s: {allocate: {budget: 1250, groups: layers, "
           "sensitivity: sens.json}}\n", mpath);
  assert_int_equal(qg_lab_hypothesis_parse(yaml, strlen(yaml), hpath, &h), QG_ERR_INPUT);
  if (!strstr(qg_last_error(), "only roles")) fail_msg("%s", qg_last_error());
  qg_test_rmdir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_parse_and_solve), cmocka_unit_test(test_malformed),
                                     cmocka_unit_test(test_cli), cmocka_unit_test(test_runner_arm)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
