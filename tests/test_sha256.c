/* core/sha256: FIPS 180-4 / NIST vectors, padding boundaries, split updates, a random
 * buffer checked against sha256sum, file digests and I/O errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/sha256.h"
#include "core/status.h"
#include "tests/testlib.h"

static void expect_buf(const char *msg, size_t n, const char *want) {
  char hex[65];
  qg_sha256_buf(msg, n, hex);
  assert_string_equal(hex, want);
}

/* NIST FIPS 180-4 example vectors (csrc.nist.gov "SHA256.pdf", "SHA2_Additional.pdf"). */
static void test_nist_vectors(void **st) {
  (void)st;
  expect_buf("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  expect_buf(NULL, 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  expect_buf("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  expect_buf(m448, strlen(m448), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");

  /* one million 'a', fed in uneven pieces */
  char a[1000];
  memset(a, 'a', sizeof a);
  qg_sha256 c;
  qg_sha256_init(&c);
  size_t left = 1000000;
  for (size_t k = 1; left; k = k % 997 + 1) {
    size_t take = k < left ? k : left;
    qg_sha256_update(&c, a, take);
    left -= take;
  }
  uint8_t d[32];
  char hex[65];
  qg_sha256_final(&c, d);
  qg_sha256_hex(d, hex);
  assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

/* Lengths around the padding boundary (55 fits one block, 56..63 need a second); from
 * sha256sum over runs of 'x'. */
static void test_padding_boundaries(void **st) {
  (void)st;
  static const struct { size_t n; const char *hex; } v[] = {
      {55, "d5e285683cd4efc02d021a5c62014694958901005d6f71e89e0989fac77e4072"},
      {56, "04c26261370ee7541549d16dee320c723e3fd14671e66a099afe0a377c16888e"},
      {63, "75220b47218278e656f2013bb8f0c455a25eaf01e86c64924e9d48d89776d6f2"},
      {64, "7ce100971f64e7001e8fe5a51973ecdfe1ced42befe7ee8d5fd6219506b5393c"},
      {65, "9537c5fdf120482f7d58d25e9ed583f52c02b4e304ea814db1633ad565aed7e9"},
  };
  char x[65];
  memset(x, 'x', sizeof x);
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) expect_buf(x, v[i].n, v[i].hex);
}

/* A 131-byte message split at every offset (and fed byte by byte) gives the one-shot
 * digest, which itself matches sha256sum. */
static void test_split_updates(void **st) {
  (void)st;
  uint8_t m[131];
  for (size_t i = 0; i < sizeof m; i++) m[i] = (uint8_t)(i * 7 + 3);
  char one[65], hex[65];
  uint8_t d[32];
  qg_sha256_buf(m, sizeof m, one);
  assert_string_equal(one, "4c14830d5f17552093a46de0f6884f8f3010789462dab3db3d1cc679575e01ad");
  for (size_t k = 0; k <= 130; k++) {
    qg_sha256 c;
    qg_sha256_init(&c);
    qg_sha256_update(&c, m, k);
    qg_sha256_update(&c, m + k, sizeof m - k);
    qg_sha256_final(&c, d);
    qg_sha256_hex(d, hex);
    assert_string_equal(hex, one);
  }
  qg_sha256 c;
  qg_sha256_init(&c);
  for (size_t i = 0; i < sizeof m; i++) qg_sha256_update(&c, m + i, 1);
  qg_sha256_final(&c, d);
  qg_sha256_hex(d, hex);
  assert_string_equal(hex, one);
}

/* 10240 bytes, byte i = top byte of the i-th qg_test_rand draw from seed 20240601. */
static uint8_t *random_buf(size_t n) {
  uint8_t *b = malloc(n);
  assert_non_null(b);
  uint64_t s = 20240601;
  for (size_t i = 0; i < n; i++) b[i] = (uint8_t)(qg_test_rand(&s) >> 56);
  return b;
}

static void test_random_vs_sha256sum(void **st) {
  (void)st;
  uint8_t *b = random_buf(10240);
  char hex[65];
  qg_sha256_buf(b, 10240, hex);
  /* from `sha256sum` over the same bytes, written out once during development */
  assert_string_equal(hex, "51ad179ac4f45de842603532eac94cd4a5ab73bb9b98687a52aa998e98252907");
  free(b);
}

/* A file of 2 MiB + 4097 bytes (three 1 MiB chunks, the last partial) in the working
 * directory, which ctest sets to the build dir. */
static void test_file_equals_buffer(void **st) {
  (void)st;
  size_t n = (2u << 20) + 4097;
  uint8_t *b = random_buf(n);
  char path[] = "sha256_test.XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  qg_test_write(path, b, n);
  char want[65], got[65], empty[65];
  qg_sha256_buf(b, n, want);
  qg_status s1 = qg_sha256_file(path, got);
  qg_test_write(path, "", 0); /* empty file */
  qg_status s2 = qg_sha256_file(path, empty);
  unlink(path); /* before any assert, so a failure leaves no file behind */
  free(b);
  assert_int_equal(s1, QG_OK);
  assert_string_equal(got, want);
  assert_int_equal(s2, QG_OK);
  assert_string_equal(empty, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

static void test_file_errors(void **st) {
  (void)st;
  char hex[65];
  qg_clear_error();
  assert_int_equal(qg_sha256_file("sha256_no_such_file.bin", hex), QG_ERR_IO);
  assert_non_null(strstr(qg_last_error(), "sha256_no_such_file.bin: cannot open: "));
  /* a directory opens on Linux but fails to read */
  assert_int_equal(qg_sha256_file(".", hex), QG_ERR_IO);
  assert_non_null(strstr(qg_last_error(), ".: cannot read: "));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_nist_vectors),     cmocka_unit_test(test_padding_boundaries),
      cmocka_unit_test(test_split_updates),    cmocka_unit_test(test_random_vs_sha256sum),
      cmocka_unit_test(test_file_equals_buffer), cmocka_unit_test(test_file_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
