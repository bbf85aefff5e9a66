/* io/safetensors (and io/json_parse): byte-exact agreement with the reference Python
 * writer, round trips over every dtype and shape, malformed headers of every kind, and
 * writer failures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "core/status.h"
#include "core/tensor.h"
#include "core/util.h"
#include "io/json_parse.h"
#include "io/safetensors.h"
#include "tests/testlib.h"

#define REF_PATH QG_SOURCE_DIR "/tests/data/reference.safetensors"

/* Bytes from splitmix64 exactly as tests/reference/make_safetensors_ref.py draws them. */
static void fill_random(void *dst, size_t n, uint64_t seed, qg_dtype dt) {
  uint8_t *p = dst;
  for (size_t i = 0; i < n; i += 8) {
    uint64_t z = qg_test_rand(&seed);
    for (size_t k = 0; k < 8 && i + k < n; k++) p[i + k] = (uint8_t)(z >> (8 * k));
  }
  if (dt == QG_BOOL)
    for (size_t i = 0; i < n; i++) p[i] &= 1;
}

/* ---- the reference file ---------------------------------------------------------------- */

static const struct {
  const char *name;
  qg_dtype dt;
  int ndim;
  int64_t shape[3];
} REF[14] = {
    {"tok_emb.weight", QG_F32, 2, {16, 8}},
    {"blocks.0.attn.c_q.weight", QG_BF16, 2, {8, 8}},
    {"blocks.0.mlp.fc.weight", QG_F16, 2, {4, 8}},
    {"scalar_f64", QG_F64, 0, {0}},
    {"q_int8", QG_I8, 2, {3, 5}},
    {"bytes_u8", QG_U8, 1, {7}},
    {"cube_i16", QG_I16, 3, {2, 3, 2}},
    {"vec_i32", QG_I32, 1, {5}},
    {"deep_i64", QG_I64, 3, {1, 1, 3}},
    {"mask", QG_BOOL, 1, {9}},
    {"empty_f32", QG_F32, 2, {0, 4}},
    {"empty_bf16", QG_BF16, 2, {2, 0}},
    {"scalar_i32", QG_I32, 0, {0}},
    {"odd \"name\"\\with\nescapes\t\x01 \xc3\xbc\xf0\x9f\x98\x80", QG_I8, 1, {2}},
};
/* The library lays tensors out by dtype (widest first), then name. */
static const int REF_FILE_ORDER[14] = {8, 3, 10, 0, 12, 7, 1, 11, 2, 6, 13, 4, 5, 9};
static const char *const REF_META_VAL = "pt \"quoted\"\ttab \xc3\xa9\xf0\x9f\x98\x80 \x1f end";

/* The reference tensors, built independently of any reader, in the file's order. */
static void build_reference_state(qg_state *s) {
  qg_state_init(s);
  for (int k = 0; k < 14; k++) {
    int i = REF_FILE_ORDER[k];
    qg_tensor *t;
    assert_int_equal(qg_state_add(s, REF[i].name, REF[i].dt, REF[i].ndim, REF[i].shape, &t), QG_OK);
    fill_random(t->data, t->nbytes, 1000 + (uint64_t)i, REF[i].dt);
  }
  assert_int_equal(qg_state_set_meta(s, "format", REF_META_VAL), QG_OK);
}

static void assert_states_equal(const qg_state *a, const qg_state *b) {
  assert_int_equal(a->n, b->n);
  for (int i = 0; i < a->n; i++) {
    const qg_tensor *x = &a->t[i], *y = &b->t[i];
    assert_string_equal(x->name, y->name);
    assert_int_equal(x->dtype, y->dtype);
    assert_int_equal(x->ndim, y->ndim);
    for (int d = 0; d < x->ndim; d++) assert_int_equal(x->shape[d], y->shape[d]);
    assert_int_equal(x->nbytes, y->nbytes);
    if (x->nbytes) assert_memory_equal(x->data, y->data, x->nbytes);
  }
  assert_int_equal(a->n_meta, b->n_meta);
  for (int i = 0; i < a->n_meta; i++)
    assert_string_equal(qg_state_get_meta(b, a->meta_keys[i]), a->meta_vals[i]);
}

static void test_reference_bytes(void **st) {
  (void)st;
  uint8_t *ref;
  size_t ref_len;
  assert_int_equal(qg_read_file(REF_PATH, &ref, &ref_len, 0), QG_OK);
  qg_state want;
  build_reference_state(&want);

  /* Our writer, in memory and on disk, produces the Python library's bytes exactly. */
  qg_buf b;
  qg_buf_init(&b);
  assert_int_equal(qg_safetensors_serialize(&want, &b), QG_OK);
  assert_int_equal(b.n, ref_len);
  assert_memory_equal(b.p, ref, ref_len);
  qg_buf_free(&b);
  char *dir = qg_test_tmpdir();
  char path[4200];
  snprintf(path, sizeof path, "%s/ours.safetensors", dir);
  assert_int_equal(qg_safetensors_write(path, &want), QG_OK);
  uint8_t *ours;
  size_t ours_len;
  assert_int_equal(qg_read_file(path, &ours, &ours_len, 0), QG_OK);
  assert_int_equal(ours_len, ref_len);
  assert_memory_equal(ours, ref, ref_len);
  free(ours);

  /* Our reader sees what the script wrote, in data order, escapes decoded. */
  qg_state got;
  assert_int_equal(qg_safetensors_read(REF_PATH, &got), QG_OK);
  assert_states_equal(&want, &got);
  assert_string_equal(got.t[0].name, "deep_i64");
  assert_string_equal(qg_state_get_meta(&got, "format"), REF_META_VAL);
  /* and reading then writing gives the file back */
  qg_buf_init(&b);
  assert_int_equal(qg_safetensors_serialize(&got, &b), QG_OK);
  assert_int_equal(b.n, ref_len);
  assert_memory_equal(b.p, ref, ref_len);
  qg_buf_free(&b);
  qg_state_free(&got);
  qg_state_free(&want);
  free(ref);
  qg_test_rmdir(dir);
}

/* ---- round trips ------------------------------------------------------------------------ */

static void test_roundtrip_all_dtypes(void **st) {
  (void)st;
  static const struct {
    int ndim;
    int64_t shape[8];
  } shapes[] = {
      {0, {0}},          {1, {0}},          {1, {3}},
      {2, {2, 3}},       {3, {4, 0, 5}},    {4, {2, 3, 1, 5}},
      {8, {1, 2, 1, 1, 1, 1, 3, 2}},
  };
  const int n_shapes = (int)(sizeof shapes / sizeof shapes[0]);
  char *dir = qg_test_tmpdir();
  char path[4200];
  snprintf(path, sizeof path, "%s/rt.safetensors", dir);
  qg_state s;
  qg_state_init(&s);
  uint64_t seed = 77;
  for (int dt = 0; dt < QG_DTYPE_COUNT; dt++)
    for (int k = 0; k < n_shapes; k++) {
      char name[64];
      snprintf(name, sizeof name, "t.%s.%d", qg_safetensors_dtype_name((qg_dtype)dt), k);
      qg_tensor *t;
      assert_int_equal(qg_state_add(&s, name, (qg_dtype)dt, shapes[k].ndim, shapes[k].shape, &t), QG_OK);
      fill_random(t->data, t->nbytes, qg_test_rand(&seed), (qg_dtype)dt);
      if (t->nbytes) ((uint8_t *)t->data)[0] = 1; /* never all zeros */
    }
  assert_int_equal(qg_state_set_meta(&s, "format", "pt"), QG_OK);
  assert_int_equal(qg_state_set_meta(&s, "\xe2\x9c\x93 key", "line\nbreak \\ \"q\""), QG_OK);
  assert_int_equal(qg_safetensors_write(path, &s), QG_OK);

  uint8_t *img;
  size_t len;
  assert_int_equal(qg_read_file(path, &img, &len, 0), QG_OK);
  uint64_t n = qg_rd_u64le(img);
  assert_int_equal(n % 8, 0); /* padded so the data start is 8-byte aligned */
  assert_int_equal(len, 8 + n + (size_t)qg_state_nbytes(&s));
  free(img);

  qg_state got;
  assert_int_equal(qg_safetensors_read(path, &got), QG_OK);
  /* Our offsets never decrease in state order and empty tensors sort before a non-empty
   * one at the same offset, so data order is state order: compare element by element. */
  assert_states_equal(&s, &got);
  assert_string_equal(qg_state_get_meta(&got, "\xe2\x9c\x93 key"), "line\nbreak \\ \"q\"");
  assert_string_equal(qg_state_get_meta(&got, "format"), "pt");
  qg_state_free(&got);
  qg_state_free(&s);
  qg_test_rmdir(dir);
}

static void test_empty_state(void **st) {
  (void)st;
  qg_state s;
  qg_state_init(&s);
  qg_buf b;
  qg_buf_init(&b);
  assert_int_equal(qg_safetensors_serialize(&s, &b), QG_OK);
  assert_int_equal(b.n, 16);
  assert_memory_equal(b.p, "\x08\0\0\0\0\0\0\0{}      ", 16); /* as the reference writes it */
  qg_state got;
  assert_int_equal(qg_safetensors_parse(b.p, b.n, "empty", &got), QG_OK);
  assert_int_equal(got.n, 0);
  assert_int_equal(got.n_meta, 0);
  qg_state_free(&got);
  qg_buf_free(&b);
  /* __metadata__ null is accepted as "no metadata" */
  const char img[] = "\x1b\0\0\0\0\0\0\0{\"__metadata__\":null}      ";
  assert_int_equal(qg_safetensors_parse((const uint8_t *)img, sizeof img - 1, "n", &got), QG_OK);
  assert_int_equal(got.n_meta, 0);
  qg_state_free(&got);
}

/* ---- malformed input -------------------------------------------------------------------- */

/* length field + json + data_len nonzero bytes */
static uint8_t *image(const char *json, size_t data_len, size_t *len) {
  size_t jl = strlen(json);
  *len = 8 + jl + data_len;
  uint8_t *b = malloc(*len);
  assert_non_null(b);
  for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)jl >> (8 * i));
  memcpy(b + 8, json, jl);
  fill_random(b + 8 + jl, data_len, 5, QG_U8);
  for (size_t i = 0; i < data_len; i++) b[8 + jl + i] |= 1;
  return b;
}

/* The case being checked, for failure messages. */
static const char *g_case = "";

static void expect_fail(const uint8_t *img, size_t len, qg_status want, const char *sub1,
                        const char *sub2) {
  qg_state s;
  qg_status got = qg_safetensors_parse(img, len, "bad.safetensors", &s);
  if (got != want)
    fail_msg("[%s] status %s, expected %s (%s)", g_case, qg_status_name(got), qg_status_name(want),
             qg_last_error());
  assert_int_equal(s.n, 0);
  assert_int_equal(s.n_meta, 0);
  const char *m = qg_last_error();
  if (!strstr(m, "bad.safetensors")) fail_msg("[%s] message does not name the file: %s", g_case, m);
  if (sub1 && !strstr(m, sub1)) fail_msg("[%s] message lacks '%s': %s", g_case, sub1, m);
  if (sub2 && !strstr(m, sub2)) fail_msg("[%s] message lacks '%s': %s", g_case, sub2, m);
}

#define T(name, dt, shape, b, e) "\"" name "\":{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e "]}"

static const struct {
  const char *json;
  size_t data_len;
  qg_status want;
  const char *sub1, *sub2;
} BAD[] = {
    /* tensor layout */
    {"{" T("a", "F32", "[2]", 0, 8) "," T("b", "F32", "[2]", 4, 12) "}", 12, QG_ERR_INPUT, "tensor 'b'", "overlap tensor 'a'"},
    {"{" T("a", "F32", "[2]", 0, 8) "," T("z", "I8", "[0]", 4, 4) "}", 8, QG_ERR_INPUT, "tensor 'z'", "overlap"},
    {"{" T("a", "F32", "[2]", 0, 8) "," T("b", "F32", "[2]", 12, 20) "}", 20, QG_ERR_INPUT, "tensor 'b'", "gap: bytes [8, 12)"},
    {"{" T("a", "F32", "[2]", 4, 12) "}", 12, QG_ERR_INPUT, "tensor 'a'", "bytes [0, 4)"},
    {"{" T("a", "F32", "[2]", 0, 8) "}", 11, QG_ERR_INPUT, "bytes [8, 11) at the end", "'a'"},
    {"{}", 3, QG_ERR_INPUT, "bytes [0, 3) at the end", NULL},
    {"{" T("a", "F32", "[2]", 0, 8) "}", 4, QG_ERR_INPUT, "tensor 'a'", "run past the end of the 4-byte"},
    {"{" T("a", "F32", "[2]", 0, 18446744073709551615) "}", 8, QG_ERR_INPUT, "tensor 'a'", "non-negative integers"},
    {"{" T("a", "F32", "[0]", 8, 0) "}", 8, QG_ERR_INPUT, "tensor 'a'", "begin is after end"},
    {"{" T("a", "F32", "[3]", 0, 8) "}", 8, QG_ERR_INPUT, "tensor 'a'", "hold 8 bytes, but shape [3] of F32 needs 12"},
    {"{" T("a", "BF16", "[2,2]", 0, 4) "}", 4, QG_ERR_INPUT, "tensor 'a'", "needs 8"},
    {"{" T("a", "F32", "[]", 0, 0) "}", 0, QG_ERR_INPUT, "tensor 'a'", "needs 4"},
    /* dtype and shape */
    {"{" T("w", "Q7", "[2]", 0, 2) "}", 2, QG_ERR_INPUT, "tensor 'w'", "unknown dtype \"Q7\""},
    {"{" T("w", "f32", "[2]", 0, 8) "}", 8, QG_ERR_INPUT, "tensor 'w'", "unknown dtype"},
    {"{" T("w", "U16", "[2]", 0, 4) "}", 4, QG_ERR_UNSUPPORTED, "tensor 'w'", "dtype U16 is not supported"},
    {"{\"w\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, QG_ERR_INPUT, "tensor 'w'", "dtype must be a string"},
    {"{" T("w", "F32", "[-1]", 0, 0) "}", 0, QG_ERR_INPUT, "tensor 'w'", "shape[0] must be a non-negative"},
    {"{" T("w", "F32", "[2.0]", 0, 8) "}", 8, QG_ERR_INPUT, "tensor 'w'", "shape[0]"},
    {"{" T("w", "F32", "[1e1]", 0, 40) "}", 40, QG_ERR_INPUT, "tensor 'w'", "shape[0]"},
    {"{" T("w", "F32", "[2,\"3\"]", 0, 24) "}", 24, QG_ERR_INPUT, "tensor 'w'", "shape[1]"},
    {"{" T("w", "I8", "[4294967296,4294967296,4294967296]", 0, 0) "}", 0, QG_ERR_INPUT, "tensor 'w'", "too many elements"},
    {"{" T("w", "F64", "[4611686018427387904,2]", 0, 0) "}", 0, QG_ERR_INPUT, "tensor 'w'", "too many elements"},
    {"{" T("w", "F64", "[9223372036854775808]", 0, 0) "}", 0, QG_ERR_INPUT, "tensor 'w'", "within int64"},
    {"{" T("w", "I8", "[1,1,1,1,1,1,1,1,1]", 0, 1) "}", 1, QG_ERR_UNSUPPORTED, "tensor 'w'", "9 dims"},
    {"{" T("w", "I8", "{}", 0, 0) "}", 0, QG_ERR_INPUT, "tensor 'w'", "shape must be an array"},
    /* entry structure */
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 0, QG_ERR_INPUT, "tensor 'w'", "missing \"data_offsets\""},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"extra\":1}}", 4, QG_ERR_INPUT, "tensor 'w'", "unexpected key \"extra\""},
    {"{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, QG_ERR_INPUT, "tensor 'w'", "duplicate key \"dtype\""},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,4]}}", 4, QG_ERR_INPUT, "tensor 'w'", "data_offsets must be [begin, end]"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.0]}}", 4, QG_ERR_INPUT, "tensor 'w'", "data_offsets must be"},
    {"{\"w\":[1,2]}", 0, QG_ERR_INPUT, "tensor 'w'", "entry must be an object, found array"},
    {"{" T("a", "I8", "[1]", 0, 1) "," T("a", "I8", "[1]", 1, 2) "}", 2, QG_ERR_INPUT, "duplicate tensor name 'a'", "offset 61"},
    {"{" T("a\\u0000b", "I8", "[1]", 0, 1) "}", 1, QG_ERR_UNSUPPORTED, "NUL", "offset 9"},
    /* metadata */
    {"{\"__metadata__\":{\"k\":1}}", 0, QG_ERR_INPUT, "__metadata__ value for \"k\" must be a string", NULL},
    {"{\"__metadata__\":[\"k\"]}", 0, QG_ERR_INPUT, "__metadata__ must be an object", NULL},
    {"{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, QG_ERR_INPUT, "duplicate __metadata__ key \"k\"", NULL},
    {"{\"__metadata__\":{},\"__metadata__\":{}}", 0, QG_ERR_INPUT, "duplicate tensor name '__metadata__'", NULL},
    /* JSON: not an object, syntax, strings, escapes, nesting */
    {"[1, 2]", 0, QG_ERR_INPUT, "not a JSON object (found array)", NULL},
    {"\"{}\"", 0, QG_ERR_INPUT, "not a JSON object (found string)", NULL},
    {"42", 0, QG_ERR_INPUT, "not a JSON object (found number)", NULL},
    {" {}", 0, QG_ERR_INPUT, "must start with '{'", NULL},
    {"{} x", 0, QG_ERR_INPUT, "offset 11: unexpected 'x' after the JSON value", NULL},
    {"{\"a\":1,}", 0, QG_ERR_INPUT, "expected a string key, found '}'", NULL},
    {"{\"a\" 1}", 0, QG_ERR_INPUT, "expected ':'", NULL},
    {"{\"a\":1 \"b\":2}", 0, QG_ERR_INPUT, "expected ',' or '}'", NULL},
    {"{\"a\":[01]}", 0, QG_ERR_INPUT, "leading zero", NULL},
    {"{\"a\":tru}", 0, QG_ERR_INPUT, "expected 'true'", NULL},
    {"{\"a\":-}", 0, QG_ERR_INPUT, "expected a digit", NULL},
    {"{\"a\":1.}", 0, QG_ERR_INPUT, "after '.'", NULL},
    {"{\"a\":1e+}", 0, QG_ERR_INPUT, "exponent", NULL},
    {"{\"a\":'x'}", 0, QG_ERR_INPUT, "expected a JSON value, found '''", NULL},
    {"{\"abc", 0, QG_ERR_INPUT, "offset 9: unterminated string", NULL},
    {"{\"a\":", 0, QG_ERR_INPUT, "found end of input", NULL},
    {"{\"a\\x\":1}", 0, QG_ERR_INPUT, "offset 11: bad escape \\x", NULL},
    {"{\"a\\u12G4\":1}", 0, QG_ERR_INPUT, "bad hex digit in \\u escape: 'G'", NULL},
    {"{\"a\\u12\":1}", 0, QG_ERR_INPUT, "truncated \\u escape", NULL},
    {"{\"a\\ud800\":1}", 0, QG_ERR_INPUT, "high surrogate \\uD800 not followed", NULL},
    {"{\"a\\ud800\\u0041\":1}", 0, QG_ERR_INPUT, "\\u0041 after high surrogate \\uD800 is not a low surrogate", NULL},
    {"{\"a\\udc00\":1}", 0, QG_ERR_INPUT, "unpaired low surrogate \\uDC00", NULL},
    {"{\"a\tb\":1}", 0, QG_ERR_INPUT, "raw control character 0x09", NULL},
    {"{\"a\xff\":1}", 0, QG_ERR_INPUT, "invalid UTF-8 byte 0xff", NULL},
    {"{\"\xc0\xaf\":1}", 0, QG_ERR_INPUT, "invalid UTF-8 byte 0xc0", NULL},          /* overlong '/' */
    {"{\"\xed\xa0\x80\":1}", 0, QG_ERR_INPUT, "invalid UTF-8 byte 0xed", NULL},      /* encoded surrogate */
    {"{\"\xf4\x90\x80\x80\":1}", 0, QG_ERR_INPUT, "invalid UTF-8 byte 0xf4", NULL},  /* above U+10FFFF */
    {"{\xc3\xa9:1}", 0, QG_ERR_INPUT, "expected a string key, found byte 0xc3", NULL},
};

static void test_malformed_table(void **st) {
  (void)st;
  for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
    size_t len;
    uint8_t *img = image(BAD[i].json, BAD[i].data_len, &len);
    g_case = BAD[i].json;
    expect_fail(img, len, BAD[i].want, BAD[i].sub1, BAD[i].sub2);
    free(img);
  }
  /* A NUL byte inside the header (not an escape) is a raw control character. */
  g_case = "raw NUL";
  const char nul[] = "\x04\0\0\0\0\0\0\0{\"\0\"";
  expect_fail((const uint8_t *)nul, sizeof nul - 1, QG_ERR_INPUT, "raw control character 0x00", NULL);
}

static void test_deep_nesting(void **st) {
  (void)st;
  g_case = "deep nesting";
  /* 64 levels in total are allowed (the root object is one); 65 are not. */
  for (int depth = 63; depth <= 64; depth++) {
    char json[512] = "{\"__metadata__\":";
    size_t p = strlen(json);
    for (int i = 0; i < depth; i++) json[p++] = '[';
    for (int i = 0; i < depth; i++) json[p++] = ']';
    json[p++] = '}';
    json[p] = 0;
    size_t len;
    uint8_t *img = image(json, 0, &len);
    /* at 63 inner levels the JSON parses and the schema rejects it; at 64 the parser does */
    expect_fail(img, len, QG_ERR_INPUT, depth == 63 ? "__metadata__ must be an object" : "nesting deeper than 64 levels", NULL);
    free(img);
  }
  /* very deep input fails fast without recursing further */
  size_t n = 200000;
  char *json = malloc(n + 8);
  strcpy(json, "{\"k\":");
  memset(json + 5, '[', n);
  json[n + 5] = 0;
  size_t len;
  uint8_t *img = image(json, 0, &len);
  expect_fail(img, len, QG_ERR_INPUT, "nesting deeper", NULL);
  free(img);
  free(json);
}

static void test_header_length(void **st) {
  (void)st;
  g_case = "header length";
  uint8_t img[64];
  memset(img, 0, sizeof img);
  memcpy(img + 8, "{}      ", 8);
  /* too short for the length field */
  for (size_t n = 0; n < 8; n++) expect_fail(img, n, QG_ERR_INPUT, "offset 0", "too short for the 8-byte header length");
  img[0] = 1; /* below the minimum */
  expect_fail(img, 16, QG_ERR_INPUT, "header length 1 is below the minimum", NULL);
  img[0] = 0;
  expect_fail(img, 16, QG_ERR_INPUT, "header length 0 is below", NULL);
  img[0] = 9; /* one byte more than there is */
  expect_fail(img, 16, QG_ERR_INPUT, "header length 9 runs past the end of the file (8 bytes follow", NULL);
  qg_wr_u32le(img, 100000001u); /* over the limit, and over the file */
  expect_fail(img, 16, QG_ERR_INPUT, "header length 100000001 exceeds the 100000000-byte limit", NULL);
  memset(img, 0xff, 8); /* 2^64 - 1 */
  expect_fail(img, 16, QG_ERR_INPUT, "exceeds", NULL);
  /* length shorter than the JSON: the header text is cut */
  memset(img, 0, 8);
  memcpy(img + 8, "{\"a\":\"bc\"}", 10);
  img[0] = 6;
  expect_fail(img, 18, QG_ERR_INPUT, "unterminated string", NULL);
}

/* Every strict prefix of a valid file fails, with the file named. */
static void test_truncation_everywhere(void **st) {
  (void)st;
  uint8_t *ref;
  size_t len;
  assert_int_equal(qg_read_file(REF_PATH, &ref, &len, 0), QG_OK);
  for (size_t cut = 0; cut < len; cut++) {
    uint8_t *p = malloc(cut ? cut : 1); /* an exact-size copy so ASan sees any overread */
    memcpy(p, ref, cut);
    qg_state s;
    assert_int_equal(qg_safetensors_parse(p, cut, "bad.safetensors", &s), QG_ERR_INPUT);
    assert_non_null(strstr(qg_last_error(), "bad.safetensors"));
    free(p);
  }
  /* and via the file path */
  char *dir = qg_test_tmpdir();
  char path[4200];
  snprintf(path, sizeof path, "%s/cut.safetensors", dir);
  qg_test_write(path, ref, len - 1);
  qg_state s;
  assert_int_equal(qg_safetensors_read(path, &s), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), path));
  assert_non_null(strstr(qg_last_error(), "tensor 'mask'"));
  assert_int_equal(qg_safetensors_read(qg_test_path(dir, "absent.safetensors"), &s), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "absent.safetensors"));
  free(ref);
  qg_test_rmdir(dir);
}

/* ---- writer failures -------------------------------------------------------------------- */

static void test_write_failures(void **st) {
  (void)st;
  char *dir = qg_test_tmpdir();
  char path[4200];
  qg_state s;
  qg_state_init(&s);
  int64_t shape[1] = {3};
  qg_tensor *t;
  assert_int_equal(qg_state_add(&s, "w", QG_F32, 1, shape, &t), QG_OK);
  fill_random(t->data, t->nbytes, 3, QG_F32);

  /* a directory that does not exist: a bad output path (exit 2), nothing created */
  snprintf(path, sizeof path, "%s/missing/out.safetensors", dir);
  assert_int_equal(qg_safetensors_write(path, &s), QG_ERR_INPUT);
  assert_int_equal(qg_test_count_entries(dir), 0);

  snprintf(path, sizeof path, "%s/out.safetensors", dir);
  /* states the format cannot hold are refused before any file is created */
  free(s.t[0].name);
  s.t[0].name = qg_strdup("__metadata__");
  assert_int_equal(qg_safetensors_write(path, &s), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "out.safetensors"));
  assert_non_null(strstr(qg_last_error(), "reserved"));
  free(s.t[0].name);
  s.t[0].name = qg_strdup("bad\xff");
  assert_int_equal(qg_safetensors_write(path, &s), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "UTF-8"));
  free(s.t[0].name);
  s.t[0].name = qg_strdup("w");
  s.t[0].device = QG_DEV_CUDA;
  assert_int_equal(qg_safetensors_write(path, &s), QG_ERR_UNSUPPORTED);
  s.t[0].device = QG_DEV_HOST;
  s.t[0].nbytes = 8;
  assert_int_equal(qg_safetensors_write(path, &s), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "tensor 'w'"));
  s.t[0].nbytes = 12;
  assert_int_equal(qg_state_add(&s, "v", QG_I8, 1, shape, NULL), QG_OK);
  free(s.t[1].name);
  s.t[1].name = qg_strdup("w");
  assert_int_equal(qg_safetensors_write(path, &s), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "duplicate tensor name 'w'"));
  assert_int_equal(qg_test_count_entries(dir), 0);

  /* a good write, then a refused rewrite, leaves the good file in place */
  free(s.t[1].name);
  s.t[1].name = qg_strdup("v");
  assert_int_equal(qg_safetensors_write(path, &s), QG_OK);
  s.t[1].device = QG_DEV_CUDA;
  assert_int_not_equal(qg_safetensors_write(path, &s), QG_OK);
  s.t[1].device = QG_DEV_HOST;
  qg_state got;
  assert_int_equal(qg_safetensors_read(path, &got), QG_OK);
  assert_states_equal(&s, &got);
  qg_state_free(&got);
  assert_int_equal(qg_test_count_entries(dir), 1);
  qg_state_free(&s);
  qg_test_rmdir(dir);
}

/* ---- the JSON parser directly -------------------------------------------------------------- */

static void test_json_parser(void **st) {
  (void)st;
  const char *text = " {\"s\":\"a\\u00e9\\ud83d\\ude00\\n\\/\",\"n\":[-9223372036854775808,"
                     "9223372036854775807,9223372036854775808,0,-0,1.5e-3,true,false,null],"
                     "\"s\":{}} ";
  qg_jdoc doc;
  const qg_jnode *root;
  qg_jopts o = {.name = "t.json"};
  assert_int_equal(qg_jparse(text, strlen(text), &o, &doc, &root), QG_OK);
  assert_int_equal(root->type, QG_JOBJ);
  assert_int_equal(root->len, 3);
  const qg_jnode *s = qg_jobj_get(root, "s");
  assert_string_equal(s->s, "a\xc3\xa9\xf0\x9f\x98\x80\n/");
  const qg_jnode *n = qg_jobj_get(root, "n")->child;
  assert_true(n->is_int && n->i == INT64_MIN);
  n = n->next;
  assert_true(n->is_int && n->i == INT64_MAX);
  n = n->next;
  assert_false(n->is_int); /* out of int64 range: still a valid number */
  n = n->next;
  assert_true(n->is_int && n->i == 0);
  n = n->next;
  assert_true(n->is_int && n->i == 0);
  n = n->next;
  assert_int_equal(n->type, QG_JNUM);
  assert_false(n->is_int);
  assert_int_equal(n->next->type, QG_JBOOL);
  assert_int_equal(n->next->i, 1);
  assert_int_equal(n->next->next->i, 0);
  assert_int_equal(n->next->next->next->type, QG_JNULL);
  const qg_jnode *dup;
  assert_int_equal(qg_jobj_duplicate(root, &dup), QG_OK);
  assert_non_null(dup);
  assert_int_equal(dup->type, QG_JOBJ); /* the second "s" */
  qg_jdoc_free(&doc);
  /* the node limit */
  o.max_nodes = 3;
  assert_int_equal(qg_jparse("[1,2,3]", 7, &o, &doc, &root), QG_ERR_NOMEM);
  assert_int_equal(qg_jparse("[1,2]", 5, &o, &doc, &root), QG_OK);
  qg_jdoc_free(&doc);
  assert_int_equal(qg_jparse("", 0, &o, &doc, &root), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "t.json: offset 0"));
  /* UTF-8 validator */
  assert_int_equal(qg_utf8_valid_prefix((const uint8_t *)"ab\xc3\xa9\xe2", 5), 4);
  assert_int_equal(qg_utf8_valid_prefix((const uint8_t *)"\xf0\x9f\x98\x80", 4), 4);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reference_bytes),     cmocka_unit_test(test_roundtrip_all_dtypes),
      cmocka_unit_test(test_empty_state),         cmocka_unit_test(test_malformed_table),
      cmocka_unit_test(test_deep_nesting),        cmocka_unit_test(test_header_length),
      cmocka_unit_test(test_truncation_everywhere), cmocka_unit_test(test_write_failures),
      cmocka_unit_test(test_json_parser),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
