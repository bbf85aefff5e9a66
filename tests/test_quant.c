/* quant/: the plug-in interface (options, sections, registry), rowwise against a scalar
 * reference written here, clipping rules against their definitions, contest-int8 against
 * the contest's rules written out here and its real .int8.ptz, and the passthrough
 * quantizers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/ptz.h"
#include "io/torchfile.h"
#include "quant/quant_internal.h"
#include "tests/testlib.h"

static float *rand_matrix(int64_t n, uint64_t seed, float amp) {
  float *w = malloc((size_t)n * sizeof *w);
  for (int64_t i = 0; i < n; i++) w[i] = amp * qg_test_randf(&seed);
  return w;
}

/* quantize + dequantize through the public interface */
static void qdq(const char *method, const char *opts, const float *w, int64_t rows, int64_t cols, float *out,
                qg_qtensor *q) {
  qg_qconfig c;
  if (qg_qconfig_parse(method, opts, &c)) fail_msg("parse %s %s: %s", method, opts, qg_last_error());
  qg_qinput in = {.name = "t", .w = w, .rows = rows, .cols = cols};
  if (qg_quantize(&c, &in, q)) fail_msg("quantize: %s", qg_last_error());
  if (qg_dequantize(&c, q, out)) fail_msg("dequantize: %s", qg_last_error());
  qg_qconfig_free(&c);
}

static void test_options(void **st) {
  (void)st;
  qg_qconfig c;
  assert_int_equal(qg_qconfig_parse("rowwise", "bits=5 bitz=3", &c), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "unknown option 'bitz'"));
  assert_non_null(strstr(qg_last_error(), "valid: bits, range, group"));
  assert_int_equal(qg_qconfig_parse("rowwise", "bits=9", &c), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "out of range [2, 8]"));
  assert_int_equal(qg_qconfig_parse("rowwise", "bits=5 bits=6", &c), QG_ERR_INPUT);
  assert_int_equal(qg_qconfig_parse("rowwise", "range=half", &c), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "sym, full"));
  assert_int_equal(qg_qconfig_parse("nosuch", "", &c), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "valid: rowwise, gptq"));
  assert_int_equal(qg_qconfig_parse("fp16", "bits=4", &c), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "valid: none"));
  /* gptq lists its own options and its grid's */
  assert_int_equal(qg_qconfig_parse("gptq", "foo=1", &c), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "percdamp"));
  assert_non_null(strstr(qg_last_error(), "bits"));
  /* canonical strings parse back to themselves */
  const char *cases[][2] = {{"rowwise", "bits=5,group=64"}, {"rowwise", "clip=sd k=3 range=full"},
                            {"rowwise", "clip=search objective=hessian steps=20"},
                            {"gptq", "bits=3 act_order=1 group=32"}, {"contest-int8", ""}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    assert_int_equal(qg_qconfig_parse(cases[i][0], cases[i][1], &c), QG_OK);
    qg_qconfig c2;
    assert_int_equal(qg_qconfig_parse(cases[i][0], c.canon, &c2), QG_OK);
    assert_string_equal(c.canon, c2.canon);
    qg_qconfig_free(&c2);
    qg_qconfig_free(&c);
  }
}

/* rowwise with absmax clip against a direct scalar implementation of the definition */
static void test_rowwise_reference(void **st) {
  (void)st;
  const int64_t rows = 7, cols = 96;
  float *w = rand_matrix(rows * cols, 1, 0.3f), *dq = malloc(rows * cols * sizeof *dq);
  for (int full = 0; full < 2; full++)
    for (int bits = 2; bits <= 8; bits += 3)
      for (int group = 0; group <= 32; group += 32) {
        char opts[96];
        snprintf(opts, sizeof opts, "bits=%d range=%s group=%d clip=absmax", bits, full ? "full" : "sym", group);
        qg_qtensor q;
        qdq("rowwise", opts, w, rows, cols, dq, &q);
        int h = 1 << (bits - 1), qmax = h - 1, qmin = full ? -h : -qmax;
        int64_t g = group ? group : cols;
        for (int64_t r = 0; r < rows; r++)
          for (int64_t g0 = 0; g0 < cols; g0 += g) {
            float amax = 0;
            for (int64_t j = g0; j < g0 + g; j++) amax = fmaxf(amax, fabsf(w[r * cols + j]));
            float s = qg_f16_to_f32(qg_f32_to_f16(amax / (float)(full ? h : qmax)));
            for (int64_t j = g0; j < g0 + g; j++) {
              double v = rint((double)w[r * cols + j] / s);
              v = fmin(fmax(v, qmin), qmax);
              assert_true((float)(v * s) == dq[r * cols + j]);
            }
          }
        /* exact packed size: codes at `bits` bits plus fp16 scales */
        int64_t ng = cols / g;
        assert_int_equal(qg_qtensor_packed_bytes(&q), (rows * cols * bits + 7) / 8 + 2 * rows * ng);
        assert_int_equal(qg_qtensor_find(&q, "codes")->bits, bits);
        qg_qtensor_free(&q);
      }
  free(w), free(dq);
}

/* torch.quantile semantics on known values, and the pct clip (contest default). */
static void test_quantile_and_pct(void **st) {
  (void)st;
  float v[5] = {5, 1, 4, 2, 3};
  float t[5];
  memcpy(t, v, sizeof v);
  assert_true(qg_quantile_f32(t, 5, 0.5) == 3.0f);
  memcpy(t, v, sizeof v);
  assert_true(qg_quantile_f32(t, 5, 0.25) == 2.0f);
  memcpy(t, v, sizeof v);
  assert_true(fabsf(qg_quantile_f32(t, 5, 0.9) - 4.6f) < 1e-6f);
  memcpy(t, v, sizeof v);
  assert_true(qg_quantile_f32(t, 5, 1.0) == 5.0f);
  /* a row with one outlier: pct=50 clips to the median of |w| */
  float w[8] = {0.1f, -0.2f, 0.3f, -0.4f, 0.5f, -0.6f, 0.7f, -100.0f}, dq[8];
  qg_qtensor q;
  qdq("rowwise", "bits=8 clip=pct pct=50", w, 1, 8, dq, &q);
  float clip = 0.45f; /* |w| sorted: .1 .2 .3 .4 .5 .6 .7 100; rank 3.5 */
  float s = qg_f16_to_f32(qg_f32_to_f16(clip / 127.0f));
  assert_true(qg_f16_to_f32(((uint16_t *)qg_qtensor_find(&q, "scales")->data)[0]) == s);
  assert_true(dq[7] == -127.0f * s); /* the outlier is clipped */
  qg_qtensor_free(&q);
}

static void test_sdclip(void **st) {
  (void)st;
  const int64_t cols = 64;
  float *w = rand_matrix(cols, 5, 1.0f), dq[64];
  double m = 0, v = 0;
  for (int j = 0; j < cols; j++) m += w[j];
  m /= cols;
  for (int j = 0; j < cols; j++) v += (w[j] - m) * (w[j] - m);
  double sd = sqrt(v / (cols - 1));
  qg_qtensor q;
  qdq("rowwise", "bits=6 clip=sd k=2.5", w, 1, cols, dq, &q);
  float s = qg_f16_to_f32(((uint16_t *)qg_qtensor_find(&q, "scales")->data)[0]);
  assert_true(s == qg_f16_to_f32(qg_f32_to_f16((float)(2.5 * sd / 31.0))));
  qg_qtensor_free(&q);
  /* defaults: 12.85 at 6 bits, 20 at 8 bits (the contest's SDClip) */
  qg_qconfig c;
  assert_int_equal(qg_qconfig_parse("rowwise", "bits=6 clip=sd", &c), QG_OK);
  assert_non_null(strstr(c.canon, "k=12.85"));
  qg_qconfig_free(&c);
  assert_int_equal(qg_qconfig_parse("rowwise", "bits=8 clip=sd", &c), QG_OK);
  assert_non_null(strstr(c.canon, "k=20"));
  qg_qconfig_free(&c);
  free(w);
}

/* the clip search never does worse than absmax on its own objective */
static void test_clip_search(void **st) {
  (void)st;
  const int64_t rows = 16, cols = 128;
  float *w = rand_matrix(rows * cols, 9, 1.0f), *a = malloc(sizeof(float) * rows * cols),
        *b = malloc(sizeof(float) * rows * cols);
  for (int64_t i = 0; i < rows * cols; i += 37) w[i] *= 8; /* outliers make clipping pay */
  double imp[128];
  for (int j = 0; j < cols; j++) imp[j] = 0.1 + (j % 7);
  for (int obj = 0; obj < 2; obj++) {
    qg_qconfig ca, cb;
    assert_int_equal(qg_qconfig_parse("rowwise", "bits=3 clip=absmax", &ca), QG_OK);
    assert_int_equal(qg_qconfig_parse("rowwise", obj ? "bits=3 clip=search objective=hessian" : "bits=3 clip=search",
                                      &cb), QG_OK);
    qg_qinput in = {.name = "t", .w = w, .rows = rows, .cols = cols, .importance = imp};
    qg_qtensor qa, qb;
    assert_int_equal(qg_quantize(&ca, &in, &qa), QG_OK);
    assert_int_equal(qg_quantize(&cb, &in, &qb), QG_OK);
    qg_dequantize(&ca, &qa, a), qg_dequantize(&cb, &qb, b);
    double ea = 0, eb = 0;
    for (int64_t i = 0; i < rows * cols; i++) {
      double wt = obj ? imp[i % cols] : 1.0;
      ea += wt * (w[i] - a[i]) * (w[i] - a[i]), eb += wt * (w[i] - b[i]) * (w[i] - b[i]);
    }
    assert_true(eb <= ea);
    assert_true(eb < 0.9 * ea); /* with these outliers the search must find a real gain */
    qg_qtensor_free(&qa), qg_qtensor_free(&qb);
    qg_qconfig_free(&ca), qg_qconfig_free(&cb);
  }
  free(w), free(a), free(b);
}

/* ---- contest-int8: against expectations derived here, not the export it wraps ---------- */

static int cmp_f32(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

/* train_gpt.py's clip level: torch.quantile(|v|, 0.9999984) over a fully sorted copy
 * (rank in float32, then ATen's lerp: one fma from the nearer end). */
static float slow_clip(const float *v, int64_t n) {
  float *a = malloc((size_t)n * sizeof *a);
  for (int64_t i = 0; i < n; i++) a[i] = fabsf(v[i]);
  qsort(a, (size_t)n, sizeof *a, cmp_f32);
  float rank = 0.9999984f * (float)(n - 1);
  int64_t below = (int64_t)floorf(rank), above = (int64_t)ceilf(rank);
  float w = rank - (float)below, lo = a[below], hi = a[above < n ? above : n - 1];
  free(a);
  return w < 0.5f ? fmaf(w, hi - lo, lo) : fmaf(w - 1.0f, hi - lo, hi);
}

/* torch.clamp(round(clamp(v, -clip, clip) / scale), -127, 127), round half to even */
static int slow_code(float v, float clip, float scale) {
  float c = v > clip ? clip : v < -clip ? -clip : v;
  float q = rintf(c / scale);
  return (int)(q > 127 ? 127 : q < -127 ? -127 : q);
}

/* The plug-in on one tensor of each kind the contest treats differently, each checked
 * against the contest's rules written out here: 2-D float tensors over 65,536 elements
 * get per-row codes and fp16 row scales clip/127 (floored at 1/127); larger tensors of
 * other ranks one fp32 scale clip/127; small tensors are kept in fp16, control tensors
 * in fp32. */
static void test_contest_int8(void **st) {
  (void)st;
  qg_state s;
  qg_state_init(&s);
  qg_tensor *t;
  uint64_t seed = 3;
  int64_t sh2[2] = {300, 256}, sh1[1] = {70000}, shs[1] = {100}, shc[1] = {64};
  assert_int_equal(qg_state_add(&s, "blocks.0.mlp.fc.weight", QG_F32, 2, sh2, &t), QG_OK);
  for (int64_t i = 0; i < 300 * 256; i++) ((float *)t->data)[i] = 0.05f * qg_test_randf(&seed);
  ((float *)t->data)[5] = 3.0f; /* an outlier the clip cuts */
  for (int64_t j = 0; j < 256; j++) ((float *)t->data)[7 * 256 + j] = 1e-4f * qg_test_randf(&seed); /* floor */
  assert_int_equal(qg_state_add(&s, "tok_emb.weight", QG_BF16, 2, sh2, &t), QG_OK);
  for (int64_t i = 0; i < 300 * 256; i++) ((uint16_t *)t->data)[i] = qg_f32_to_bf16(0.5f * qg_test_randf(&seed));
  assert_int_equal(qg_state_add(&s, "big.vector", QG_F32, 1, sh1, &t), QG_OK);
  for (int64_t i = 0; i < 70000; i++) ((float *)t->data)[i] = qg_test_randf(&seed);
  assert_int_equal(qg_state_add(&s, "small.bias", QG_BF16, 1, shs, &t), QG_OK);
  for (int64_t i = 0; i < 100; i++) ((uint16_t *)t->data)[i] = qg_f32_to_bf16(qg_test_randf(&seed));
  assert_int_equal(qg_state_add(&s, "blocks.0.attn.q_gain", QG_F32, 1, shc, &t), QG_OK);
  for (int64_t i = 0; i < 64; i++) ((float *)t->data)[i] = 1.0f + qg_test_randf(&seed);
  qg_qconfig c;
  assert_int_equal(qg_qconfig_parse("contest-int8", "", &c), QG_OK);
  for (int i = 0; i < s.n; i++) {
    const qg_tensor *x = &s.t[i];
    int64_t n = qg_tensor_numel(x), rows, cols;
    qg_matrix_view(x->ndim, x->shape, &rows, &cols);
    float *w = malloc(n * sizeof *w), *dq = malloc(n * sizeof *dq);
    qg_tensor_to_f32(x, w);
    qg_qinput in = {.name = x->name, .w = w, .rows = rows, .cols = cols, .ndim = x->ndim, .src = x,
                    .dtype = x->dtype};
    memcpy(in.shape, x->shape, sizeof in.shape);
    qg_qtensor q;
    assert_int_equal(qg_quantize(&c, &in, &q), QG_OK);
    assert_int_equal(qg_dequantize(&c, &q, dq), QG_OK);
    const qg_qsection *cs = qg_qtensor_find(&q, "codes"), *ds = qg_qtensor_find(&q, "data");
    if (i < 2) { /* per row */
      assert_non_null(cs);
      const qg_qsection *ss = qg_qtensor_find(&q, "scales");
      assert_non_null(ss);
      assert_int_equal(ss->count, rows);
      for (int64_t r = 0; r < rows; r++) {
        float clip = slow_clip(w + r * cols, cols), scale = clip / 127.0f;
        if (scale < 1.0f / 127.0f) scale = 1.0f / 127.0f;
        assert_int_equal(((const uint16_t *)ss->data)[r], qg_f32_to_f16(scale));
        for (int64_t j = 0; j < cols; j++) {
          int want = slow_code(w[r * cols + j], clip, scale);
          if ((int)((const uint32_t *)cs->data)[r * cols + j] - 127 != want)
            fail_msg("%s[%lld, %lld]: code %d, expected %d", x->name, (long long)r, (long long)j,
                     (int)((const uint32_t *)cs->data)[r * cols + j] - 127, want);
          float v = (float)want * qg_f16_to_f32(qg_f32_to_f16(scale));
          if (x->dtype == QG_BF16) v = qg_bf16_to_f32(qg_f32_to_bf16(v));
          assert_true(dq[r * cols + j] == v);
        }
      }
    } else if (i == 2) { /* per tensor */
      assert_non_null(cs);
      const qg_qsection *ss = qg_qtensor_find(&q, "scale");
      assert_non_null(ss);
      float clip = slow_clip(w, n), scale = (float)((double)clip / 127.0);
      assert_true(*(const float *)ss->data == scale);
      for (int64_t j = 0; j < n; j++) {
        int want = slow_code(w[j], clip, scale);
        assert_int_equal((int)((const uint32_t *)cs->data)[j] - 127, want);
        assert_true(dq[j] == (float)want * scale);
      }
    } else { /* kept float: fp16 (small, back in its bf16), fp32 (control) */
      assert_null(cs);
      assert_non_null(ds);
      assert_int_equal(ds->kind, i == 3 ? QG_SEC_F16 : QG_SEC_F32);
      for (int64_t j = 0; j < n; j++) {
        float v = i == 3 ? qg_bf16_to_f32(qg_f32_to_bf16(qg_f16_to_f32(qg_f32_to_f16(w[j])))) : w[j];
        assert_true(dq[j] == v);
      }
    }
    qg_qtensor_free(&q);
    free(w), free(dq);
  }
  qg_qconfig_free(&c);
  qg_state_free(&s);
}

/* The plug-in on the contest's own checkpoint reproduces the contest's real artifact: every
 * int8 code and fp16 row scale of the .int8.ptz, and every kept-float tensor's bytes. */
static void test_contest_int8_real(void **st) {
  (void)st;
  const char *p;
  QG_REQUIRE_CONTEST_FILE(p, "tiny3L128d_nolanvild_3c063e5.pt");
  char pt[4096];
  snprintf(pt, sizeof pt, "%s", p);
  QG_REQUIRE_CONTEST_FILE(p, "tiny3L128d_nolanvild_3c063e5.int8.ptz");
  qg_state sd;
  qg_int8_artifact ref;
  assert_int_equal(qg_pt_load(pt, &sd), QG_OK);
  assert_int_equal(qg_ptz_read(p, &ref), QG_OK);
  qg_qconfig c;
  assert_int_equal(qg_qconfig_parse("contest-int8", "", &c), QG_OK);
  int nq = 0, np = 0;
  for (int i = 0; i < sd.n; i++) {
    const qg_tensor *x = &sd.t[i];
    int64_t n = qg_tensor_numel(x), rows, cols;
    qg_matrix_view(x->ndim, x->shape, &rows, &cols);
    float *w = malloc(n * sizeof *w);
    qg_tensor_to_f32(x, w);
    qg_qinput in = {.name = x->name, .w = w, .rows = rows, .cols = cols, .ndim = x->ndim, .src = x,
                    .dtype = x->dtype};
    memcpy(in.shape, x->shape, sizeof in.shape);
    qg_qtensor q;
    assert_int_equal(qg_quantize(&c, &in, &q), QG_OK);
    const qg_tensor *rq = qg_state_find(&ref.quantized, x->name), *rp = qg_state_find(&ref.passthrough, x->name);
    const qg_qsection *cs = qg_qtensor_find(&q, "codes");
    if (rq) {
      int ri = (int)(rq - ref.quantized.t);
      nq++;
      assert_non_null(cs);
      assert_int_equal(cs->count, n);
      for (int64_t k = 0; k < n; k++)
        if ((int)((const uint32_t *)cs->data)[k] - 127 != ((const int8_t *)rq->data)[k])
          fail_msg("%s[%lld]: code %d, the contest's %d", x->name, (long long)k,
                   (int)((const uint32_t *)cs->data)[k] - 127, ((const int8_t *)rq->data)[k]);
      const qg_qsection *ss = qg_qtensor_find(&q, "scales");
      assert_non_null(ss);
      assert_int_equal(ss->count * 2, (int64_t)ref.scales.t[ri].nbytes);
      assert_memory_equal(ss->data, ref.scales.t[ri].data, ref.scales.t[ri].nbytes);
    } else {
      assert_non_null(rp);
      np++;
      const qg_qsection *ds = qg_qtensor_find(&q, "data");
      assert_null(cs);
      assert_non_null(ds);
      assert_int_equal(qg_qsection_packed_bytes(ds), (int64_t)rp->nbytes);
      assert_memory_equal(ds->data, rp->data, rp->nbytes);
    }
    qg_qtensor_free(&q);
    free(w);
  }
  assert_int_equal(nq, ref.quantized.n);
  assert_int_equal(np, ref.passthrough.n);
  qg_qconfig_free(&c);
  qg_int8_artifact_free(&ref);
  qg_state_free(&sd);
}

static void test_passthrough(void **st) {
  (void)st;
  float w[6] = {1.0f, -2.5f, 3.14159f, 1e-8f, 65519.0f, -0.1f}, dq[6];
  qg_qtensor q;
  qdq("fp32", "", w, 2, 3, dq, &q);
  assert_memory_equal(w, dq, sizeof w);
  assert_int_equal(qg_qtensor_packed_bytes(&q), 24);
  qg_qtensor_free(&q);
  qdq("fp16", "", w, 2, 3, dq, &q);
  for (int i = 0; i < 6; i++) assert_true(dq[i] == qg_f16_to_f32(qg_f32_to_f16(w[i])));
  assert_int_equal(qg_qtensor_packed_bytes(&q), 12);
  qg_qtensor_free(&q);
  qdq("bf16", "", w, 2, 3, dq, &q);
  for (int i = 0; i < 6; i++) assert_true(dq[i] == qg_bf16_to_f32(qg_f32_to_bf16(w[i])));
  qg_qtensor_free(&q);
  /* raw keeps an int64 tensor's bytes and dtype */
  qg_tensor it;
  int64_t shape[1] = {3};
  assert_int_equal(qg_tensor_alloc(&it, "ids", QG_I64, 1, shape), QG_OK);
  int64_t *iv = it.data;
  iv[0] = -5, iv[1] = 1LL << 40, iv[2] = 7;
  float f[3] = {-5, (float)(1LL << 40), 7};
  qg_qconfig c;
  assert_int_equal(qg_qconfig_parse("raw", "", &c), QG_OK);
  qg_qinput in = {.name = "ids", .w = f, .rows = 1, .cols = 3, .ndim = 1, .shape = {3}, .src = &it};
  assert_int_equal(qg_quantize(&c, &in, &q), QG_OK);
  qg_tensor back;
  memset(&back, 0, sizeof back);
  assert_int_equal(c.q->dequantize_native(c.cfg, &q, &back), QG_OK);
  assert_int_equal(back.dtype, QG_I64);
  assert_memory_equal(back.data, it.data, 24);
  qg_tensor_release(&back);
  qg_tensor_release(&it);
  qg_qtensor_free(&q);
  qg_qconfig_free(&c);
}

static void test_can_take_and_sections(void **st) {
  (void)st;
  qg_qconfig c;
  assert_int_equal(qg_qconfig_parse("rowwise", "group=48", &c), QG_OK);
  int64_t shape[2] = {4, 100};
  assert_int_equal(qg_qconfig_can_take(&c, "blocks.1.mlp.proj.weight", 2, shape), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "'rowwise'"));
  assert_non_null(strstr(qg_last_error(), "blocks.1.mlp.proj.weight"));
  assert_non_null(strstr(qg_last_error(), "group=48"));
  assert_int_equal(qg_qconfig_can_take(&c, "v", 1, shape), QG_ERR_INPUT);
  qg_qconfig_free(&c);
  /* entropy: 4 codes 0,0,1,1 -> 4 bits; constant -> 0 */
  qg_qtensor q;
  qg_qtensor_init(&q);
  uint32_t *codes;
  assert_int_equal(qg_qtensor_add(&q, "codes", QG_SEC_CODES, 3, 4, (void **)&codes), QG_OK);
  codes[2] = codes[3] = 1;
  assert_true(fabs(qg_qtensor_code_entropy_bits(&q) - 4.0) < 1e-12);
  assert_int_equal(qg_qtensor_packed_bytes(&q), 2);   /* 12 bits */
  assert_int_equal(qg_qtensor_bytewise_bytes(&q), 4); /* one byte each */
  const qg_qsection *s;
  assert_int_equal(qg_qtensor_need(&q, "codes", QG_SEC_F16, -1, &s), QG_ERR_INPUT);
  assert_int_equal(qg_qtensor_need(&q, "codes", QG_SEC_CODES, 5, &s), QG_ERR_INPUT);
  assert_int_equal(qg_qtensor_need(&q, "scales", QG_SEC_F16, -1, &s), QG_ERR_INPUT);
  assert_int_equal(qg_qtensor_need(&q, "codes", QG_SEC_CODES, 4, &s), QG_OK);
  qg_qtensor_free(&q);
  /* a code beyond the range is refused by dequantize (untrusted artifacts) */
  float w[4] = {0.1f, 0.2f, 0.3f, 0.4f}, dq[4];
  assert_int_equal(qg_qconfig_parse("rowwise", "bits=2", &c), QG_OK);
  qg_qinput in = {.name = "t", .w = w, .rows = 1, .cols = 4};
  assert_int_equal(qg_quantize(&c, &in, &q), QG_OK);
  ((uint32_t *)q.sec[0].data)[1] = 3; /* sym 2-bit codes are 0..2 */
  assert_int_equal(qg_dequantize(&c, &q, dq), QG_ERR_INPUT);
  qg_qtensor_free(&q);
  qg_qconfig_free(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_options),          cmocka_unit_test(test_rowwise_reference),
      cmocka_unit_test(test_quantile_and_pct), cmocka_unit_test(test_sdclip),
      cmocka_unit_test(test_clip_search),      cmocka_unit_test(test_contest_int8), cmocka_unit_test(test_contest_int8_real),
      cmocka_unit_test(test_passthrough),      cmocka_unit_test(test_can_take_and_sections),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
