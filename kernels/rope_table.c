#include "kernels/rope_table.h"

#include <math.h>
#include <stdint.h>

void qg_rope_table_fill(float *tab, int T, int hd, float base) {
  int half = hd / 2;
  for (int j = 0; j < half; j++) {
    float inv = 1.0f / powf(base, (float)(2 * j) / (float)hd);
    for (int t = 0; t < T; t++) {
      float a = (float)t * inv;
      tab[(int64_t)t * half + j] = cosf(a);
      tab[(int64_t)T * half + (int64_t)t * half + j] = sinf(a);
    }
  }
}
