/* The quantgolf CLI end to end: help and exit codes, inspect/convert/export-int8 on real
 * files, and malformed input -- each case must exit 2 with exactly one line on stderr that
 * names the file, and leave no output file (or temporary) behind. */
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
#include "io/safetensors.h"
#include "io/shards.h"
#include "io/zip.h"
#include "quant/artifact.h"
#include "tests/testlib.h"

static char out[1 << 16], err[1 << 14];

static int count_lines(const char *s) {
  int n = 0;
  for (; *s; s++) n += *s == '\n';
  return n;
}

/* Runs the CLI and checks the bad-input contract. `needle` must appear in the message. */
static void expect_bad(const char *args, const char *needle, const char *outdir, int entries_before) {
  int rc = qg_test_run_cli(args, out, sizeof out, err, sizeof err);
  if (rc != 2) fail_msg("'%s': exit %d, expected 2; stderr: %s", args, rc, err);
  if (count_lines(err) != 1) fail_msg("'%s': stderr is not one line: %s", args, err);
  if (needle && !strstr(err, needle)) fail_msg("'%s': message lacks '%s': %s", args, needle, err);
  if (outdir) assert_int_equal(qg_test_count_entries(outdir), entries_before);
}

static uint8_t *slurp(const char *path, size_t *n) {
  uint8_t *d;
  assert_int_equal(qg_read_file(path, &d, n, 0), QG_OK);
  return d;
}

static void test_help_and_usage(void **st) {
  (void)st;
  assert_int_equal(qg_test_run_cli("--help", out, sizeof out, err, sizeof err), 0);
  assert_non_null(strstr(out, "inspect"));
  assert_non_null(strstr(out, "export-int8"));
  const char *cmds[] = {"inspect", "convert", "export-int8", "info"};
  for (int i = 0; i < 4; i++) {
    char a[64];
    snprintf(a, sizeof a, "%s --help", cmds[i]);
    assert_int_equal(qg_test_run_cli(a, out, sizeof out, err, sizeof err), 0);
    assert_non_null(strstr(out, "usage: quantgolf"));
  }
  expect_bad("", "missing COMMAND", NULL, 0);
  assert_int_equal(qg_test_run_cli("", out, sizeof out, err, sizeof err), 2);
  expect_bad("frobnicate", "unknown command", NULL, 0);
  expect_bad("inspect", "missing FILE", NULL, 0);
  expect_bad("inspect a b", "one FILE", NULL, 0);
  expect_bad("inspect --bogus x", "unknown option", NULL, 0);
  expect_bad("convert only_one", "expected IN", NULL, 0);
  expect_bad("export-int8 a", "expected IN", NULL, 0);
  expect_bad("info extra", "no arguments", NULL, 0);
  assert_int_equal(qg_test_run_cli("info", out, sizeof out, err, sizeof err), 0);
  assert_non_null(strstr(out, "cuda backend"));
}

/* inspect on every real contest file and the test data; --json is parseable enough to
 * hold the expected totals. */
static void test_inspect_real_files(void **st) {
  (void)st;
  const char *p;
  QG_REQUIRE_CONTEST_FILE(p, "baseline7L384d_SamTruss_c839523.int8.ptz");
  char a[4300];
  snprintf(a, sizeof a, "inspect '%s'", p);
  assert_int_equal(qg_test_run_cli(a, out, sizeof out, err, sizeof err), 0);
  assert_non_null(strstr(out, "int8 per-row, float16 scales (orig bfloat16)"));
  assert_non_null(strstr(out, "parameters: 7630520"));
  snprintf(a, sizeof a, "inspect --json '%s'", p);
  assert_int_equal(qg_test_run_cli(a, out, sizeof out, err, sizeof err), 0);
  assert_non_null(strstr(out, "\"parameters\": 7630520"));
  assert_non_null(strstr(out, "\"quant_format\": \"int8_clean_per_row_v1\""));
  QG_REQUIRE_CONTEST_FILE(p, "fineweb_1024_bpe.vocab");
  snprintf(a, sizeof a, "inspect --json '%s'", p);
  assert_int_equal(qg_test_run_cli(a, out, sizeof out, err, sizeof err), 0);
  assert_non_null(strstr(out, "\"byte\": 256"));
  assert_non_null(strstr(out, "\"specs_assumed\": true"));
  QG_REQUIRE_CONTEST_FILE(p, "noncontest_sp1024_nobytefallback_CiprianFlorin-Ifrim.model");
  snprintf(a, sizeof a, "inspect '%s'", p);
  assert_int_equal(qg_test_run_cli(a, out, sizeof out, err, sizeof err), 0);
  assert_non_null(strstr(out, "charsmap 240007 bytes"));
}

/* convert .ptz -> safetensors equals the library's own dequantization, dtypes included;
 * export-int8 of the nolanvild .pt writes a file whose contents equal the contest's. */
static void test_convert_and_export(void **st) {
  (void)st;
  const char *p;
  QG_REQUIRE_CONTEST_FILE(p, "tiny3L128d_nolanvild_3c063e5.pt");
  char pt[4096];
  snprintf(pt, sizeof pt, "%s", p);
  char *dir = qg_test_tmpdir();
  char a[9000], st_path[4200], ptz_path[4200];
  snprintf(st_path, sizeof st_path, "%s/tiny.safetensors", dir);
  snprintf(ptz_path, sizeof ptz_path, "%s/tiny.int8.ptz", dir);
  snprintf(a, sizeof a, "convert '%s' '%s'", pt, st_path);
  assert_int_equal(qg_test_run_cli(a, out, sizeof out, err, sizeof err), 0);
  qg_state x, y;
  assert_int_equal(qg_checkpoint_load(pt, &x, NULL), QG_OK);
  assert_int_equal(qg_safetensors_read(st_path, &y), QG_OK);
  assert_int_equal(x.n, y.n);
  for (int i = 0; i < x.n; i++) {
    const qg_tensor *t = qg_state_find(&y, x.t[i].name);
    assert_non_null(t);
    assert_int_equal(t->dtype, x.t[i].dtype);
    assert_memory_equal(t->data, x.t[i].data, t->nbytes);
  }
  qg_state_free(&y);
  /* export, then convert the export: the dequantized float32 matrices stay float32 */
  snprintf(a, sizeof a, "export-int8 '%s' '%s'", pt, ptz_path);
  assert_int_equal(qg_test_run_cli(a, out, sizeof out, err, sizeof err), 0);
  assert_non_null(strstr(err, "bytes int8+zlib"));
  snprintf(st_path, sizeof st_path, "%s/tiny_q.safetensors", dir);
  snprintf(a, sizeof a, "convert '%s' '%s'", ptz_path, st_path);
  assert_int_equal(qg_test_run_cli(a, out, sizeof out, err, sizeof err), 0);
  assert_int_equal(qg_safetensors_read(st_path, &y), QG_OK);
  const qg_tensor *e = qg_state_find(&y, "tok_emb.weight"), *e0 = qg_state_find(&x, "tok_emb.weight");
  assert_int_equal(e->dtype, QG_F32);
  double maxerr = 0;
  for (int64_t i = 0; i < qg_tensor_numel(e); i++) {
    double d = fabs(((float *)e->data)[i] - ((float *)e0->data)[i]);
    if (d > maxerr) maxerr = d;
  }
  assert_true(maxerr > 0 && maxerr < 0.05); /* int8 error: non-zero, bounded */
  qg_state_free(&y);
  qg_state_free(&x);
  assert_int_equal(qg_test_count_entries(dir), 3);
  qg_test_rmdir(dir);
}

/* Writes a corrupted copy of src into dir/name: bytes [0, cut) then the patch. */
static const char *corrupt_copy(const char *dir, const char *name, const uint8_t *d, size_t n, size_t cut,
                                size_t patch_at, const void *patch, size_t patch_n) {
  static char path[4200];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  uint8_t *c = malloc(n + 1);
  memcpy(c, d, n);
  if (patch) memcpy(c + patch_at, patch, patch_n);
  qg_test_write(path, c, cut);
  free(c);
  return path;
}

static void test_malformed_inputs(void **st) {
  (void)st;
  char *dir = qg_test_tmpdir(), *outdir = qg_test_tmpdir();
  char a[9000], o[4200];
  snprintf(o, sizeof o, "%s/out.safetensors", outdir);
  size_t n;
  int cases = 0;
#define BAD_CONVERT(path, needle)                                 \
  do {                                                            \
    snprintf(a, sizeof a, "convert '%s' '%s'", path, o);          \
    expect_bad(a, needle, outdir, 0);                             \
    cases++;                                                      \
  } while (0)
#define BAD_INSPECT(path, needle)                                 \
  do {                                                            \
    snprintf(a, sizeof a, "inspect '%s'", path);                  \
    expect_bad(a, needle, NULL, 0);                               \
    cases++;                                                      \
  } while (0)

  /* missing, empty, unrecognised */
  BAD_CONVERT(qg_test_path(dir, "missing.pt"), "missing.pt");
  const char *p = corrupt_copy(dir, "empty.pt", (const uint8_t *)"", 0, 0, 0, NULL, 0);
  BAD_INSPECT(p, "empty.pt");
  p = corrupt_copy(dir, "notes.txt", (const uint8_t *)"just some text\n", 15, 15, 0, NULL, 0);
  BAD_CONVERT(p, "unrecognised format");

  /* .pt: truncations at many offsets, a pickle calling os.system, a zip bomb by size */
  uint8_t *pt = slurp(qg_test_data_file("torch_views_p2.pt"), &n);
  size_t cuts[] = {10, 100, 1000, n / 2, n - 30, n - 1};
  for (int i = 0; i < 6; i++) {
    p = corrupt_copy(dir, "cut.pt", pt, n, cuts[i], 0, NULL, 0);
    BAD_CONVERT(p, "cut.pt");
  }
  {
    /* a well-formed torch zip whose pickle asks for os.system */
    static const char evil[] = "\x80\x02" "cos\nsystem\n" "X\x02\x00\x00\x00" "ls" "\x85R.";
    qg_zip_writer zw;
    qg_zip_writer_init(&zw);
    assert_int_equal(qg_zip_writer_add(&zw, "archive/data.pkl", evil, sizeof evil - 1), QG_OK);
    assert_int_equal(qg_zip_writer_finish(&zw), QG_OK);
    p = corrupt_copy(dir, "evil.pt", zw.out.p, zw.out.n, zw.out.n, 0, NULL, 0);
    qg_zip_writer_free(&zw);
    BAD_CONVERT(p, "os.system");
    /* the same pickle bytes patched into a real file are caught by the CRC first */
    qg_zip z;
    assert_int_equal(qg_zip_open_mem(pt, n, "x", &z), QG_OK);
    size_t off = (size_t)qg_zip_find(&z, "torch_views_p2/data.pkl")->data_offset;
    qg_zip_close(&z);
    p = corrupt_copy(dir, "patched.pt", pt, n, n, off, evil, sizeof evil - 1);
    BAD_CONVERT(p, "CRC");
  }
  {
    size_t eocd = n - 22, cd = qg_rd_u32le(pt + eocd + 16);
    uint8_t big[8];
    qg_wr_u32le(big, 0xF0000000u);
    qg_wr_u32le(big + 4, 0xF0000000u);
    p = corrupt_copy(dir, "bomb.pt", pt, n, n, cd + 20, big, 8);
    BAD_CONVERT(p, "past the end");
    uint8_t meth[2] = {8, 0};
    p = corrupt_copy(dir, "deflated.pt", pt, n, n, cd + 10, meth, 2);
    BAD_CONVERT(p, "compression method");
  }
  free(pt);

  /* .ptz: truncated zlib, flipped byte, trailing garbage */
  uint8_t *pz = slurp(qg_test_data_file("small_artifact.int8.ptz"), &n);
  size_t zcuts[] = {1, 2, 50, n / 2, n - 1};
  for (int i = 0; i < 5; i++) {
    p = corrupt_copy(dir, "cut.int8.ptz", pz, n, zcuts[i], 0, NULL, 0);
    BAD_CONVERT(p, "cut.int8.ptz");
  }
  uint8_t flip = (uint8_t)(pz[n / 3] ^ 0xff);
  p = corrupt_copy(dir, "flip.int8.ptz", pz, n, n, n / 3, &flip, 1);
  BAD_CONVERT(p, "flip.int8.ptz");
  free(pz);

  /* shards: wrong version, size not matching the count */
  uint16_t toks[100];
  for (int i = 0; i < 100; i++) toks[i] = (uint16_t)(i * 7 % 1024);
  char sp[4200];
  snprintf(sp, sizeof sp, "%s/good.bin", dir);
  assert_int_equal(qg_shard_write(sp, toks, 100), QG_OK);
  uint8_t *sh = slurp(sp, &n);
  uint8_t v2[4] = {2, 0, 0, 0};
  p = corrupt_copy(dir, "v2.bin", sh, n, n, 4, v2, 4);
  BAD_INSPECT(p, "v2.bin");
  p = corrupt_copy(dir, "short.bin", sh, n, n - 2, 0, NULL, 0);
  BAD_INSPECT(p, "short.bin");
  free(sh);
  snprintf(a, sizeof a, "convert '%s' '%s'", sp, o); /* a shard is not a checkpoint */
  expect_bad(a, "not a checkpoint", outdir, 0);
  cases++;

  /* safetensors: header length past the file, overlapping tensors, NaN weights */
  qg_state s;
  qg_state_init(&s);
  int64_t shape[2] = {300, 256};
  qg_tensor *t;
  assert_int_equal(qg_state_add(&s, "blocks.0.mlp.fc.weight", QG_F32, 2, shape, &t), QG_OK);
  uint64_t rng = 5;
  for (int i = 0; i < 300 * 256; i++) ((float *)t->data)[i] = qg_test_randf(&rng);
  assert_int_equal(qg_state_add(&s, "blocks.0.mlp.proj.weight", QG_F32, 2, shape, &t), QG_OK);
  for (int i = 0; i < 300 * 256; i++) ((float *)t->data)[i] = qg_test_randf(&rng);
  char good[4200];
  snprintf(good, sizeof good, "%s/good.safetensors", dir);
  assert_int_equal(qg_safetensors_write(good, &s), QG_OK);
  uint8_t *sf = slurp(good, &n);
  uint8_t hl[8];
  memcpy(hl, sf, 8);
  uint64_t huge = n * 4;
  memcpy(sf, &huge, 8);
  p = corrupt_copy(dir, "lying.safetensors", sf, n, n, 0, NULL, 0);
  memcpy(sf, hl, 8);
  BAD_CONVERT(p, "lying.safetensors");
  size_t hlen = (size_t)qg_rd_u64le(sf), at = 0;
  while (at + 15 <= hlen && memcmp(sf + 8 + at, "[307200,614400]", 15) != 0) at++;
  assert_true(at + 15 <= hlen);
  memcpy(sf + 8 + at, "[000000,307200]", 15); /* second tensor now overlaps the first */
  p = corrupt_copy(dir, "overlap.safetensors", sf, n, n, 0, NULL, 0);
  BAD_CONVERT(p, "overlap.safetensors");
  free(sf);
  ((float *)s.t[1].data)[777] = NAN;
  char nanp[4200];
  snprintf(nanp, sizeof nanp, "%s/nan.safetensors", dir);
  assert_int_equal(qg_safetensors_write(nanp, &s), QG_OK);
  snprintf(o, sizeof o, "%s/out.int8.ptz", outdir);
  snprintf(a, sizeof a, "export-int8 '%s' '%s'", nanp, o);
  expect_bad(a, "NaN", outdir, 0);
  cases++;
  snprintf(a, sizeof a, "export-int8 '%s' '%s'", qg_test_data_file("small_artifact.int8.ptz"), o);
  expect_bad(a, "already an int8 artifact", outdir, 0);
  cases++;
  snprintf(a, sizeof a, "export-int8 '%s' '%s/x.bin'", good, outdir);
  expect_bad(a, "must end in .ptz", outdir, 0);
  cases++;
  snprintf(a, sizeof a, "convert '%s' '%s/x.bin'", good, outdir);
  expect_bad(a, "must end in .safetensors", outdir, 0);
  cases++;
  qg_state_free(&s);

  /* tokenizer files */
  p = corrupt_copy(dir, "notab.vocab", (const uint8_t *)"<unk>\t0\nabc 1\n", 14, 14, 0, NULL, 0);
  BAD_INSPECT(p, "notab.vocab");
  p = corrupt_copy(dir, "dup.vocab", (const uint8_t *)"<unk>\t0\nab\t-1\nab\t-2\n", 20, 20, 0, NULL, 0);
  BAD_INSPECT(p, "dup.vocab");
  const char *mp = qg_test_contest_file("noncontest_sp1024_nobytefallback_CiprianFlorin-Ifrim.model");
  if (mp) {
    uint8_t *m = slurp(mp, &n);
    size_t mcuts[] = {3, 5000, n / 2, n - 7};
    for (int i = 0; i < 4; i++) {
      p = corrupt_copy(dir, "cut.model", m, n, mcuts[i], 0, NULL, 0);
      BAD_INSPECT(p, "cut.model");
    }
    free(m);
  }

  /* an unwritable output is a runtime failure (exit 1), still with nothing left behind */
  snprintf(a, sizeof a, "convert '%s' '%s/no/such/dir/x.safetensors'", good, outdir);
  assert_int_equal(qg_test_run_cli(a, out, sizeof out, err, sizeof err), 1);
  assert_int_equal(count_lines(err), 1);
  assert_int_equal(qg_test_count_entries(outdir), 0);

  print_message("%d malformed-input cases checked\n", cases);
  assert_true(cases >= 30);
  qg_test_rmdir(dir);
  qg_test_rmdir(outdir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_help_and_usage),
      cmocka_unit_test(test_inspect_real_files),
      cmocka_unit_test(test_convert_and_export),
      cmocka_unit_test(test_malformed_inputs),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
