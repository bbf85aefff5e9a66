/* core/: status messages, dtype conversions against known bit patterns, tensors and
 * states, atomic files, the JSON writer, the thread pool's fallible loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "core/file.h"
#include "core/json.h"
#include "core/status.h"
#include "core/tensor.h"
#include "core/threadpool.h"
#include "tests/testlib.h"

static void test_status_message(void **st) {
  (void)st;
  qg_status s = qg_fail(QG_ERR_INPUT, "%s: offset %d: bad\nmagic", "f.bin", 12);
  assert_int_equal(s, QG_ERR_INPUT);
  assert_string_equal(qg_last_error(), "f.bin: offset 12: bad magic");
  qg_fail_prefix(s, "loading %s", "x");
  assert_string_equal(qg_last_error(), "loading x: f.bin: offset 12: bad magic");
  assert_int_equal(qg_status_exit_code(QG_ERR_INPUT), 2);
  assert_int_equal(qg_status_exit_code(QG_ERR_IO), 1);
}

/* Known IEEE half patterns, including subnormals, rounding ties and overflow. */
static void test_f16_known(void **st) {
  (void)st;
  assert_int_equal(qg_f32_to_f16(1.0f), 0x3c00);
  assert_int_equal(qg_f32_to_f16(-2.0f), 0xc000);
  assert_int_equal(qg_f32_to_f16(65504.0f), 0x7bff);
  assert_int_equal(qg_f32_to_f16(65519.0f), 0x7bff);
  assert_int_equal(qg_f32_to_f16(65520.0f), 0x7c00); /* tie to even -> inf */
  assert_int_equal(qg_f32_to_f16(5.9604644775390625e-08f), 0x0001);
  assert_int_equal(qg_f32_to_f16(2.98023223876953125e-08f), 0x0000); /* tie to even -> 0 */
  assert_int_equal(qg_f32_to_f16(8.940696716308594e-08f), 0x0002);   /* 1.5 ulp tie -> 2 */
  assert_int_equal(qg_f32_to_f16(1.0f / 127.0f), 0x2008);            /* contest int8 floor */
  /* 1 + 2^-11 is a tie between 1 and 1+2^-10: rounds to even (1.0) */
  assert_int_equal(qg_f32_to_f16(1.00048828125f), 0x3c00);
  assert_int_equal(qg_f32_to_f16(1.00146484375f), 0x3c02);
  assert_true(isnan(qg_f16_to_f32(qg_f32_to_f16(NAN))));
  assert_true(isinf(qg_f16_to_f32(0x7c00)));
  assert_true(qg_f16_to_f32(0x0001) == 5.9604644775390625e-08f);
  assert_true(qg_f16_to_f32(0x3555) == 0.333251953125f);
  /* every finite half round-trips exactly */
  for (uint32_t h = 0; h < 0x10000; h++) {
    if ((h & 0x7c00) == 0x7c00) continue;
    assert_int_equal(qg_f32_to_f16(qg_f16_to_f32((uint16_t)h)), h);
  }
}

static void test_bf16_known(void **st) {
  (void)st;
  assert_int_equal(qg_f32_to_bf16(1.0f), 0x3f80);
  assert_int_equal(qg_f32_to_bf16(-1.5f), 0xbfc0);
  /* 1 + 2^-8 is a tie: rounds to even (1.0); 1 + 3*2^-8 rounds up */
  assert_int_equal(qg_f32_to_bf16(1.00390625f), 0x3f80);
  assert_int_equal(qg_f32_to_bf16(1.01171875f), 0x3f82);
  assert_true(qg_bf16_to_f32(0x4049) == 3.140625f);
  assert_true(isnan(qg_bf16_to_f32(qg_f32_to_bf16(NAN))));
}

static void test_dtype_names(void **st) {
  (void)st;
  qg_dtype t;
  assert_int_equal(qg_dtype_from_name("torch.bfloat16", &t), 0);
  assert_int_equal(t, QG_BF16);
  assert_int_equal(qg_dtype_from_name("half", &t), 0);
  assert_int_equal(t, QG_F16);
  assert_int_not_equal(qg_dtype_from_name("complex64", &t), 0);
  for (int i = 0; i < QG_DTYPE_COUNT; i++) {
    assert_int_equal(qg_dtype_from_name(qg_dtype_name((qg_dtype)i), &t), 0);
    assert_int_equal(t, i);
  }
}

static void test_state(void **st) {
  (void)st;
  qg_state s;
  qg_state_init(&s);
  int64_t shape[2] = {3, 4};
  qg_tensor *t;
  assert_int_equal(qg_state_add(&s, "a", QG_F16, 2, shape, &t), QG_OK);
  assert_int_equal(t->nbytes, 24);
  assert_int_equal(qg_state_add(&s, "a", QG_F32, 2, shape, NULL), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "duplicate"));
  for (int i = 0; i < 40; i++) {
    char name[16];
    snprintf(name, sizeof name, "t%d", i);
    assert_int_equal(qg_state_add(&s, name, QG_I8, 1, shape, NULL), QG_OK);
  }
  assert_int_equal(s.n, 41);
  assert_int_equal(qg_state_numel(&s), 12 + 40 * 3);
  assert_non_null(qg_state_find(&s, "t39"));
  assert_null(qg_state_find(&s, "t40"));
  assert_int_equal(qg_state_set_meta(&s, "k", "v1"), QG_OK);
  assert_int_equal(qg_state_set_meta(&s, "k", "v2"), QG_OK);
  assert_string_equal(qg_state_get_meta(&s, "k"), "v2");
  int64_t bad[2] = {-1, 4};
  assert_int_equal(qg_state_add(&s, "neg", QG_F32, 2, bad, NULL), QG_ERR_INPUT);
  int64_t huge[2] = {INT64_MAX / 2, 4};
  assert_int_not_equal(qg_state_add(&s, "huge", QG_F32, 2, huge, NULL), QG_OK);
  qg_state_free(&s);
}

static void test_atomic_file(void **st) {
  (void)st;
  char *dir = qg_test_tmpdir();
  char path[4200];
  snprintf(path, sizeof path, "%s/out.bin", dir);
  qg_atomic_file a;
  assert_int_equal(qg_atomic_open(&a, path), QG_OK);
  assert_int_equal(qg_atomic_write(&a, "abc", 3), QG_OK);
  assert_false(qg_test_exists(path)); /* nothing visible before commit */
  qg_atomic_abort(&a);
  assert_int_equal(qg_test_count_entries(dir), 0);
  assert_int_equal(qg_write_file_atomic(path, "hello", 5), QG_OK);
  uint8_t *data;
  size_t n;
  assert_int_equal(qg_read_file(path, &data, &n, 0), QG_OK);
  assert_int_equal(n, 5);
  assert_memory_equal(data, "hello", 5);
  free(data);
  assert_int_equal(qg_test_count_entries(dir), 1);
  assert_int_equal(qg_read_file(qg_test_path(dir, "missing"), &data, &n, 0), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "missing"));
  qg_test_rmdir(dir);
}

/* qg_parallel_try: every task runs once, on however many threads; the status and message
 * are the lowest-numbered failure's; a parallel loop inside a task runs inline. */
typedef struct {
  _Atomic int runs[64];
  double sums[64];
  int fail_at[2]; /* tasks that fail, with their index in the message */
} try_ctx;

static void inner_sum(void *v, int64_t i, int thread) {
  (void)thread;
  double *acc = v;
  acc[i] = (double)(i * i);
}

static qg_status try_task(void *v, int64_t k) {
  try_ctx *c = v;
  atomic_fetch_add(&c->runs[k], 1);
  double part[16];
  for (int i = 0; i < 16; i++) part[i] = NAN; /* a task the nested loop skips stays NaN */
  qg_parallel_for(16, inner_sum, part); /* nested: must not touch the pool's running job */
  for (int i = 0; i < 16; i++) c->sums[k] += part[i];
  if (k == c->fail_at[0] || k == c->fail_at[1]) return qg_fail(k == c->fail_at[0] ? QG_ERR_IO : QG_ERR_INPUT, "task %d failed", (int)k);
  return QG_OK;
}

static void test_parallel_try(void **st) {
  (void)st;
  qg_threads_request(2);
  assert_true(qg_threads() >= 1);
  for (int round = 0; round < 20; round++) {
    try_ctx c;
    memset(&c, 0, sizeof c);
    c.fail_at[0] = c.fail_at[1] = -1;
    assert_int_equal(qg_parallel_try(64, try_task, &c), QG_OK);
    for (int k = 0; k < 64; k++) assert_int_equal(c.runs[k], 1), assert_true(c.sums[k] == 1240.0); /* sum of i^2, i < 16 */
    memset(&c, 0, sizeof c);
    c.fail_at[0] = 41, c.fail_at[1] = 7; /* the lower index reports, whatever finishes first */
    qg_clear_error();
    assert_int_equal(qg_parallel_try(64, try_task, &c), QG_ERR_INPUT);
    assert_string_equal(qg_last_error(), "task 7 failed");
    for (int k = 0; k < 64; k++) assert_int_equal(c.runs[k], 1); /* a failure stops nothing */
  }
  assert_int_equal(qg_parallel_try(0, try_task, NULL), QG_OK);
}

static void test_json(void **st) {
  (void)st;
  qg_buf b;
  qg_buf_init(&b);
  qg_json j;
  qg_json_init(&j, &b, 0);
  qg_json_obj_begin(&j);
  qg_json_key(&j, "a\"b");
  qg_json_arr_begin(&j);
  qg_json_int(&j, -3);
  qg_json_num(&j, 0.5);
  qg_json_num(&j, NAN);
  qg_json_str(&j, "x\n\x01");
  qg_json_arr_end(&j);
  qg_json_key(&j, "e");
  qg_json_obj_begin(&j);
  qg_json_obj_end(&j);
  qg_json_key(&j, "t");
  qg_json_bool(&j, 1);
  qg_json_obj_end(&j);
  qg_buf_byte(&b, 0);
  assert_string_equal((char *)b.p, "{\"a\\\"b\":[-3,0.5,null,\"x\\n\\u0001\"],\"e\":{},\"t\":true}");
  qg_buf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_status_message), cmocka_unit_test(test_f16_known),
      cmocka_unit_test(test_bf16_known),     cmocka_unit_test(test_dtype_names),
      cmocka_unit_test(test_state),          cmocka_unit_test(test_atomic_file),
      cmocka_unit_test(test_json),           cmocka_unit_test(test_parallel_try),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
