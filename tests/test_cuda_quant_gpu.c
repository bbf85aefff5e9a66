/* quant/cuda/cuda_quant*.cu, quant/cuda/cuda_gptq.cu: every quantizer op on the GPU against its
 * CPU twin in quant/, on fresh random inputs of several shapes (non-powers of two among
 * them). Host outputs are poisoned (NaN floats, 0xFFFFFFFF codes) before each run and the
 * device output of fake quantization is poisoned with NaN in device memory, so anything
 * a kernel fails to write shows up. Tolerances, stated per test:
 *   - rowwise / lloydmax / e8 round-to-nearest, fake quant, FWHT, Lloyd-Max index, E8
 *     nearest point and encode: bit-identical (0 differences);
 *   - Hessians (fp64 syrk): relative Frobenius error <= 1e-12 against the CPU's fp64;
 *   - GPTQ: >= 99% of codes identical and the Hessian-weighted relative error within 1%
 *     of the CPU's (the cross-block GEMM sums in another order, and a code that flips
 *     at a rounding tie changes the error fed forward in its row);
 *   - whole models: rowwise artifacts identical section for section; GPTQ artifacts'
 *     models within 1e-4 mean KLD of each other.
 * Skipped visibly where there is no CUDA GPU or CUDA is not compiled in. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_device.h"
#include "quant/backend.h"
#include "quant/calibrate.h"
#include "quant/cuda/cuda_quant.h"
#include "quant/cuda/cuda_quant_bridge.h"
#include "quant/fwht.h"
#include "quant/lloydmax.h"
#include "quant/pipeline.h"
#include "tests/testlib.h"
#include "tests/twin.h"

/* The shared preamble (tests/twin.h): a visible skip without a GPU. */
#define NEED_GPU() ((void)qg_twin_need_gpu())
#define OK QG_TEST_OK

static uint64_t rng = 88172645463325252ull;
static const qg_gpt_options go0 = {0};

static float *rnd(int64_t n, float scale) {
  float *p = malloc(sizeof *p * (size_t)(n ? n : 1));
  for (int64_t i = 0; i < n; i++) p[i] = qg_test_randf(&rng) * scale;
  return p;
}

/* Activations with correlated columns and a few heavy ones, so Hessians are realistic. */
static float *acts(int64_t rows, int64_t k) {
  float *x = malloc(sizeof *x * (size_t)(rows * k));
  for (int64_t r = 0; r < rows; r++) {
    float prev = 0;
    for (int64_t j = 0; j < k; j++) prev = x[r * k + j] = 0.6f * prev + qg_test_randf(&rng) * (j % 17 ? 1.0f : 4.0f);
  }
  return x;
}

static double *hessian_of(const float *x, int64_t rows, int64_t k) {
  qg_hessian h;
  OK(qg_hessian_init(&h, k));
  OK(qg_hessian_accumulate(&h, x, rows, k));
  OK(qg_hessian_finalize(&h));
  return h.H; /* owned by the caller now */
}

/* ---- Hessians ------------------------------------------------------------------------- */
static void test_hessian(void **st) {
  (void)st;
  NEED_GPU();
  int64_t shapes[][2] = {{1000, 96}, {3001, 200}, {9000, 512}, {513, 1024}};
  for (size_t c = 0; c < 4; c++) {
    int64_t rows = shapes[c][0], k = shapes[c][1];
    float *x = acts(rows, k);
    qg_hessian ref, fast;
    OK(qg_hessian_init(&ref, k));
    OK(qg_hessian_accumulate(&ref, x, rows, k));
    OK(qg_hessian_init(&fast, k));
    OK(qg_hessian_accumulate_fast(&fast, x, rows, k));
    const qg_ops *cu; /* the op table's accumulator, fed from device memory in two parts */
    OK(qg_ops_cuda(&cu));
    float *dx;
    OK(cu->alloc(cu, (void **)&dx, sizeof *dx * (size_t)(rows * k)));
    OK(cu->upload(cu, dx, x, sizeof *dx * (size_t)(rows * k)));
    qg_hacc *h;
    OK(cu->hacc_create(cu, k, &h));
    OK(cu->hacc_add(cu, h, dx, rows / 3));
    OK(cu->hacc_add(cu, h, dx + rows / 3 * k, rows - rows / 3));
    double *H = malloc(sizeof *H * (size_t)(k * k));
    for (int64_t i = 0; i < k * k; i++) H[i] = NAN;
    int64_t got_rows = 0;
    OK(cu->hacc_read(cu, h, H, &got_rows));
    assert_int_equal(got_rows, rows);
    cu->free(cu, dx);
    double num = 0, numf = 0, den = 0;
    for (int64_t i = 0; i < k; i++)
      for (int64_t j = i; j < k; j++) {
        double r = ref.H[i * k + j];
        num += (H[i * k + j] - r) * (H[i * k + j] - r) + (H[j * k + i] - r) * (H[j * k + i] - r);
        numf += (fast.H[i * k + j] - r) * (fast.H[i * k + j] - r);
        den += r * r;
      }
    double e = sqrt(num / den), ef = sqrt(numf / den);
    print_message("hessian %lld x %lld: device fp64 rel err %.3g (CPU fp32-block path: %.3g)\n", (long long)rows,
                  (long long)k, e, ef);
    assert_true(e <= 1e-12);
    cu->hacc_free(cu, h);
    qg_hessian_free(&ref), qg_hessian_free(&fast);
    free(H), free(x);
  }
}

/* ---- round-to-nearest: identical qtensors -------------------------------------------- */
static void assert_same_qtensor(const qg_qtensor *a, const qg_qtensor *b, const char *what) {
  if (a->nsec != b->nsec) fail_msg("%s: %d vs %d sections", what, a->nsec, b->nsec);
  for (int i = 0; i < a->nsec; i++) {
    const qg_qsection *x = &a->sec[i], *y = &b->sec[i];
    if (strcmp(x->name, y->name) || x->kind != y->kind || x->bits != y->bits || x->count != y->count)
      fail_msg("%s: section %d differs in layout (%s vs %s)", what, i, x->name, y->name);
    size_t el = x->kind == QG_SEC_CODES || x->kind == QG_SEC_F32 ? 4 : x->kind == QG_SEC_RAW ? 1 : 2;
    int64_t diff = 0;
    for (int64_t k = 0; k < x->count; k++) diff += memcmp((char *)x->data + k * el, (char *)y->data + k * el, el) != 0;
    if (diff) fail_msg("%s: section %s: %lld of %lld elements differ", what, x->name, (long long)diff, (long long)x->count);
  }
  assert_string_equal(a->options, b->options);
}

static const int64_t shapes[][2] = {{37, 200}, {130, 96}, {256, 520}, {512, 1024}};

static void rtn_case(const char *method, const char *opts, int with_h) {
  for (size_t c = 0; c < 4; c++) {
    int64_t rows = shapes[c][0], cols = shapes[c][1];
    qg_qconfig cfg;
    OK(qg_qconfig_parse(method, opts, &cfg));
    int64_t shape[2] = {rows, cols};
    if (qg_qconfig_can_take(&cfg, "w", 2, shape)) { /* e.g. group=64 on 200 columns */
      qg_qconfig_free(&cfg);
      continue;
    }
    float *w = rnd(rows * cols, 0.05f), *x = with_h ? acts(4 * cols, cols) : NULL;
    double *H = with_h ? hessian_of(x, 4 * cols, cols) : NULL;
    qg_qinput in = {.name = "w", .w = w, .rows = rows, .cols = cols, .dtype = QG_F32, .hessian = H, .seed = 1};
    qg_qtensor a, b;
    OK(qg_quantize(&cfg, &in, &a));
    assert_true(qg_cuq_takes(&cfg, rows, cols));
    OK(qg_cuq_quantize(&cfg, &in, &b));
    char what[160];
    snprintf(what, sizeof what, "%s %s %lldx%lld", method, opts, (long long)rows, (long long)cols);
    assert_same_qtensor(&a, &b, what);
    qg_qtensor_free(&a), qg_qtensor_free(&b);
    qg_qconfig_free(&cfg);
    free(w), free(x), free(H);
  }
}

static void test_rowwise_rtn(void **st) {
  (void)st;
  NEED_GPU();
  rtn_case("rowwise", "bits=6", 0);
  rtn_case("rowwise", "bits=5 group=8 clip=pct pct=99.5", 0);
  rtn_case("rowwise", "bits=6 clip=sd", 0);
  rtn_case("rowwise", "bits=3 range=full clip=absmax group=8", 0);
  rtn_case("rowwise", "bits=4 clip=search", 0);
  rtn_case("rowwise", "bits=4 clip=search objective=hessian group=8 steps=33", 1);
}

static void test_lloydmax_rtn(void **st) {
  (void)st;
  NEED_GPU();
  rtn_case("lloydmax", "bits=3 scale=rms", 0);
  rtn_case("lloydmax", "bits=4", 0);
  rtn_case("lloydmax", "bits=2 group=8 objective=hessian steps=7", 1);
}

static void test_e8_rtn(void **st) {
  (void)st;
  NEED_GPU();
  rtn_case("e8", "cb=e8p bits=2", 0);
  rtn_case("e8", "cb=e8p bits=3 group=8", 0);
  rtn_case("e8", "cb=e8p bits=4 objective=hessian", 1);
  rtn_case("e8", "cb=ball bits=1", 0);
  rtn_case("e8", "cb=ball bits=2 steps=5", 0);
}

/* ---- fake quantization on device memory ------------------------------------------------ */
static void test_fakequant(void **st) {
  (void)st;
  NEED_GPU();
  const char *opts[] = {"bits=6", "bits=4 group=8 clip=search", "bits=8 clip=sd"};
  for (size_t o = 0; o < 3; o++)
    for (size_t c = 0; c < 4; c++) {
      int64_t rows = shapes[c][0], cols = shapes[c][1], n = rows * cols;
      qg_qconfig cfg;
      OK(qg_qconfig_parse("rowwise", opts[o], &cfg));
      int64_t shape[2] = {rows, cols};
      if (qg_qconfig_can_take(&cfg, "w", 2, shape)) {
        qg_qconfig_free(&cfg);
        continue;
      }
      static qg_cuq_grid g;
      OK(qg_cuq_grid_from_canon("rowwise", cfg.canon, &g));
      float *w = rnd(n, 0.1f), *ref = malloc(sizeof *ref * (size_t)n), *got = malloc(sizeof *got * (size_t)n);
      qg_qinput in = {.name = "w", .w = w, .rows = rows, .cols = cols, .dtype = QG_F32};
      qg_qtensor q;
      OK(qg_quantize(&cfg, &in, &q));
      OK(qg_dequantize(&cfg, &q, ref));
      float *dW, *dO;
      OK(qg_cuq_alloc((void **)&dW, sizeof(float) * (size_t)n));
      OK(qg_cuq_alloc((void **)&dO, sizeof(float) * (size_t)n));
      for (int64_t i = 0; i < n; i++) got[i] = NAN;
      OK(qg_cuq_upload(dO, got, sizeof(float) * (size_t)n)); /* poison the device output */
      OK(qg_cuq_upload(dW, w, sizeof(float) * (size_t)n));
      OK(qg_cuq_fakequant(&g, dW, dO, rows, cols));
      OK(qg_cuq_download(got, dO, sizeof(float) * (size_t)n));
      assert_memory_equal(got, ref, sizeof(float) * (size_t)n);
      qg_cuq_free(dW), qg_cuq_free(dO);
      qg_qtensor_free(&q);
      qg_qconfig_free(&cfg);
      free(w), free(ref), free(got);
    }
}

/* ---- raw ops ------------------------------------------------------------------------------ */
static void test_raw_ops(void **st) {
  (void)st;
  NEED_GPU();
  int64_t ns[] = {2, 64, 512, 4096}, ms[] = {3, 17, 5, 2};
  for (int c = 0; c < 4; c++) { /* FWHT with sign flips, both directions */
    int64_t n = ns[c], m = ms[c];
    float *x = rnd(n * m, 2.0f), *y = malloc(sizeof *y * (size_t)(n * m)), *s = malloc(sizeof *s * (size_t)n);
    qg_random_signs(1234 + (uint64_t)c, s, n);
    for (int inv = 0; inv < 2; inv++) {
      memcpy(y, x, sizeof *y * (size_t)(n * m));
      OK(qg_cuq_rotate(y, s, n, m, inv));
      for (int64_t r = 0; r < m; r++) inv ? qg_rotate_inv(x + r * n, s, n) : qg_rotate_fwd(x + r * n, s, n);
      assert_memory_equal(x, y, sizeof *y * (size_t)(n * m));
    }
    free(x), free(y), free(s);
  }
  int64_t counts[] = {1, 999, 100003};
  for (int c = 0; c < 3; c++)
    for (int bits = 1; bits <= 8; bits++) { /* Lloyd-Max rounding */
      int64_t n = counts[c];
      float *x = rnd(n, 4.0f);
      uint32_t *idx = malloc(sizeof *idx * (size_t)n);
      memset(idx, 0xff, sizeof *idx * (size_t)n);
      OK(qg_cuq_lloydmax_index(bits, x, n, idx));
      const qg_lloydmax *lm = qg_lloydmax_gaussian_cached(bits);
      for (int64_t i = 0; i < n; i++) assert_int_equal(idx[i], (uint32_t)qg_lloydmax_index(lm, x[i]));
      free(x), free(idx);
    }
  const char *books[] = {"e8p", "ball1", "ball2"};
  int64_t nv[] = {1, 333, 20001};
  for (int c = 0; c < 3; c++) { /* E8 nearest point and codebook search */
    int64_t n = nv[c];
    float *x = rnd(8 * n, 2.5f), *y = malloc(sizeof *y * 8 * (size_t)n), *d2 = malloc(sizeof *d2 * (size_t)n);
    uint32_t *idx = malloc(sizeof *idx * (size_t)n);
    for (int64_t i = 0; i < 8 * n; i++) y[i] = NAN;
    OK(qg_cuq_e8_nearest(x, n, y));
    for (int64_t v = 0; v < n; v++) {
      float z[8];
      qg_e8_nearest(x + 8 * v, z);
      assert_memory_equal(z, y + 8 * v, sizeof z);
    }
    for (int b = 0; b < 3; b++) {
      const qg_e8_codebook *cb = qg_e8_codebook_get(books[b]);
      memset(idx, 0xff, sizeof *idx * (size_t)n);
      for (int64_t i = 0; i < n; i++) d2[i] = NAN;
      OK(qg_cuq_e8_encode(cb, x, n, idx, d2));
      for (int64_t v = 0; v < n; v++) {
        float d;
        uint32_t want = qg_e8_encode(cb, x + 8 * v, &d);
        if (idx[v] != want || d2[v] != d)
          fail_msg("e8 encode (%s) vector %lld: %u/%g vs CPU %u/%g", books[b], (long long)v, idx[v], d2[v], want, d);
      }
    }
    free(x), free(y), free(d2), free(idx);
  }
}

/* ---- GPTQ -------------------------------------------------------------------------------- */
static double herr(const float *w, const float *q, int64_t rows, int64_t cols, const double *H) {
  double num = 0, den = 0;
  for (int64_t r = 0; r < rows; r++)
    for (int64_t i = 0; i < cols; i++) {
      double di = (double)w[r * cols + i] - q[r * cols + i], wi = w[r * cols + i], sd = 0, sw = 0;
      for (int64_t j = 0; j < cols; j++) {
        sd += H[i * cols + j] * ((double)w[r * cols + j] - q[r * cols + j]);
        sw += H[i * cols + j] * w[r * cols + j];
      }
      num += di * sd, den += wi * sw;
    }
  return num / den;
}

static void gptq_case(const char *opts) {
  for (size_t c = 0; c < 4; c++) {
    int64_t rows = shapes[c][0], cols = shapes[c][1];
    qg_qconfig cfg;
    OK(qg_qconfig_parse("gptq", opts, &cfg));
    int64_t shape[2] = {rows, cols};
    if (qg_qconfig_can_take(&cfg, "w", 2, shape)) {
      qg_qconfig_free(&cfg);
      continue;
    }
    float *w = rnd(rows * cols, 0.05f), *x = acts(3 * cols, cols);
    double *H = hessian_of(x, 3 * cols, cols);
    for (int64_t i = 0; i < cols; i++) H[i * cols + 5] = H[5 * cols + i] = 0; /* a dead column */
    qg_qinput in = {.name = "w", .w = w, .rows = rows, .cols = cols, .dtype = QG_F32, .hessian = H};
    qg_qtensor a, b;
    OK(qg_quantize(&cfg, &in, &a));
    OK(qg_cuq_quantize(&cfg, &in, &b));
    assert_int_equal(a.nsec, b.nsec);
    int64_t same = 0, total = 0;
    for (int i = 0; i < a.nsec; i++)
      if (a.sec[i].kind == QG_SEC_CODES) {
        for (int64_t k = 0; k < a.sec[i].count; k++)
          same += ((uint32_t *)a.sec[i].data)[k] == ((uint32_t *)b.sec[i].data)[k];
        total += a.sec[i].count;
      }
    float *qa = malloc(sizeof *qa * (size_t)(rows * cols)), *qb = malloc(sizeof *qb * (size_t)(rows * cols));
    OK(qg_dequantize(&cfg, &a, qa));
    OK(qg_dequantize(&cfg, &b, qb));
    double ea = herr(w, qa, rows, cols, H), eb = herr(w, qb, rows, cols, H);
    print_message("gptq %s %lldx%lld: codes identical %.4f%%, herr cpu %.6g gpu %.6g\n", opts, (long long)rows,
                  (long long)cols, 100.0 * (double)same / (double)total, ea, eb);
    assert_true((double)same >= 0.99 * (double)total);
    assert_true(fabs(eb - ea) <= 0.01 * ea);
    assert_string_equal(a.note ? a.note : "", b.note ? b.note : "");
    qg_qtensor_free(&a), qg_qtensor_free(&b);
    qg_qconfig_free(&cfg);
    free(w), free(x), free(H), free(qa), free(qb);
  }
}

static void test_gptq(void **st) {
  (void)st;
  NEED_GPU();
  gptq_case("bits=6");
  gptq_case("bits=4 clip=search blocksize=64");
  gptq_case("bits=4 group=8");                              /* dynamic groups */
  gptq_case("bits=5 group=8 act_order=1");                  /* static groups, permuted */
  gptq_case("bits=3 act_order=1 blocksize=512");            /* block larger than a kernel's */
  gptq_case("grid=lloydmax bits=3");
  gptq_case("grid=lloydmax bits=2 group=8 objective=hessian");
  gptq_case("grid=e8 cb=e8p bits=2");
  gptq_case("grid=e8 cb=e8p bits=4 blocksize=64");
}

/* ---- whole models: artifacts made on the GPU and the CPU ---------------------------------- */
static void add_rand(qg_state *s, const char *name, int rows, int cols, float scale) {
  int64_t shape[2] = {rows, cols};
  qg_tensor *t;
  OK(qg_state_add(s, name, QG_F32, cols ? 2 : 1, shape, &t));
  float *p = t->data;
  for (int64_t i = 0; i < qg_tensor_numel(t); i++) p[i] = qg_test_randf(&rng) * scale;
}

static void random_model(qg_state *s, int L, int d, int H, int KVH, int hidden, int V) {
  qg_state_init(s);
  char name[96];
  int hd = d / H;
  add_rand(s, "tok_emb.weight", V, d, 1.0f);
  add_rand(s, "skip_weights", L / 2, d, 1.0f);
  static const char *mats[] = {"attn.c_q.weight", "attn.c_k.weight", "attn.c_v.weight",
                               "attn.proj.weight", "mlp.fc.weight", "mlp.proj.weight"};
  int rows[] = {d, KVH * hd, KVH * hd, d, hidden, d}, cols[] = {d, d, d, d, d, hidden};
  static const char *vecs[] = {"attn_scale", "mlp_scale", "attn.q_gain"};
  for (int b = 0; b < L; b++) {
    for (int k = 0; k < 6; k++) {
      snprintf(name, sizeof name, "blocks.%d.%s", b, mats[k]);
      add_rand(s, name, rows[k], cols[k], 1.0f / sqrtf((float)cols[k]));
    }
    for (int k = 0; k < 3; k++) {
      snprintf(name, sizeof name, "blocks.%d.%s", b, vecs[k]);
      add_rand(s, name, k == 2 ? H : d, 0, 1.0f);
    }
    snprintf(name, sizeof name, "blocks.%d.resid_mix", b);
    add_rand(s, name, 2, d, 1.0f);
  }
}

/* Mean KL(p_a || p_b) over every position, both models on the CPU backend. */
static double model_kld(const qg_state *a, const qg_state *b, const int32_t *tok, int B, int T) {
  qg_gpt ma, mb;
  OK(qg_gpt_init(&ma, a, &go0, qg_ops_cpu()));
  OK(qg_gpt_init(&mb, b, &go0, qg_ops_cpu()));
  OK(qg_gpt_forward(&ma, tok, B, T));
  OK(qg_gpt_forward(&mb, tok, B, T));
  int V = ma.cfg.vocab;
  double sc = ma.cfg.softcap, kl = 0;
  for (int64_t r = 0; r < (int64_t)B * T; r++) {
    const float *la = ma.logits + r * V, *lb = mb.logits + r * V;
    double za = -INFINITY, zb = -INFINITY, sa = 0, sb = 0;
    for (int v = 0; v < V; v++) za = fmax(za, sc * tanh(la[v] / sc)), zb = fmax(zb, sc * tanh(lb[v] / sc));
    for (int v = 0; v < V; v++) sa += exp(sc * tanh(la[v] / sc) - za), sb += exp(sc * tanh(lb[v] / sc) - zb);
    for (int v = 0; v < V; v++) {
      double pa = sc * tanh(la[v] / sc) - za - log(sa), pb = sc * tanh(lb[v] / sc) - zb - log(sb);
      kl += exp(pa) * (pa - pb);
    }
  }
  qg_gpt_free(&ma), qg_gpt_free(&mb);
  return kl / ((double)B * T);
}

static void test_model_artifacts(void **st) {
  (void)st;
  NEED_GPU();
  qg_state s;
  random_model(&s, 4, 192, 6, 3, 384, 500);
  int B = 4, T = 96;
  int32_t *tok = malloc(sizeof *tok * (size_t)(B * T));
  for (int i = 0; i < B * T; i++) tok[i] = (int32_t)(qg_test_rand(&rng) % 500);
  qg_gpt m;
  qg_hessian_map hm, hd;
  qg_hessian_map_init(&hm), qg_hessian_map_init(&hd);
  OK(qg_gpt_init(&m, &s, &go0, qg_ops_cpu()));
  OK(qg_calib_hessians(&m, tok, B, T, 0, &hm));
  qg_gpt_free(&m);
  const qg_ops *cu;
  OK(qg_ops_cuda(&cu)); /* the device calibration pass against the CPU's */
  OK(qg_gpt_init(&m, &s, &go0, cu));
  OK(qg_calib_hessians(&m, tok, B, T, 0, &hd));
  qg_gpt_free(&m);
  assert_int_equal(hm.n, hd.n);
  for (int i = 0; i < hm.n; i++) {
    const qg_hessian *a = &hm.h[i], *b = qg_hessian_map_find(&hd, hm.names[i]);
    assert_non_null(b);
    double num = 0, den = 0;
    for (int64_t j = 0; j < a->k * a->k; j++) num += (a->H[j] - b->H[j]) * (a->H[j] - b->H[j]), den += a->H[j] * a->H[j];
    if (!(sqrt(num / den) <= 1e-4)) fail_msg("calibration Hessian %s: rel err %g", hm.names[i], sqrt(num / den));
  }
  const char *specs[] = {"blocks.*.weight: rowwise bits=6; tok_emb.weight: rowwise bits=8 clip=sd",
                         "blocks.*.weight: gptq bits=5; tok_emb.weight: gptq bits=8",
                         "blocks.*.mlp.*: gptq grid=lloydmax bits=3; blocks.*.weight: gptq grid=e8 bits=2"};
  for (int k = 0; k < 3; k++) {
    qg_spec spec;
    OK(qg_spec_parse_inline(specs[k], &spec));
    qg_quantize_opts cpu = {.hessians = &hm}, gpu = {.hessians = &hm, .backend = qg_quant_backend_for(QG_BACKEND_CUDA)};
    qg_qmodel a, b;
    OK(qg_quantize_model(&s, &spec, &cpu, &a));
    OK(qg_quantize_model(&s, &spec, &gpu, &b));
    if (k == 0) {
      for (int i = 0; i < a.n; i++) assert_same_qtensor(&a.t[i].q, &b.t[i].q, a.t[i].q.name);
    } else {
      const qg_qtensor **pa = malloc(sizeof *pa * (size_t)a.n), **pb = malloc(sizeof *pb * (size_t)b.n);
      for (int i = 0; i < a.n; i++) pa[i] = &a.t[i].q, pb[i] = &b.t[i].q;
      qg_state da, db;
      OK(qg_qtensors_dequantize(pa, a.n, &da));
      OK(qg_qtensors_dequantize(pb, b.n, &db));
      double kl = model_kld(&da, &db, tok, B, T);
      print_message("spec '%s': KLD(cpu artifact || gpu artifact) = %.3g\n", specs[k], kl);
      assert_true(kl <= 1e-4);
      qg_state_free(&da), qg_state_free(&db);
      free(pa), free(pb);
    }
    qg_qmodel_free(&a), qg_qmodel_free(&b);
    qg_spec_free(&spec);
  }
  qg_hessian_map_free(&hm), qg_hessian_map_free(&hd);
  qg_state_free(&s);
  free(tok);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hessian),     cmocka_unit_test(test_rowwise_rtn), cmocka_unit_test(test_lloydmax_rtn),
      cmocka_unit_test(test_e8_rtn),      cmocka_unit_test(test_fakequant),   cmocka_unit_test(test_raw_ops),
      cmocka_unit_test(test_gptq),        cmocka_unit_test(test_model_artifacts),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
