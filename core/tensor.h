/* Tensors and named tensor lists (qg_state).
 *
 * A qg_tensor is one plain struct: dtype, up to QG_MAX_DIMS dims, a contiguous row-major
 * data pointer, where it lives, and whether it owns its memory. Readers materialise
 * strided views into contiguous memory, so every tensor above io/ is contiguous. A
 * qg_state (ordered list of named tensors) is what every reader returns and every writer
 * takes, so formats convert through one shape. */
#ifndef QG_CORE_TENSOR_H
#define QG_CORE_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/status.h"

#define QG_MAX_DIMS 8

typedef enum { QG_DEV_HOST = 0, QG_DEV_CUDA = 1 } qg_device;

typedef struct {
  char *name; /* owned; NULL for anonymous tensors */
  qg_dtype dtype;
  int ndim;
  int64_t shape[QG_MAX_DIMS];
  void *data;    /* contiguous, row-major */
  size_t nbytes; /* numel * dtype size */
  qg_device device;
  bool owns; /* free(data) on release */
} qg_tensor;

/* Product of dims, or -1 when a dim is negative or the product of the nonzero dims
 * overflows int64 (so every sub-product of a valid shape fits). */
int64_t qg_shape_numel(int ndim, const int64_t *shape);
int64_t qg_tensor_numel(const qg_tensor *t);
/* "[1024, 512]" into buf. */
const char *qg_shape_str(int ndim, const int64_t *shape, char *buf, size_t cap);

/* Allocates a zeroed host tensor (owns its data). */
qg_status qg_tensor_alloc(qg_tensor *t, const char *name, qg_dtype dtype, int ndim,
                          const int64_t *shape);
void qg_tensor_release(qg_tensor *t);
/* Converts any numeric tensor to float32 into out (numel floats). */
void qg_tensor_to_f32(const qg_tensor *t, float *out);

typedef struct {
  qg_tensor *t;
  int n, cap;
  /* Free-form metadata key/values (e.g. safetensors __metadata__, ptz format tag). */
  char **meta_keys, **meta_vals;
  int n_meta;
} qg_state;

void qg_state_init(qg_state *s);
void qg_state_free(qg_state *s);
/* Appends an allocated zeroed tensor; *out points into s (valid until the next add).
 * Fails on a duplicate name. */
qg_status qg_state_add(qg_state *s, const char *name, qg_dtype dtype, int ndim,
                       const int64_t *shape, qg_tensor **out);
/* Appends a tensor taking ownership of data (must be malloc'd; freed on failure too). */
qg_status qg_state_add_owned(qg_state *s, const char *name, qg_dtype dtype, int ndim,
                             const int64_t *shape, void *data);
qg_tensor *qg_state_find(const qg_state *s, const char *name);
const qg_tensor *qg_state_find_c(const qg_state *s, const char *name);
qg_status qg_state_set_meta(qg_state *s, const char *key, const char *val);
const char *qg_state_get_meta(const qg_state *s, const char *key);
/* Sum of numel / nbytes over all tensors. */
int64_t qg_state_numel(const qg_state *s);
int64_t qg_state_nbytes(const qg_state *s);

#endif
