/* What a new contest entrant meets at the command line: honest labels on quantize's
 * figures, the spec language listed from the parsers' own tables, presets, inspecting
 * artifacts, requantize and tokenizer warnings, dry runs, thread counts, saved Hessians
 * and the hint for a shell-expanded glob. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/file.h"
#include "core/util.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "io/shard_manifest.h"
#include "io/shards.h"
#include "io/spm.h"
#include "quant/quantizer.h"
#include "quant/spec.h"
#include "tests/testlib.h"

static char out[1 << 17], err[1 << 14];
static char cmd[20000];

/* A float checkpoint with one 64x32 matrix "w" and one 16-element vector "b". */
static void small_model(const char *path) {
  qg_state s;
  qg_state_init(&s);
  int64_t shape[2] = {64, 32}, vshape[1] = {16};
  qg_tensor *t;
  assert_int_equal(qg_state_add(&s, "w", QG_F32, 2, shape, &t), QG_OK);
  uint64_t rng = 9;
  for (int i = 0; i < 64 * 32; i++) ((float *)t->data)[i] = qg_test_randf(&rng);
  assert_int_equal(qg_state_add(&s, "b", QG_F32, 1, vshape, &t), QG_OK);
  for (int i = 0; i < 16; i++) ((float *)t->data)[i] = qg_test_randf(&rng);
  assert_int_equal(qg_safetensors_write(path, &s), QG_OK);
  qg_state_free(&s);
}

static int run(const char *fmt, ...) QG_PRINTF(1, 2);
static int run(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  return qg_test_run_cli(cmd, out, sizeof out, err, sizeof err);
}

/* Item: misleading numbers. Option floats print in their shortest round-trip form, the
 * table says '-' for an absent Hessian and labels packed bytes, and the order-0 figure is
 * not called a bound. */
static void test_honest_numbers(void **st) {
  (void)st;
  char b[32];
  assert_string_equal(qg_num_str(99.99984, b), "99.99984");
  assert_string_equal(qg_num_str(20.0, b), "20");
  assert_string_equal(qg_num_str(0.01, b), "0.01");
  assert_true(strtod(qg_num_str(0.1 + 0.2, b), NULL) == 0.1 + 0.2);
  qg_qconfig c;
  assert_int_equal(qg_qconfig_parse("rowwise", "bits=8 clip=pct pct=99.99984", &c), QG_OK);
  assert_non_null(strstr(c.canon, "pct=99.99984"));
  assert_null(strstr(c.canon, "99.999840000"));
  qg_qconfig_free(&c);

  char *dir = qg_test_tmpdir();
  char m[4200], o[4200];
  snprintf(m, sizeof m, "%s/m.safetensors", dir);
  snprintf(o, sizeof o, "%s/a.qgz", dir);
  small_model(m);
  assert_int_equal(run("quantize --model '%s' --spec '*: rowwise bits=6' --out '%s'", m, o), 0);
  assert_null(strstr(out, "nan"));
  assert_non_null(strstr(out, "packed B"));
  assert_null(strstr(out, "bound"));
  assert_non_null(strstr(out, "order-0 entropy"));
  qg_test_rmdir(dir);
}

/* Item: requantizing. A quantized source gets one note on stderr after the figures and
 * "quantized": true in the JSON model object; a float source gets neither. */
static void test_requantize_note(void **st) {
  (void)st;
  const char *p;
  QG_REQUIRE_CONTEST_FILE(p, "tiny3L128d_nolanvild_3c063e5.int8.ptz");
  char ptz[4096];
  snprintf(ptz, sizeof ptz, "%s", p);
  char *dir = qg_test_tmpdir();
  char m[4200], o[4200];
  snprintf(m, sizeof m, "%s/m.safetensors", dir);
  snprintf(o, sizeof o, "%s/a.qgz", dir);
  small_model(m);
  assert_int_equal(run("quantize --model '%s' --spec '*: rowwise bits=6' --out '%s' --json", ptz, o), 0);
  assert_non_null(strstr(out, "\"quantized\": true"));
  const char *note = strstr(err, "already a quantized artifact");
  assert_non_null(note);
  assert_null(strstr(note + 1, "already a quantized artifact")); /* once */
  assert_null(strstr(note, "written")); /* after the figures, not before */
  assert_int_equal(run("quantize --model '%s' --spec '*: rowwise bits=6' --out '%s' --json", m, o), 0);
  assert_non_null(strstr(out, "\"quantized\": false"));
  assert_null(strstr(err, "already a quantized"));
  qg_test_rmdir(dir);
}

/* Item: what llama.cpp users look for. --dry-run writes nothing and prints the plan,
 * --threads is taken by the threaded commands, a shell-expanded glob gets a hint, and
 * saved Hessians reproduce the calibrated artifact byte for byte and refuse another
 * model or other calibration tokens. */
static void test_llama_habits(void **st) {
  (void)st;
  const char *p;
  char *dir = qg_test_tmpdir();
  char m[4200], o[4200], sh[4200], sh2[4200];
  snprintf(m, sizeof m, "%s/m.safetensors", dir);
  snprintf(o, sizeof o, "%s/a.qgz", dir);
  small_model(m);
  int before = qg_test_count_entries(dir);
  assert_int_equal(run("quantize --model '%s' --spec 'w: gptq bits=4' --dry-run --threads 2", m), 0);
  assert_non_null(strstr(out, "gptq bits=4"));
  assert_non_null(strstr(out, "no artifact written"));
  assert_non_null(strstr(out, "packed B"));
  assert_int_equal(qg_test_count_entries(dir), before);
  assert_int_equal(run("quantize --model '%s' --spec '*: fp16' --out '%s' --threads 0", m, o), 2);
  assert_non_null(strstr(err, "--threads 0"));
  /* the shell expanded a glob of shards into two words: the second one is "unknown" */
  snprintf(sh, sizeof sh, "%s/fineweb_val_000000.bin", dir);
  snprintf(sh2, sizeof sh2, "%s/fineweb_val_000001.bin", dir);
  uint16_t toks[64] = {1};
  assert_int_equal(qg_shard_write(sh, toks, 64), QG_OK);
  assert_int_equal(qg_shard_write(sh2, toks, 64), QG_OK);
  assert_int_equal(run("eval --model '%s' --val '%s' '%s' --tokenizer x.model", m, sh, sh2), 2);
  assert_non_null(strstr(err, "unquoted glob"));
  assert_int_equal(run("quantize --model '%s' --calib '%s' '%s' --spec '*: fp16' --out '%s'", m, sh, sh2, o), 2);
  assert_non_null(strstr(err, "unquoted glob"));
  assert_int_equal(run("quantize --model '%s' --spec '*: fp16' --out '%s' --bogus", m, o), 2);
  assert_null(strstr(err, "unquoted glob"));

  QG_REQUIRE_CONTEST_FILE(p, "tiny3L128d_nolanvild_3c063e5.pt");
  char pt[4096];
  snprintf(pt, sizeof pt, "%s", p);
  /* calibration tokens: a shard of seeded random ids below the vocabulary */
  uint16_t *tk = malloc(sizeof *tk * 8192);
  uint64_t rng = 5;
  for (int i = 0; i < 8192; i++) tk[i] = (uint16_t)(qg_test_rand(&rng) % 1024);
  char cal[4200], hf[4200], o2[4200];
  snprintf(cal, sizeof cal, "%s/calib.bin", dir);
  snprintf(hf, sizeof hf, "%s/h.safetensors", dir);
  snprintf(o2, sizeof o2, "%s/b.qgz", dir);
  assert_int_equal(qg_shard_write(cal, tk, 8192), QG_OK);
  free(tk);
  const char *spec = "blocks.0.*: gptq bits=4; *: rowwise bits=8";
  assert_int_equal(run("quantize --model '%s' --spec '%s' --out '%s' --calib '%s' --calib-seqs 4 --calib-len 64 "
                       "--mlp-power 3 --save-hessians '%s'", pt, spec, o, cal, hf), 0);
  assert_int_equal(run("quantize --model '%s' --spec '%s' --out '%s' --load-hessians '%s' --mlp-power 3 --json", pt, spec,
                       o2, hf), 0);
  assert_non_null(strstr(out, "\"hessians_loaded\": true"));
  size_t n1, n2;
  uint8_t *a1, *a2;
  assert_int_equal(qg_read_file(o, &a1, &n1, 0), QG_OK);
  assert_int_equal(qg_read_file(o2, &a2, &n2, 0), QG_OK);
  assert_int_equal(n1, n2);
  assert_memory_equal(a1, a2, n1);
  free(a1), free(a2);
  /* the same tokens again pass; other tokens or another model are refused */
  assert_int_equal(run("quantize --model '%s' --spec '%s' --out '%s' --load-hessians '%s' --calib '%s' --calib-seqs 4 "
                       "--calib-len 64 --mlp-power 3", pt, spec, o2, hf, cal), 0);
  assert_int_equal(run("quantize --model '%s' --spec '%s' --out '%s' --load-hessians '%s' --calib '%s' --calib-seqs 4 "
                       "--calib-len 64 --calib-seed 9 --mlp-power 3", pt, spec, o2, hf, cal), 2);
  assert_non_null(strstr(err, "calibration tokens"));
  QG_REQUIRE_CONTEST_FILE(p, "tiny3L128d_nolanvild_3c063e5.int8.ptz");
  assert_int_equal(run("quantize --model '%s' --spec '%s' --out '%s' --load-hessians '%s'", p, spec, o2, hf), 2);
  assert_non_null(strstr(err, "another model"));
  qg_test_rmdir(dir);
}

/* Item: a wrong tokenizer. prepare records the tokenizer beside the shards (and the
 * contest's byte count); eval refuses another tokenizer unless told, a .vocab of the same
 * tokenizer passes, and the library check names the mismatch for other callers. */
static void test_tokenizer_manifest(void **st) {
  (void)st;
  char *dir = qg_test_tmpdir();
  char sd[4200], tokm[4200], corpus[4200];
  snprintf(sd, sizeof sd, "%s/shards", dir);
  snprintf(tokm, sizeof tokm, "%s", qg_test_data_file("tok_rules.model"));
  snprintf(corpus, sizeof corpus, "%s", qg_test_data_file("tok_corpus.txt"));
  assert_int_equal(run("prepare --tokenizer '%s' --input '%s' --out '%s' --val-docs 5", tokm, corpus, sd), 0);
  assert_non_null(strstr(err, "bytes by the contest's tables"));
  char man[4300], shard[4300];
  snprintf(man, sizeof man, "%s/fineweb_tokenizer.json", sd);
  snprintf(shard, sizeof shard, "%s/fineweb_val_000000.bin", sd);
  assert_true(qg_test_exists(man));
  char mp[4300];
  assert_int_equal(qg_shard_manifest_path(shard, mp, sizeof mp), 1);
  assert_string_equal(mp, man);
  assert_int_equal(qg_shard_manifest_path("x/other.bin", mp, sizeof mp), 0);
  qg_shards sh;
  assert_int_equal(qg_shards_open(shard, &sh), QG_OK);
  qg_spm tok;
  assert_int_equal(qg_spm_load(tokm, &tok), QG_OK);
  int checked = 0;
  assert_int_equal(qg_shards_check_tokenizer(&sh, &tok, tokm, &checked), QG_OK);
  assert_int_equal(checked, 1);
  tok.pieces[tok.n_pieces - 1].type = tok.pieces[tok.n_pieces - 1].type == 1 ? 4 : 1; /* another tokenizer */
  assert_int_equal(qg_shards_check_tokenizer(&sh, &tok, tokm, &checked), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "prepared with tokenizer"));
  qg_spm_free(&tok);
  qg_shards_close(&sh);

  const char *p;
  QG_REQUIRE_CONTEST_FILE(p, "fineweb_1024_bpe.vocab");
  char vocab[4096], other[4096], pt[4096];
  snprintf(vocab, sizeof vocab, "%s", p);
  QG_REQUIRE_CONTEST_FILE(p, "noncontest_sp1024_nobytefallback_CiprianFlorin-Ifrim.model");
  snprintf(other, sizeof other, "%s", p);
  QG_REQUIRE_CONTEST_FILE(p, "tiny3L128d_nolanvild_3c063e5.pt");
  snprintf(pt, sizeof pt, "%s", p);
  char sd2[4200];
  snprintf(sd2, sizeof sd2, "%s/fw", dir);
  assert_int_equal(run("prepare --tokenizer '%s' --input '%s' --out '%s' --val-docs 1000", vocab, corpus, sd2), 0);
  const char *ev = "eval --model '%s' --mlp-power 3 --val '%s/fineweb_val_*.bin' --tokenizer '%s' --seq-len 64 "
                   "--max-tokens 200 %s";
  assert_int_equal(run(ev, pt, sd2, vocab, ""), 0);
  assert_int_equal(run(ev, pt, sd2, other, ""), 2);
  assert_non_null(strstr(err, "prepared with tokenizer"));
  assert_int_equal(run(ev, pt, sd2, other, "--allow-tokenizer-mismatch"), 0);
  assert_non_null(strstr(err, "warning"));
  qg_test_rmdir(dir);
}

/* Item: the spec language. The listing comes from the parsers (every key parse() asks
 * for is documented, every documented key is asked for), presets expand inline, in YAML
 * and through --preset, and an unknown preset names the valid ones. */
static void test_spec_language(void **st) {
  (void)st;
  for (int i = 0; qg_quantizers[i]; i++) {
    const qg_quantizer *q = qg_quantizers[i];
    qg_opts o;
    assert_int_equal(qg_quantizer_describe(q, &o), QG_OK);
    for (int k = 0; k < o.n_desc; k++)
      if (!qg_quantizer_option_doc(q, o.desc[k].key)) fail_msg("%s: option %s has no meaning", q->name, o.desc[k].key);
    for (int k = 0; q->option_docs && q->option_docs[k]; k += 2) {
      int asked = 0;
      for (int j = 0; j < o.n_desc; j++) asked |= !strcmp(o.desc[j].key, q->option_docs[k]);
      if (!asked) fail_msg("%s: documented option %s is not parsed", q->name, q->option_docs[k]);
    }
    qg_opts_free(&o);
  }
  assert_int_equal(run("quantizers"), 0);
  assert_non_null(strstr(out, "number [50, 100] = 99.99984"));
  assert_non_null(strstr(out, "int [2, 8] = 6"));
  assert_non_null(strstr(out, "int5mlp-int6attn-fp16emb"));
  assert_non_null(strstr(out, "contest-int8"));
  assert_int_equal(run("--help"), 0);
  assert_non_null(strstr(out, "QG_THREADS"));
  assert_int_equal(run("quantize --help"), 0);
  assert_non_null(strstr(out, "--compress none"));
  assert_non_null(strstr(out, "--preset"));

  qg_spec sp;
  assert_int_equal(qg_spec_parse_inline("blocks.0.*: fp16; preset: int6", &sp), QG_OK);
  assert_int_equal(sp.n, 3);
  assert_string_equal(sp.rules[1].glob, "tok_emb.weight");
  qg_spec_free(&sp);
  const char *y = "rules:\n  - preset: int5mlp-int6attn-fp16emb\n";
  assert_int_equal(qg_spec_parse_yaml((const uint8_t *)y, strlen(y), "t.yaml", &sp), QG_OK);
  assert_int_equal(sp.n, 3);
  assert_string_equal(sp.rules[1].method, "rowwise");
  qg_spec_free(&sp);
  assert_int_equal(qg_spec_parse_inline("preset: int7", &sp), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "valid: contest-int8"));

  const char *p;
  QG_REQUIRE_CONTEST_FILE(p, "tiny3L128d_nolanvild_3c063e5.pt");
  char pt[4096];
  snprintf(pt, sizeof pt, "%s", p);
  assert_int_equal(run("quantize --model '%s' --preset int6 --dry-run --json", pt), 0);
  assert_non_null(strstr(out, "\"name\": \"tok_emb.weight\",\n      \"method\": \"rowwise\",\n      \"options\": \"bits=8"));
  /* contest-int8 is export-int8's artifact */
  char *dir = qg_test_tmpdir();
  char a1[4200], a2[4200];
  snprintf(a1, sizeof a1, "%s/a.int8.ptz", dir);
  snprintf(a2, sizeof a2, "%s/b.int8.ptz", dir);
  assert_int_equal(run("quantize --model '%s' --preset contest-int8 --out '%s'", pt, a1), 0);
  assert_int_equal(run("export-int8 '%s' '%s'", pt, a2), 0);
  size_t n1, n2;
  uint8_t *d1, *d2;
  assert_int_equal(qg_read_file(a1, &d1, &n1, 0), QG_OK);
  assert_int_equal(qg_read_file(a2, &d2, &n2, 0), QG_OK);
  assert_int_equal(n1, n2);
  assert_memory_equal(d1, d2, n1);
  free(d1), free(d2);
  qg_test_rmdir(dir);
  assert_int_equal(run("quantize --model '%s' --preset nope --dry-run", pt), 2);
  assert_non_null(strstr(err, "unknown preset"));
}

/* Item: inspecting artifacts. A .qgz shows each tensor's method, options, bits per
 * weight, levels used and packed bytes; a .int8.ptz from 6-bit codes says so. */
static void test_inspect_artifacts(void **st) {
  (void)st;
  char *dir = qg_test_tmpdir();
  char m[4200], o[4200], z[4200];
  snprintf(m, sizeof m, "%s/m.safetensors", dir);
  snprintf(o, sizeof o, "%s/a.qgz", dir);
  snprintf(z, sizeof z, "%s/a.int8.ptz", dir);
  small_model(m);
  assert_int_equal(run("quantize --model '%s' --spec 'w: rowwise bits=4' --out '%s'", m, o), 0);
  assert_int_equal(run("inspect '%s'", o), 0);
  assert_non_null(strstr(out, "levels"));
  assert_non_null(strstr(out, "rowwise bits=4"));
  assert_non_null(strstr(out, "packed B"));
  assert_null(strstr(out, "float32   [64, 32]")); /* not the dequantized view */
  assert_int_equal(run("inspect --json '%s'", o), 0);
  assert_non_null(strstr(out, "\"method\": \"rowwise\""));
  assert_non_null(strstr(out, "\"code_bits\": 4"));
  const char *lv = strstr(out, "\"levels_used\": ");
  assert_non_null(lv);
  long n = strtol(lv + 16, NULL, 10);
  assert_true(n >= 2 && n <= 15); /* symmetric int4: at most 15 levels */
  assert_non_null(strstr(out, "\"bytes\": "));
  assert_int_equal(run("quantize --model '%s' --spec 'w: rowwise bits=6' --out '%s'", m, z), 0);
  assert_int_equal(run("inspect '%s'", z), 0);
  assert_non_null(strstr(out, "(6-bit codes)"));
  qg_test_rmdir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_honest_numbers),
      cmocka_unit_test(test_requantize_note),
      cmocka_unit_test(test_llama_habits),
      cmocka_unit_test(test_tokenizer_manifest),
      cmocka_unit_test(test_spec_language),
      cmocka_unit_test(test_inspect_artifacts),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
