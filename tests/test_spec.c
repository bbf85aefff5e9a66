/* quant/spec.c: glob matching, inline and YAML specs, and the plan (first match, the
 * contest's passthrough rules, defaults, errors naming rule and tensor). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "quant/spec.h"
#include "tests/testlib.h"

static void test_glob(void **st) {
  (void)st;
  struct {
    const char *p, *s;
    int m;
  } c[] = {
      {"blocks.*.mlp.*", "blocks.3.mlp.fc.weight", 1}, {"blocks.*.mlp.*", "blocks.3.attn.c_q.weight", 0},
      {"*", "", 1},                                    {"*", "tok_emb.weight", 1},
      {"*.weight", "blocks.0.attn.c_k.weight", 1},     {"*.weight", "skip_weights", 0},
      {"blocks.1*", "blocks.10.mlp.fc.weight", 1},     {"blocks.1.*", "blocks.10.mlp.fc.weight", 0},
      {"a*b*c", "aXbYbZc", 1},                         {"a*b*c", "aXbYcZ", 0},
      {"tok_emb.weight", "tok_emb.weight", 1},         {"tok_emb.weight", "tok_emb.weights", 0},
      {"**a", "a", 1},                                 {"*a*", "bbb", 0},
  };
  for (size_t i = 0; i < sizeof c / sizeof c[0]; i++)
    if (qg_glob_match(c[i].p, c[i].s) != c[i].m) fail_msg("glob '%s' vs '%s': expected %d", c[i].p, c[i].s, c[i].m);
  assert_true(qg_spec_pattern_explicit("blocks.*.attn.q_gain"));
  assert_true(qg_spec_pattern_explicit("skip_weights"));
  assert_false(qg_spec_pattern_explicit("blocks.*.attn.*"));
  assert_false(qg_spec_pattern_explicit("*"));
}

/* A small contest-shaped state: 2 blocks at d = 256 (matrices 65,536+ elements). */
static void model(qg_state *s) {
  qg_state_init(s);
  qg_tensor *t;
  int64_t emb[2] = {1024, 256}, mat[2] = {320, 256}, fc[2] = {512, 256}, proj[2] = {256, 512}, vec[1] = {256},
          mix[2] = {2, 256}, g[1] = {4}, sk[1] = {1};
  assert_int_equal(qg_state_add(s, "tok_emb.weight", QG_F32, 2, emb, &t), QG_OK);
  for (int b = 0; b < 2; b++) {
    char n[64];
#define ADD(suffix, shape, nd)                                                     \
  snprintf(n, sizeof n, "blocks.%d.%s", b, suffix);                                \
  assert_int_equal(qg_state_add(s, n, QG_F32, nd, shape, &t), QG_OK)
    ADD("attn.c_q.weight", mat, 2);
    ADD("attn.proj.weight", mat, 2);
    ADD("mlp.fc.weight", fc, 2);
    ADD("mlp.proj.weight", proj, 2);
    ADD("attn_scale", vec, 1);
    ADD("resid_mix", mix, 2);
    ADD("attn.q_gain", g, 1);
#undef ADD
  }
  assert_int_equal(qg_state_add(s, "skip_weights", QG_F32, 1, sk, &t), QG_OK);
  assert_int_equal(qg_state_add(s, "steps", QG_I64, 1, sk, &t), QG_OK);
}

static const qg_spec_assign *find(const qg_spec_plan *p, const qg_state *s, const char *name) {
  for (int i = 0; i < p->n; i++)
    if (!strcmp(s->t[p->a[i].index].name, name)) return &p->a[i];
  fail_msg("no %s", name);
  return NULL;
}

static void test_plan(void **st) {
  (void)st;
  qg_state s;
  model(&s);
  qg_spec sp;
  assert_int_equal(qg_spec_parse_inline("blocks.*.mlp.*: rowwise bits=5; blocks.*.attn.q_gain: fp16;\n"
                                        " *: rowwise bits=6 group=64",
                                        &sp),
                   QG_OK);
  assert_int_equal(sp.n, 3);
  assert_string_equal(sp.rules[0].glob, "blocks.*.mlp.*");
  assert_string_equal(sp.rules[0].method, "rowwise");
  assert_string_equal(sp.rules[0].options, "bits=5");
  qg_spec_plan p;
  assert_int_equal(qg_spec_plan_make(&sp, &s, &p), QG_OK);
  const qg_spec_assign *a = find(&p, &s, "blocks.1.mlp.fc.weight");
  assert_int_equal(a->kind, QG_ASSIGN_RULE);
  assert_int_equal(a->rule, 0);
  assert_non_null(strstr(a->cfg->canon, "bits=5"));
  a = find(&p, &s, "blocks.0.attn.c_q.weight");
  assert_int_equal(a->rule, 2);
  a = find(&p, &s, "blocks.0.attn.q_gain"); /* small, but named explicitly */
  assert_int_equal(a->kind, QG_ASSIGN_RULE);
  assert_string_equal(a->cfg->q->name, "fp16");
  a = find(&p, &s, "blocks.0.attn_scale"); /* control: fp32 despite '*' */
  assert_int_equal(a->kind, QG_ASSIGN_PASSTHROUGH);
  assert_string_equal(a->cfg->q->name, "fp32");
  a = find(&p, &s, "steps");
  assert_string_equal(a->cfg->q->name, "raw");
  qg_spec_plan_free(&p);
  qg_spec_free(&sp);

  /* unmatched large tensors: contest-int8; small non-control: fp16 */
  assert_int_equal(qg_spec_parse_inline("blocks.*.mlp.fc.weight: rowwise bits=4", &sp), QG_OK);
  assert_int_equal(qg_spec_plan_make(&sp, &s, &p), QG_OK);
  a = find(&p, &s, "tok_emb.weight");
  assert_int_equal(a->kind, QG_ASSIGN_DEFAULT);
  assert_string_equal(a->cfg->q->name, "contest-int8");
  qg_spec_plan_free(&p);
  qg_spec_free(&sp);

  /* errors: no match; shadowed; cannot take (naming tensor and rule) */
  assert_int_equal(qg_spec_parse_inline("blocks.*.attn.c_v.weight: rowwise; *: fp16", &sp), QG_OK);
  assert_int_equal(qg_spec_plan_make(&sp, &s, &p), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "rule 1 ('blocks.*.attn.c_v.weight: rowwise') matches no tensor"));
  qg_spec_free(&sp);
  assert_int_equal(qg_spec_parse_inline("*: fp16; blocks.*: rowwise", &sp), QG_OK);
  assert_int_equal(qg_spec_plan_make(&sp, &s, &p), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "rule 2"));
  assert_non_null(strstr(qg_last_error(), "taken by earlier rules"));
  qg_spec_free(&sp);
  assert_int_equal(qg_spec_parse_inline("blocks.*.mlp.proj.weight: rowwise group=384", &sp), QG_OK);
  assert_int_equal(qg_spec_plan_make(&sp, &s, &p), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "blocks.0.mlp.proj.weight"));
  assert_non_null(strstr(qg_last_error(), "rule 1"));
  assert_non_null(strstr(qg_last_error(), "group=384"));
  qg_spec_free(&sp);
  /* parse errors */
  assert_int_equal(qg_spec_parse_inline("blocks.*: rowwize bits=5", &sp), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "unknown quantizer 'rowwize'"));
  assert_int_equal(qg_spec_parse_inline("blocks.* rowwise", &sp), QG_ERR_INPUT);
  assert_int_equal(qg_spec_parse_inline(" ; ", &sp), QG_ERR_INPUT);
  assert_int_equal(qg_spec_parse_inline("x: rowwise bits=1", &sp), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "rule 1"));
  qg_state_free(&s);
}

/* A 3L128d-like state: every block matrix is small (16,384 weights). Glob rules take them;
 * control and 1-D tensors stay passthrough; contest_passthrough restores the contest's
 * export rule that leaves all small float tensors alone. */
static void test_small_matrices(void **st) {
  (void)st;
  qg_state s;
  qg_state_init(&s);
  qg_tensor *t;
  int64_t mat[2] = {128, 128}, mix[2] = {2, 128}, vec[1] = {128}, emb[2] = {1024, 128};
  assert_int_equal(qg_state_add(&s, "tok_emb.weight", QG_F32, 2, emb, &t), QG_OK);
  assert_int_equal(qg_state_add(&s, "blocks.0.attn.c_q.weight", QG_F32, 2, mat, &t), QG_OK);
  assert_int_equal(qg_state_add(&s, "blocks.0.mlp.fc.weight", QG_F32, 2, mat, &t), QG_OK);
  assert_int_equal(qg_state_add(&s, "blocks.0.resid_mix", QG_F32, 2, mix, &t), QG_OK);
  assert_int_equal(qg_state_add(&s, "blocks.0.attn.bias", QG_F32, 1, vec, &t), QG_OK);
  qg_spec sp;
  qg_spec_plan p;
  assert_int_equal(qg_spec_parse_inline("blocks.*: rowwise bits=6", &sp), QG_OK);
  assert_int_equal(qg_spec_plan_make(&sp, &s, &p), QG_OK);
  assert_int_equal(find(&p, &s, "blocks.0.attn.c_q.weight")->kind, QG_ASSIGN_RULE);
  assert_int_equal(find(&p, &s, "blocks.0.mlp.fc.weight")->kind, QG_ASSIGN_RULE);
  const qg_spec_assign *a = find(&p, &s, "blocks.0.resid_mix"); /* control, 2-D */
  assert_int_equal(a->kind, QG_ASSIGN_PASSTHROUGH);
  assert_string_equal(a->cfg->q->name, "fp32");
  a = find(&p, &s, "blocks.0.attn.bias"); /* 1-D */
  assert_int_equal(a->kind, QG_ASSIGN_PASSTHROUGH);
  assert_string_equal(a->cfg->q->name, "fp16");
  assert_int_equal(find(&p, &s, "tok_emb.weight")->kind, QG_ASSIGN_DEFAULT);
  qg_spec_plan_free(&p);
  /* the contest's rule: the same glob now matches only tensors it may not take */
  sp.contest_passthrough = 1;
  assert_int_equal(qg_spec_plan_make(&sp, &s, &p), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "taken by earlier rules or passthrough"));
  qg_spec_free(&sp);
  assert_int_equal(qg_spec_parse_inline("*: rowwise bits=6", &sp), QG_OK);
  sp.contest_passthrough = 1;
  assert_int_equal(qg_spec_plan_make(&sp, &s, &p), QG_OK);
  a = find(&p, &s, "blocks.0.attn.c_q.weight");
  assert_int_equal(a->kind, QG_ASSIGN_PASSTHROUGH);
  assert_string_equal(a->cfg->q->name, "fp16");
  assert_int_equal(find(&p, &s, "tok_emb.weight")->kind, QG_ASSIGN_RULE);
  qg_spec_plan_free(&p);
  qg_spec_free(&sp);
  /* the YAML key */
  const char *y = "contest_passthrough: true\nrules:\n  - '*': rowwise bits=6\n";
  assert_int_equal(qg_spec_parse_yaml((const uint8_t *)y, strlen(y), "t.yaml", &sp), QG_OK);
  assert_int_equal(sp.contest_passthrough, 1);
  qg_spec_free(&sp);
  qg_state_free(&s);
}

static void test_yaml(void **st) {
  (void)st;
  const char *y1 = "# per-role\nblocks.*.mlp.*: rowwise bits=5\n\"*\": {quantizer: rowwise, bits: 6, group: 64}\n";
  qg_spec sp;
  assert_int_equal(qg_spec_parse_yaml((const uint8_t *)y1, strlen(y1), "a.yaml", &sp), QG_OK);
  assert_int_equal(sp.n, 2);
  assert_string_equal(sp.rules[1].glob, "*");
  assert_non_null(strstr(sp.rules[1].cfg.canon, "bits=6"));
  assert_non_null(strstr(sp.rules[1].cfg.canon, "group=64"));
  assert_int_equal(sp.rules[1].line, 3);
  qg_spec_free(&sp);
  const char *y2 = "seed: 42\nrules:\n  - blocks.*.attn.*: gptq bits=6 act_order=1\n"
                   "  - match: \"*\"\n    quantizer: rowwise\n    options: bits=8 clip=sd\n";
  assert_int_equal(qg_spec_parse_yaml((const uint8_t *)y2, strlen(y2), "b.yaml", &sp), QG_OK);
  assert_int_equal(sp.n, 2);
  assert_true(sp.seed == 42);
  assert_string_equal(sp.rules[0].method, "gptq");
  assert_non_null(strstr(sp.rules[1].cfg.canon, "clip=sd k=20"));
  qg_spec_free(&sp);
  /* malformed YAML: one line naming file and line */
  const char *bad = "a: [1, 2\nb: c\n";
  assert_int_equal(qg_spec_parse_yaml((const uint8_t *)bad, strlen(bad), "c.yaml", &sp), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "c.yaml: line"));
  assert_null(strchr(qg_last_error(), '\n'));
  const char *bad2 = "rules:\n  - match: x\n    bits: 5\n";
  assert_int_equal(qg_spec_parse_yaml((const uint8_t *)bad2, strlen(bad2), "d.yaml", &sp), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "quantizer"));
  const char *bad3 = "x: rowwise bits=5 nope=1\n";
  assert_int_equal(qg_spec_parse_yaml((const uint8_t *)bad3, strlen(bad3), "e.yaml", &sp), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "e.yaml: line 1"));
  assert_non_null(strstr(qg_last_error(), "unknown option 'nope'"));
  const char *bad4 = "- a\n- b\n";
  assert_int_equal(qg_spec_parse_yaml((const uint8_t *)bad4, strlen(bad4), "f.yaml", &sp), QG_ERR_INPUT);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_glob),
      cmocka_unit_test(test_plan),
      cmocka_unit_test(test_small_matrices),
      cmocka_unit_test(test_yaml),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
