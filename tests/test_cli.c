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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "core/file.h"
#include "core/util.h"
#include "io/checkpoint.h"
#include "io/qgz.h"
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

static double qg_test_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
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
  assert_non_null(strstr(out, "cpu blas: OpenBLAS"));
  assert_non_null(strstr(out, ", kernels "));
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

  /* an output folder that is missing, under a file, or read-only, and a directory given
   * as the output file: bad usage (exit 2), nothing left behind */
  snprintf(a, sizeof a, "convert '%s' '%s/no/such/dir/x.safetensors'", good, outdir);
  expect_bad(a, "No such file", outdir, 0);
  cases++;
  {
    char d[4300];
    snprintf(d, sizeof d, "%s/d.safetensors", outdir);
    assert_int_equal(mkdir(d, 0777), 0);
    snprintf(a, sizeof a, "convert '%s' '%s'", good, d);
    expect_bad(a, "is a directory", outdir, 1);
    rmdir(d);
    snprintf(a, sizeof a, "convert '%s' '%s/x.safetensors'", good, good); /* a folder "under" a file */
    expect_bad(a, "Not a directory", outdir, 0);
    if (geteuid() != 0) { /* root writes anywhere */
      snprintf(d, sizeof d, "%s/ro", outdir);
      assert_int_equal(mkdir(d, 0555), 0);
      snprintf(a, sizeof a, "convert '%s' '%s/x.safetensors'", good, d);
      expect_bad(a, "Permission denied", NULL, 0);
      assert_int_equal(qg_test_count_entries(d), 0);
      rmdir(d);
    }
    cases += 2;
  }

  print_message("%d malformed-input cases checked\n", cases);
  assert_true(cases >= 30);
  qg_test_rmdir(dir);
  qg_test_rmdir(outdir);
}

/* Shapes whose dims multiply past 2^63 must be rejected by every reader, never multiplied
 * out (signed overflow is undefined behaviour: the ASan+UBSan build aborts on it). */
static void test_overflowing_shapes(void **st) {
  (void)st;
  char *dir = qg_test_tmpdir();
  char a[4400];
  /* The 60-byte .qgz: --compress none, one tensor "fc" (rowwise) of shape [0, 2^40, 2^40]:
   * 0 elements, so the element bound passes, but the rows x cols view is 2^80. */
  static const uint8_t payload[] = {
      2, 'f', 'c', 7, 'r', 'o', 'w', 'w', 'i', 's', 'e', 0, /* name, method, no options */
      0, 3,                                            /* dtype f32, 3 dims */
      0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20,           /* 0, 2^40 */
      0x80, 0x80, 0x80, 0x80, 0x80, 0x20,              /* 2^40 */
      0};                                              /* no sections */
  uint8_t f[QG_QGZ_HEADER + sizeof payload];
  memset(f, 0, sizeof f);
  memcpy(f, QG_QGZ_MAGIC, 4);
  qg_wr_u16le(f + 4, QG_QGZ_VERSION);
  f[6] = QG_COMP_NONE;
  qg_wr_u32le(f + 8, 1);
  qg_wr_u32le(f + 12, (uint32_t)crc32(0L, payload, sizeof payload));
  qg_wr_u32le(f + 16, sizeof payload);
  qg_wr_u32le(f + 24, sizeof payload);
  memcpy(f + QG_QGZ_HEADER, payload, sizeof payload);
  assert_int_equal(sizeof f, 60);
  const char *p = qg_test_path(dir, "overflow.qgz");
  qg_test_write(p, f, sizeof f);
  snprintf(a, sizeof a, "inspect '%s'", p);
  expect_bad(a, "multiply past 64 bits", NULL, 0);
  assert_int_equal(out[0], 0); /* nothing on stdout before the error */

  /* safetensors: the same shape with empty data_offsets */
  static const char hdr[] = "{\"w\":{\"dtype\":\"F32\",\"shape\":[0,4294967296,4294967296],\"data_offsets\":[0,0]}}";
  uint8_t sf[8 + sizeof hdr - 1];
  uint64_t hl = sizeof hdr - 1;
  for (int i = 0; i < 8; i++) sf[i] = (uint8_t)(hl >> (8 * i));
  memcpy(sf + 8, hdr, sizeof hdr - 1);
  p = qg_test_path(dir, "overflow.safetensors");
  qg_test_write(p, sf, sizeof sf);
  snprintf(a, sizeof a, "inspect '%s'", p);
  expect_bad(a, "too many elements", NULL, 0);
  qg_test_rmdir(dir);
}

/* Bad usage and bad input across commands: each one clear line on stderr, exit 2, nothing
 * left behind, and refused quickly. */
static void test_bad_usage(void **st) {
  (void)st;
  char *dir = qg_test_tmpdir();
  char a[14000], m[4200], o[4200];
  /* a small float checkpoint */
  qg_state s;
  qg_state_init(&s);
  int64_t shape[2] = {64, 32};
  qg_tensor *t;
  assert_int_equal(qg_state_add(&s, "w", QG_F32, 2, shape, &t), QG_OK);
  uint64_t rng = 9;
  for (int i = 0; i < 64 * 32; i++) ((float *)t->data)[i] = qg_test_randf(&rng);
  snprintf(m, sizeof m, "%s/m.safetensors", dir);
  assert_int_equal(qg_safetensors_write(m, &s), QG_OK);
  snprintf(o, sizeof o, "%s/a.qgz", dir);

  /* the seed is echoed in quantize's JSON */
  snprintf(a, sizeof a, "quantize --model '%s' --spec '*: fp16' --out '%s' --json --seed 7", m, o);
  assert_int_equal(qg_test_run_cli(a, out, sizeof out, err, sizeof err), 0);
  assert_non_null(strstr(out, "\"seed\": 7"));
  unlink(o);
  int before = qg_test_count_entries(dir);

  /* an output name that is neither .qgz nor .ptz */
  snprintf(a, sizeof a, "quantize --model '%s' --spec '*: fp16' --out '%s/x.txt'", m, dir);
  expect_bad(a, "must end in .qgz or .ptz", dir, before);
  /* options given twice */
  snprintf(a, sizeof a, "quantize --model '%s' --model '%s' --spec '*: fp16' --out '%s'", m, m, o);
  expect_bad(a, "'--model' is given twice", dir, before);
  snprintf(a, sizeof a, "eval --model '%s' --val x.bin --tokenizer t.model --stride 1 --stride=2", m);
  expect_bad(a, "'--stride' is given twice", dir, before);
  /* a YAML seed of -1 (the CLI refuses --seed -1 too) */
  const char *y = qg_test_path(dir, "neg.yaml");
  qg_test_write(y, "rules:\n  '*': fp16\nseed: -1\n", 27);
  snprintf(a, sizeof a, "quantize --model '%s' --spec-file '%s' --out '%s'", m, y, o);
  expect_bad(a, "seed must be a non-negative integer", dir, before + 1);
  unlink(y);
  /* 100,000-deep YAML: refused at once */
  char *deep = malloc(100000);
  memset(deep, '[', 100000);
  y = qg_test_path(dir, "deep.yaml");
  qg_test_write(y, deep, 100000);
  free(deep);
  snprintf(a, sizeof a, "quantize --model '%s' --spec-file '%s' --out '%s'", m, y, o);
  double t0 = qg_test_now();
  expect_bad(a, "nested deeper than", dir, before + 1);
  assert_true(qg_test_now() - t0 < 2.0);
  unlink(y);
  /* self-generated calibration beyond its length limit; a NaN weight named as such */
  snprintf(a, sizeof a, "quantize --model '%s' --spec '*: fp16' --out '%s' --calib self --calib-len 200000", m, o);
  expect_bad(a, "limited to 4096 tokens", dir, before);
  ((float *)s.t[0].data)[5] = NAN;
  char nanm[4200];
  snprintf(nanm, sizeof nanm, "%s/nan.safetensors", dir);
  assert_int_equal(qg_safetensors_write(nanm, &s), QG_OK);
  qg_state_free(&s);
  snprintf(a, sizeof a, "quantize --model '%s' --spec '*: fp16' --out '%s' --calib self --calib-seqs 1", nanm, o);
  expect_bad(a, "element 5 is NaN", dir, before + 1);
  if (strstr(err, "needs a contest GPT")) fail_msg("misleading prefix: %s", err);
  unlink(nanm);
  /* limits said as limits */
  snprintf(a, sizeof a, "eval --model '%s' --val x.bin --tokenizer t.model --seq-len 1000000000", m);
  expect_bad(a, "at most 1,000,000", dir, before);
  snprintf(a, sizeof a, "prepare --tokenizer t.model --input x.txt --out '%s/p' --val-docs -1", dir);
  expect_bad(a, "--val-docs -1: expected a non-negative integer", dir, before);

  /* a FIFO as a checkpoint, shard or tokenizer: refused, not waited on */
  const char *fifo = qg_test_path(dir, "fifo.bin");
  assert_int_equal(mkfifo(fifo, 0600), 0);
  char fp[4200];
  snprintf(fp, sizeof fp, "%s", fifo);
  snprintf(a, sizeof a, "inspect '%s'", fp);
  expect_bad(a, "not a regular file", NULL, 0);
  snprintf(a, sizeof a, "quantize --model '%s' --spec '*: fp16' --out '%s'", fp, o);
  expect_bad(a, "not a regular file", NULL, 0);
  snprintf(a, sizeof a, "encode --tokenizer '%s' /dev/null", fp);
  expect_bad(a, "not a regular file", NULL, 0);
  unlink(fp);

  /* .vocab pieces that are not UTF-8; the .vocab note never precedes an error line */
  const char *v = qg_test_path(dir, "bad.vocab");
  qg_test_write(v, "<unk>\t0\n\xff\xfe\t-1\n", 14);
  snprintf(a, sizeof a, "inspect '%s'", v);
  expect_bad(a, "not valid UTF-8", NULL, 0);
  snprintf(a, sizeof a, "tokenizer assemble --vocab '%s' --out '%s/t.model'", v, dir);
  expect_bad(a, "not valid UTF-8", dir, before + 1);
  unlink(v);
  snprintf(a, sizeof a, "encode --tokenizer '%s' '%s/missing.txt'", qg_test_data_file("tok_train_identity.vocab"), dir);
  expect_bad(a, "missing.txt", NULL, 0);

  /* prepare: a binary input, a missing input, malformed JSONL: no output folder left */
  const char *tok = qg_test_data_file("tok_rules.model");
  char tokp[4200];
  snprintf(tokp, sizeof tokp, "%s", tok);
  const char *bin = qg_test_path(dir, "blob.txt");
  static const char blob[] = "text\x00\x01\x02\xff\xfe binary\n";
  qg_test_write(bin, blob, sizeof blob - 1);
  char binp[4200];
  snprintf(binp, sizeof binp, "%s", bin);
  snprintf(a, sizeof a, "prepare --tokenizer '%s' --input '%s' --out '%s/p'", tokp, binp, dir);
  expect_bad(a, "not valid UTF-8", dir, before + 1);
  unlink(binp);
  snprintf(a, sizeof a, "prepare --tokenizer '%s' --input '%s/none.txt' --out '%s/p'", tokp, dir, dir);
  expect_bad(a, "none.txt", dir, before);
  const char *j = qg_test_path(dir, "bad.jsonl");
  qg_test_write(j, "{\"text\": \"a\"}\n{\"txt\": 1}\n", 25);
  char jp[4200];
  snprintf(jp, sizeof jp, "%s", j);
  snprintf(a, sizeof a, "prepare --tokenizer '%s' --input '%s' --out '%s/p'", tokp, jp, dir);
  expect_bad(a, "bad.jsonl", dir, before + 1);
  unlink(jp);

  /* a decompression bomb: 2 GiB claimed by a few KiB of zstd, refused before inflating */
  {
    size_t n = 1 << 20;
    uint8_t *zeros = calloc(n, 1), *z = NULL;
    size_t zn = 0;
    assert_int_equal(qg_compress(QG_COMP_ZSTD, zeros, n, &z, &zn), QG_OK);
    free(zeros);
    uint8_t *f = calloc(QG_QGZ_HEADER + zn, 1);
    memcpy(f, QG_QGZ_MAGIC, 4);
    qg_wr_u16le(f + 4, QG_QGZ_VERSION);
    f[6] = QG_COMP_ZSTD;
    qg_wr_u32le(f + 8, 1);
    qg_wr_u32le(f + 16, 0x7ff00000u); /* ~2 GiB, within the format's limit */
    qg_wr_u32le(f + 24, (uint32_t)zn);
    memcpy(f + QG_QGZ_HEADER, z, zn);
    const char *bp = qg_test_path(dir, "bomb.qgz");
    qg_test_write(bp, f, QG_QGZ_HEADER + zn);
    free(f);
    free(z);
    snprintf(a, sizeof a, "inspect '%s'", bp);
    t0 = qg_test_now();
    expect_bad(a, "decompression bomb", NULL, 0);
    assert_true(qg_test_now() - t0 < 2.0);
  }
  qg_test_rmdir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_help_and_usage),
      cmocka_unit_test(test_inspect_real_files),
      cmocka_unit_test(test_convert_and_export),
      cmocka_unit_test(test_malformed_inputs),
      cmocka_unit_test(test_overflowing_shapes),
      cmocka_unit_test(test_bad_usage),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
