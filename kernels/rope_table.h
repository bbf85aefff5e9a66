/* The rotary embedding's cos/sin table, computed one way for every backend: the
 * contest's Rotary in float32 (inv_freq = 1 / base^(2j/hd), angle = t * inv_freq, libm
 * cosf/sinf), so the CPU and the GPU rotate by the same numbers. */
#ifndef QG_KERNELS_ROPE_TABLE_H
#define QG_KERNELS_ROPE_TABLE_H

#ifdef __cplusplus
extern "C" {
#endif

/* tab[t * hd/2 + j] = cos, tab[T * hd/2 + t * hd/2 + j] = sin, for t < T, j < hd/2. */
void qg_rope_table_fill(float *tab, int T, int hd, float base);

#ifdef __cplusplus
}
#endif

#endif
