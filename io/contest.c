/* The contest's constants and ATen's quantile (see io/contest.h). */
#include "io/contest.h"

#include <math.h>
#include <string.h>

/* CONTROL_TENSOR_NAME_PATTERNS */
static const char *control_patterns[] = {"attn_scale", "attn_scales", "mlp_scale", "mlp_scales", "resid_mix",
                                         "resid_mixes", "q_gain", "skip_weight", "skip_weights"};

int qg_contest_is_control(const char *name) {
  for (size_t i = 0; i < sizeof control_patterns / sizeof control_patterns[0]; i++)
    if (strstr(name, control_patterns[i])) return 1;
  return 0;
}

/* k-th smallest of v[0..n) (v reordered; Hoare quickselect, median-of-three pivot). */
static float select_kth(float *v, int64_t n, int64_t k) {
  int64_t lo = 0, hi = n - 1;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    float a = v[lo], b = v[mid], c = v[hi];
    float p = a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));
    int64_t i = lo, j = hi;
    while (i <= j) {
      while (v[i] < p) i++;
      while (v[j] > p) j--;
      if (i <= j) {
        float t = v[i];
        v[i] = v[j], v[j] = t;
        i++, j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return v[k];
  }
  return v[k];
}

float qg_quantile_f32(float *v, int64_t n, double q) {
  if (n <= 0) return 0.0f;
  float qf = (float)q;
  float rank = qf * (float)(n - 1);
  int64_t below = (int64_t)rank, above = (int64_t)ceilf(rank);
  if (above > n - 1) above = n - 1;
  if (below > n - 1) below = n - 1;
  float w = rank - (float)below;
  float lo = select_kth(v, n, below);
  /* after selecting `below`, everything at or above index below is >= lo */
  float hi = above == below ? lo : select_kth(v + below + 1, n - below - 1, above - below - 1);
  if (fabsf(w) < 0.5f) return fmaf(w, hi - lo, lo);
  return fmaf(w - 1.0f, hi - lo, hi);
}

float qg_contest_clip(float *v, int64_t n) { return qg_quantile_f32(v, n, QG_CONTEST_CLIP_Q); }
