/* io/zip.c, io/pickle.c, io/torchfile.c: torch.save files written by real torch (views,
 * offsets, every dtype, protocols 2 and 4), the real contest .pt, our own writer's round
 * trip, and malformed input (a pickle asking for os.system, bad opcodes, lying zips). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "io/pickle.h"
#include "io/torchfile.h"
#include "io/zip.h"
#include "tests/testlib.h"


static void check_against_expected(const qg_state *s) {
  qg_test_check_manifest(s, qg_test_data_file("torch_views_expected.bin"), 18);
}

static void test_torch_written_views(void **st) {
  (void)st;
  const char *files[] = {"torch_views_p2.pt", "torch_views_p4.pt"};
  for (int i = 0; i < 2; i++) {
    qg_state s;
    assert_int_equal(qg_pt_load(qg_test_data_file(files[i]), &s), QG_OK);
    check_against_expected(&s);
    qg_state_free(&s);
  }
}

/* Our writer's output reads back identically (and torch.load accepts it: checked by hand
 * with torch 2.15, weights_only=True, see README). */
static void test_save_roundtrip(void **st) {
  (void)st;
  qg_state s;
  assert_int_equal(qg_pt_load(qg_test_data_file("torch_views_p2.pt"), &s), QG_OK);
  qg_buf img;
  qg_buf_init(&img);
  assert_int_equal(qg_pt_save_mem(&s, &img), QG_OK);
  qg_state r;
  assert_int_equal(qg_pt_load_mem(img.p, img.n, "mem", &r), QG_OK);
  check_against_expected(&r);
  qg_state_free(&r);
  qg_buf_free(&img);
  qg_state_free(&s);
}

static void test_contest_pt(void **st) {
  (void)st;
  const char *path;
  QG_REQUIRE_CONTEST_FILE(path, "tiny3L128d_nolanvild_3c063e5.pt");
  qg_state s;
  assert_int_equal(qg_pt_load(path, &s), QG_OK);
  assert_int_equal(s.n, 32);
  const qg_tensor *e = qg_state_find(&s, "tok_emb.weight");
  assert_non_null(e);
  assert_int_equal(e->dtype, QG_F32);
  assert_int_equal(e->shape[0], 1024);
  assert_int_equal(e->shape[1], 128);
  const qg_tensor *k = qg_state_find(&s, "blocks.2.attn.c_k.weight");
  assert_non_null(k);
  assert_int_equal(k->shape[0], 64);
  assert_int_equal(qg_tensor_numel(qg_state_find(&s, "blocks.0.attn.q_gain")), 4);
  qg_state_free(&s);
}

/* Builds a one-entry torch zip around an arbitrary pickle. */
static void zip_with_pickle(const uint8_t *pkl, size_t n, qg_buf *out) {
  qg_zip_writer z;
  qg_zip_writer_init(&z);
  assert_int_equal(qg_zip_writer_add(&z, "archive/data.pkl", pkl, n), QG_OK);
  assert_int_equal(qg_zip_writer_finish(&z), QG_OK);
  *out = z.out;
  qg_buf_init(&z.out);
  qg_zip_writer_free(&z);
}

static void expect_pickle_error(const char *pkl, size_t n, const char *needle) {
  qg_buf img;
  zip_with_pickle((const uint8_t *)pkl, n, &img);
  qg_state s;
  qg_status r = qg_pt_load_mem(img.p, img.n, "evil.pt", &s);
  assert_int_not_equal(r, QG_OK);
  assert_non_null(strstr(qg_last_error(), "evil.pt"));
  if (needle && !strstr(qg_last_error(), needle)) fail_msg("message '%s' lacks '%s'", qg_last_error(), needle);
  qg_buf_free(&img);
}

static void test_malicious_pickles(void **st) {
  (void)st;
  /* cos\nsystem\n(S'echo pwned'\ntR. in protocol 2 framing */
  static const char os_system[] = "\x80\x02" "cos\nsystem\n" "X\x0a\x00\x00\x00" "echo pwned" "\x85R.";
  expect_pickle_error(os_system, sizeof os_system - 1, "os.system");
  static const char builtins_eval[] = "\x80\x02\x8c\x08" "builtins" "\x8c\x04" "eval" "\x93.";
  expect_pickle_error(builtins_eval, sizeof builtins_eval - 1, "builtins.eval");
  static const char newobj[] = "\x80\x02" "ccollections\nOrderedDict\n)\x81.";
  expect_pickle_error(newobj, sizeof newobj - 1, "0x81");
  static const char inst[] = "\x80\x02(i__main__\nX\n.";
  expect_pickle_error(inst, sizeof inst - 1, "0x69");
  static const char no_stop[] = "\x80\x02}";
  expect_pickle_error(no_stop, sizeof no_stop - 1, "STOP");
  static const char bad_get[] = "\x80\x02h\x05.";
  expect_pickle_error(bad_get, sizeof bad_get - 1, "memo");
  static const char long_str[] = "\x80\x02X\xff\xff\xff\x7f" "abc.";
  expect_pickle_error(long_str, sizeof long_str - 1, "past the end");
  static const char proto9[] = "\x80\x09}.";
  expect_pickle_error(proto9, sizeof proto9 - 1, "protocol");
  static const char not_dict[] = "\x80\x02K\x05.";
  expect_pickle_error(not_dict, sizeof not_dict - 1, "not a state dict");
  static const char setitems_no_mark[] = "\x80\x02}u.";
  expect_pickle_error(setitems_no_mark, sizeof setitems_no_mark - 1, "MARK");
  /* a tensor whose persistent storage is absent from the zip */
  static const char missing_storage[] =
      "\x80\x02}(X\x01\x00\x00\x00w"
      "ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storage" "ctorch\nFloatStorage\n"
      "X\x01\x00\x00\x00" "0X\x03\x00\x00\x00" "cpuK\x04tQK\x00K\x04\x85K\x01\x85\x89" "ccollections\nOrderedDict\n)RtRu.";
  expect_pickle_error(missing_storage, sizeof missing_storage - 1, "storage entry");
}

/* A state dict whose tensor view reaches past its storage, and a storage whose bytes do
 * not match its declared element count. */
static void test_bad_views(void **st) {
  (void)st;
  static const float vals[4] = {1, 2, 3, 4};
  for (int variant = 0; variant < 2; variant++) {
    qg_torch_writer tw;
    qg_torch_writer_init(&tw, "archive");
    char key[32];
    assert_int_equal(qg_torch_writer_storage(&tw, vals, variant ? 12 : 16, key, sizeof key), QG_OK);
    qg_pkl_writer pw;
    qg_pkl_begin(&pw);
    qg_pkl_dict_begin(&pw, 1);
    qg_pkl_str(&pw, "w");
    int64_t shape[2] = {variant ? 2 : 3, 2}; /* 3x2 = 6 elements from a 4-element storage */
    qg_pkl_tensor(&pw, key, QG_F32, 2, shape);
    qg_pkl_dict_end(&pw);
    assert_int_equal(qg_pkl_end(&pw), QG_OK);
    qg_buf img;
    assert_int_equal(qg_torch_writer_finish(&tw, &pw.out, &img), QG_OK);
    qg_state s;
    assert_int_equal(qg_pt_load_mem(img.p, img.n, "views.pt", &s), QG_ERR_INPUT);
    assert_non_null(strstr(qg_last_error(), "'w'"));
    qg_buf_free(&img);
    qg_buf_free(&pw.out);
    qg_torch_writer_free(&tw);
  }
}

static void test_zip_malformed(void **st) {
  (void)st;
  uint8_t *d;
  size_t n;
  assert_int_equal(qg_read_file(qg_test_data_file("torch_views_p2.pt"), &d, &n, 0), QG_OK);
  /* every truncation fails cleanly */
  for (size_t cut = 0; cut < n; cut += 97) {
    qg_state s;
    assert_int_not_equal(qg_pt_load_mem(d, cut, "cut.pt", &s), QG_OK);
    assert_non_null(strstr(qg_last_error(), "cut.pt"));
  }
  /* zip bomb by declared size: the first central entry claims 3 GB */
  uint8_t *c = malloc(n);
  memcpy(c, d, n);
  size_t eocd = n - 22;
  assert_int_equal(qg_rd_u32le(c + eocd), 0x06054b50u);
  size_t cd = qg_rd_u32le(c + eocd + 16);
  qg_wr_u32le(c + cd + 20, 3000000000u);
  qg_wr_u32le(c + cd + 24, 3000000000u);
  qg_state s;
  assert_int_equal(qg_pt_load_mem(c, n, "bomb.pt", &s), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "past the end"));
  /* compressed entries are refused by name */
  memcpy(c, d, n);
  c[cd + 10] = 8;
  assert_int_equal(qg_pt_load_mem(c, n, "deflate.pt", &s), QG_ERR_UNSUPPORTED);
  assert_non_null(strstr(qg_last_error(), "compression method 8"));
  /* central directory offset pointing past the end */
  memcpy(c, d, n);
  qg_wr_u32le(c + eocd + 16, (uint32_t)n);
  assert_int_equal(qg_pt_load_mem(c, n, "cdoff.pt", &s), QG_ERR_INPUT);
  /* local header offset lies */
  memcpy(c, d, n);
  qg_wr_u32le(c + cd + 42, 7);
  assert_int_equal(qg_pt_load_mem(c, n, "lho.pt", &s), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "local header"));
  /* not a zip at all */
  assert_int_equal(qg_pt_load_mem((const uint8_t *)"hello world, definitely not a zip file", 38, "text.pt", &s),
                   QG_ERR_INPUT);
  free(c);
  free(d);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_torch_written_views), cmocka_unit_test(test_save_roundtrip),
      cmocka_unit_test(test_contest_pt),          cmocka_unit_test(test_malicious_pickles),
      cmocka_unit_test(test_bad_views),           cmocka_unit_test(test_zip_malformed),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
