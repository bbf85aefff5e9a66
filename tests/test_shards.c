/* io/shards: the contest token-shard format, the multi-file token stream, the vocabulary
 * check, malformed inputs, and the atomic writer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "core/status.h"
#include "core/util.h"
#include "io/shards.h"
#include "tests/testlib.h"

/* n random tokens below vocab (never all zero for n > 1). */
static uint16_t *rand_tokens(size_t n, unsigned vocab, uint64_t seed) {
  uint16_t *t = malloc(n ? n * 2 : 2);
  assert_non_null(t);
  for (size_t i = 0; i < n; i++) t[i] = (uint16_t)(qg_test_rand(&seed) % vocab);
  return t;
}

/* A shard image built by hand (not by our writer), so tests of the reader stand alone. */
static uint8_t *shard_bytes(const uint16_t *tok, int32_t n, size_t *len) {
  *len = QG_SHARD_HEADER_BYTES + 2 * (size_t)n;
  uint8_t *b = calloc(1, *len);
  assert_non_null(b);
  qg_wr_u32le(b, QG_SHARD_MAGIC);
  qg_wr_u32le(b + 4, QG_SHARD_VERSION);
  qg_wr_u32le(b + 8, (uint32_t)n);
  for (int32_t i = 0; i < n; i++) qg_wr_u16le(b + QG_SHARD_HEADER_BYTES + 2 * i, tok[i]);
  return b;
}

static void test_roundtrip(void **st) {
  (void)st;
  char *dir = qg_test_tmpdir();
  char path[4200];
  snprintf(path, sizeof path, "%s/train_000000.bin", dir);
  size_t n = 1000;
  uint16_t *tok = rand_tokens(n, 65536, 7);
  assert_int_equal(qg_shard_write(path, tok, n), QG_OK);
  assert_int_equal(qg_test_count_entries(dir), 1); /* no temporary left behind */

  /* The bytes on disk are exactly the format: header fields, zeros, LE tokens. */
  uint8_t *data;
  size_t len;
  assert_int_equal(qg_read_file(path, &data, &len, 0), QG_OK);
  size_t want_len;
  uint8_t *want = shard_bytes(tok, (int32_t)n, &want_len);
  assert_int_equal(len, want_len);
  assert_memory_equal(data, want, len);
  free(data);
  free(want);

  qg_shards s;
  assert_int_equal(qg_shards_open(path, &s), QG_OK);
  assert_int_equal(s.n_files, 1);
  assert_string_equal(s.files[0].name, path);
  assert_int_equal(qg_shards_count(&s), n);
  uint16_t *back = malloc(n * 2);
  assert_int_equal(qg_shards_read(&s, 0, (int64_t)n, back), QG_OK);
  assert_memory_equal(back, tok, n * 2);
  assert_int_equal(qg_shards_read(&s, 999, 1, back), QG_OK);
  assert_int_equal(back[0], tok[999]);
  qg_shards_close(&s);

  /* An empty shard is valid: a bare header. */
  assert_int_equal(qg_shard_write(path, tok, 0), QG_OK);
  assert_int_equal(qg_shards_open(path, &s), QG_OK);
  assert_int_equal(qg_shards_count(&s), 0);
  assert_int_equal(qg_shards_read(&s, 0, 0, back), QG_OK);
  assert_int_equal(qg_shards_read(&s, 0, 1, back), QG_ERR_INPUT);
  qg_shards_close(&s);
  free(back);
  free(tok);
  qg_test_rmdir(dir);
}

/* Three shards written out of order, one file that the glob must not pick up; reads at
 * every start near a boundary with many lengths match the plain concatenation. */
static void test_glob_concat(void **st) {
  (void)st;
  char *dir = qg_test_tmpdir();
  const size_t sizes[3] = {37, 5, 61};
  const int write_order[3] = {2, 0, 1};
  uint16_t *all = malloc((37 + 5 + 61) * 2);
  size_t off[3] = {0, 37, 42};
  for (int k = 0; k < 3; k++) {
    int i = write_order[k];
    uint16_t *t = rand_tokens(sizes[i], 1024, 100 + (uint64_t)i);
    memcpy(all + off[i], t, sizes[i] * 2);
    char name[64];
    snprintf(name, sizeof name, "fineweb_val_%06d.bin", i);
    assert_int_equal(qg_shard_write(qg_test_path(dir, name), t, sizes[i]), QG_OK);
    free(t);
  }
  qg_test_write(qg_test_path(dir, "fineweb_val_notes.txt"), "x", 1);
  char pattern[4200];
  snprintf(pattern, sizeof pattern, "%s/fineweb_val_*.bin", dir);
  qg_shards s;
  assert_int_equal(qg_shards_open(pattern, &s), QG_OK);
  assert_int_equal(s.n_files, 3);
  int64_t total = qg_shards_count(&s);
  assert_int_equal(total, 103);
  for (int i = 0; i < 3; i++) {
    assert_non_null(strstr(s.files[i].name, i == 0 ? "000000" : i == 1 ? "000001" : "000002"));
    assert_int_equal(s.files[i].first, (int64_t)off[i]);
  }
  assert_int_equal(qg_shards_locate(&s, 36), 0);
  assert_int_equal(qg_shards_locate(&s, 37), 1);
  assert_int_equal(qg_shards_locate(&s, 42), 2);
  assert_int_equal(qg_shards_locate(&s, 103), -1);
  uint16_t buf[103];
  for (int64_t start = 0; start <= total; start++)
    for (int64_t n = 0; start + n <= total; n += (n < 8 ? 1 : 9)) {
      memset(buf, 0xAB, sizeof buf);
      assert_int_equal(qg_shards_read(&s, start, n, buf), QG_OK);
      assert_memory_equal(buf, all + start, (size_t)n * 2);
    }
  /* spans all three files */
  assert_int_equal(qg_shards_read(&s, 30, 20, buf), QG_OK);
  assert_memory_equal(buf, all + 30, 40);
  /* out-of-range requests, including ones that overflow start + n */
  assert_int_equal(qg_shards_read(&s, -1, 2, buf), QG_ERR_INPUT);
  assert_int_equal(qg_shards_read(&s, 0, -1, buf), QG_ERR_INPUT);
  assert_int_equal(qg_shards_read(&s, 100, 4, buf), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "103-token stream"));
  assert_int_equal(qg_shards_read(&s, 104, 0, buf), QG_ERR_INPUT);
  assert_int_equal(qg_shards_read(&s, 1, INT64_MAX, buf), QG_ERR_INPUT);
  assert_int_equal(qg_shards_read(&s, INT64_MAX, 1, buf), QG_ERR_INPUT);
  qg_shards_close(&s);
  free(all);
  qg_test_rmdir(dir);
}

/* Empty shards anywhere in the stream are skipped over by reads and locate. */
static void test_empty_shards_in_stream(void **st) {
  (void)st;
  uint16_t *a = rand_tokens(4, 1024, 1), *b = rand_tokens(3, 1024, 2);
  size_t la, lb, le;
  uint8_t *ia = shard_bytes(a, 4, &la), *ib = shard_bytes(b, 3, &lb), *ie = shard_bytes(NULL, 0, &le);
  qg_shards s;
  qg_shards_init(&s);
  assert_int_equal(qg_shards_add_memory(&s, ie, le, "e0"), QG_OK);
  assert_int_equal(qg_shards_add_memory(&s, ia, la, "a"), QG_OK);
  assert_int_equal(qg_shards_add_memory(&s, ie, le, "e1"), QG_OK);
  assert_int_equal(qg_shards_add_memory(&s, ie, le, "e2"), QG_OK);
  assert_int_equal(qg_shards_add_memory(&s, ib, lb, "b"), QG_OK);
  assert_int_equal(qg_shards_add_memory(&s, ie, le, "e3"), QG_OK);
  assert_int_equal(qg_shards_count(&s), 7);
  assert_int_equal(qg_shards_locate(&s, 0), 1);
  assert_int_equal(qg_shards_locate(&s, 3), 1);
  assert_int_equal(qg_shards_locate(&s, 4), 4);
  assert_int_equal(qg_shards_locate(&s, 6), 4);
  uint16_t out[7], want[7];
  memcpy(want, a, 8);
  memcpy(want + 4, b, 6);
  for (int start = 0; start <= 7; start++)
    for (int n = 0; start + n <= 7; n++) {
      assert_int_equal(qg_shards_read(&s, start, n, out), QG_OK);
      assert_memory_equal(out, want + start, (size_t)n * 2);
    }
  qg_shards_close(&s);
  free(a);
  free(b);
  free(ia);
  free(ib);
  free(ie);
}

static void test_vocab_check(void **st) {
  (void)st;
  char *dir = qg_test_tmpdir();
  for (int i = 0; i < 3; i++) {
    uint16_t *t = rand_tokens(50, 1024, 40 + (uint64_t)i);
    if (i == 1) t[17] = 1500; /* the first bad token ... */
    if (i == 2) t[3] = 2000;  /* ... and a later one that must not be the one reported */
    char name[32];
    snprintf(name, sizeof name, "s%d.bin", i);
    assert_int_equal(qg_shard_write(qg_test_path(dir, name), t, 50), QG_OK);
    free(t);
  }
  char pattern[4200];
  snprintf(pattern, sizeof pattern, "%s/s?.bin", dir);
  qg_shards s;
  assert_int_equal(qg_shards_open(pattern, &s), QG_OK);
  assert_int_equal(qg_shards_check_vocab(&s, 1024), QG_ERR_INPUT);
  const char *m = qg_last_error();
  assert_non_null(strstr(m, "s1.bin"));
  assert_non_null(strstr(m, "token 17 "));
  assert_non_null(strstr(m, "stream index 67"));
  assert_non_null(strstr(m, "offset 1058"));
  assert_non_null(strstr(m, "is 1500"));
  assert_int_equal(qg_shards_check_vocab(&s, 1501), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "s2.bin"));
  assert_int_equal(qg_shards_check_vocab(&s, 2001), QG_OK);
  assert_int_equal(qg_shards_check_vocab(&s, 65536), QG_OK);
  assert_int_equal(qg_shards_check_vocab(&s, 0), QG_ERR_INPUT);
  assert_int_equal(qg_shards_check_vocab(&s, 65537), QG_ERR_INPUT);
  qg_shards_close(&s);
  qg_test_rmdir(dir);
}

/* Parses a malformed image from memory and from a file: both fail with `want`, and the
 * message names the file and contains `what`. */
static void expect_bad(const char *dir, const uint8_t *img, size_t len, qg_status want,
                       const char *what) {
  const uint8_t *tok;
  int64_t n;
  assert_int_equal(qg_shard_parse(img, len, "mem.bin", &tok, &n), want);
  assert_non_null(strstr(qg_last_error(), "mem.bin"));
  if (what && !strstr(qg_last_error(), what)) fail_msg("'%s' lacks '%s'", qg_last_error(), what);
  char path[4200];
  snprintf(path, sizeof path, "%s/bad.bin", dir);
  qg_test_write(path, img, len);
  qg_shards s;
  assert_int_equal(qg_shards_open(path, &s), want);
  assert_int_equal(s.n_files, 0);
  assert_non_null(strstr(qg_last_error(), path));
  if (what) assert_non_null(strstr(qg_last_error(), what));
}

static void test_malformed(void **st) {
  (void)st;
  char *dir = qg_test_tmpdir();
  uint16_t *tok = rand_tokens(50, 1024, 9);
  size_t len;
  uint8_t *good = shard_bytes(tok, 50, &len);
  uint8_t *img = malloc(len + 16);
  /* truncated anywhere: in the header, at its end, mid-token, one token short */
  const size_t cuts[] = {0, 1, 3, 4, 8, 11, 12, 100, 1023, 1024, 1025, 1050, len - 2, len - 1};
  for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
    memcpy(img, good, cuts[i]);
    expect_bad(dir, img, cuts[i], QG_ERR_INPUT, cuts[i] < 1024 ? "truncated header" : "bytes expected");
  }
  /* bad magic */
  memcpy(img, good, len);
  qg_wr_u32le(img, 20240521);
  expect_bad(dir, img, len, QG_ERR_INPUT, "offset 0: magic 20240520 expected, found 20240521");
  /* wrong version */
  memcpy(img, good, len);
  qg_wr_u32le(img + 4, 2);
  expect_bad(dir, img, len, QG_ERR_UNSUPPORTED, "offset 4: version 1 expected, found 2");
  /* header counts more tokens than the file holds */
  memcpy(img, good, len);
  qg_wr_u32le(img + 8, 51);
  expect_bad(dir, img, len, QG_ERR_INPUT, "header counts 51 tokens, so 1126 bytes expected, the file has 1124");
  /* ... and fewer (trailing bytes) */
  qg_wr_u32le(img + 8, 49);
  expect_bad(dir, img, len, QG_ERR_INPUT, "1122 bytes expected");
  /* extra odd byte after a correct count */
  memcpy(img, good, len);
  img[len] = 7;
  expect_bad(dir, img, len + 1, QG_ERR_INPUT, "1124 bytes expected, the file has 1125");
  /* negative and huge counts */
  qg_wr_u32le(img + 8, 0xFFFFFFFFu);
  expect_bad(dir, img, len, QG_ERR_INPUT, "negative (-1)");
  qg_wr_u32le(img + 8, 0x7FFFFFFFu);
  expect_bad(dir, img, len, QG_ERR_INPUT, "4294968318 bytes expected");
  /* a bad shard inside a glob fails the whole open, leaving nothing open */
  assert_int_equal(qg_shard_write(qg_test_path(dir, "bad0.bin"), tok, 50), QG_OK);
  char pattern[4200];
  snprintf(pattern, sizeof pattern, "%s/bad*.bin", dir);
  qg_shards s;
  assert_int_equal(qg_shards_open(pattern, &s), QG_ERR_INPUT);
  assert_int_equal(s.n_files, 0);
  assert_null(s.files);
  assert_non_null(strstr(qg_last_error(), "bad.bin"));
  free(img);
  free(good);
  free(tok);
  qg_test_rmdir(dir);
}

static void test_open_and_write_failures(void **st) {
  (void)st;
  char *dir = qg_test_tmpdir();
  qg_shards s;
  char path[4200];
  snprintf(path, sizeof path, "%s/missing.bin", dir);
  assert_int_not_equal(qg_shards_open(path, &s), QG_OK);
  assert_non_null(strstr(qg_last_error(), "missing.bin"));
  snprintf(path, sizeof path, "%s/none_*.bin", dir);
  assert_int_equal(qg_shards_open(path, &s), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "none_*.bin"));
  assert_int_not_equal(qg_shards_open(dir, &s), QG_OK); /* a directory is not a shard */

  uint16_t tok[4] = {1, 2, 3, 4};
  /* a directory that does not exist: a bad output path (exit 2), nothing created anywhere */
  snprintf(path, sizeof path, "%s/no/such/dir/x.bin", dir);
  assert_int_equal(qg_shard_write(path, tok, 4), QG_ERR_INPUT);
  assert_int_equal(qg_test_count_entries(dir), 0);
  /* more tokens than the int32 header can count: refused before anything is created; the
   * data pointer is never read, so a 4-token buffer is safe to pass */
  snprintf(path, sizeof path, "%s/huge.bin", dir);
  assert_int_equal(qg_shard_write(path, tok, (size_t)INT32_MAX + 1), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "huge.bin"));
  assert_int_equal(qg_test_count_entries(dir), 0);
  /* a failed rewrite leaves the old file intact */
  assert_int_equal(qg_shard_write(path, tok, 4), QG_OK);
  assert_int_equal(qg_shard_write(path, tok, (size_t)INT32_MAX + 1), QG_ERR_INPUT);
  assert_int_equal(qg_shards_open(path, &s), QG_OK);
  assert_int_equal(qg_shards_count(&s), 4);
  qg_shards_close(&s);
  assert_int_equal(qg_test_count_entries(dir), 1);
  qg_test_rmdir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_roundtrip),
      cmocka_unit_test(test_glob_concat),
      cmocka_unit_test(test_empty_shards_in_stream),
      cmocka_unit_test(test_vocab_check),
      cmocka_unit_test(test_malformed),
      cmocka_unit_test(test_open_and_write_failures),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
