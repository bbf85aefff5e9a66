/* A small pickle interpreter for what torch.save emits for state dicts (protocols 2-5),
 * and a protocol-2 writer for the same subset.
 *
 * Like PyTorch's weights_only loader it executes nothing: the only globals are
 * collections.OrderedDict, torch._utils._rebuild_tensor_v2 / _rebuild_parameter and the
 * torch.*Storage types; any other global or opcode is an error naming it. The result is
 * a tree of qg_py values; tensors are leaves that name their storage (the bytes live in
 * the zip and are read by io/pt.c). */
#ifndef QG_IO_PICKLE_H
#define QG_IO_PICKLE_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "core/tensor.h"
#include "core/util.h"

typedef enum {
  QG_PY_NONE,
  QG_PY_BOOL,
  QG_PY_INT,
  QG_PY_FLOAT,
  QG_PY_STR,
  QG_PY_BYTES,
  QG_PY_TUPLE,
  QG_PY_LIST,
  QG_PY_DICT,    /* items hold key, value, key, value, ... */
  QG_PY_GLOBAL,  /* s = "module.name" (only the allowed ones) */
  QG_PY_STORAGE, /* s = storage key, dtype, numel */
  QG_PY_TENSOR,
  QG_PY_MARK /* internal to the interpreter */
} qg_py_kind;

typedef struct qg_py qg_py;
struct qg_py {
  qg_py_kind kind;
  int64_t i;
  double f;
  char *s; /* STR, BYTES, GLOBAL, STORAGE key; NUL-terminated, len excludes it */
  size_t len;
  qg_py **items;
  size_t n, cap;
  /* STORAGE and TENSOR */
  qg_dtype dtype;
  int64_t numel;           /* STORAGE: elements in the storage */
  const qg_py *storage;    /* TENSOR */
  int64_t storage_offset;  /* TENSOR, in elements */
  int ndim;
  int64_t shape[QG_MAX_DIMS], stride[QG_MAX_DIMS];
};

/* Owns every object it creates; freeing it frees the whole tree. */
typedef struct {
  qg_py **all;
  size_t n_all, cap_all;
  qg_py *root;
} qg_pickle;

qg_status qg_pickle_load(const uint8_t *data, size_t len, const char *fname, qg_pickle *out);
void qg_pickle_free(qg_pickle *p);

/* Dictionary lookup by string key (NULL when absent or d is not a dict). */
const qg_py *qg_py_dict_get(const qg_py *d, const char *key);
const char *qg_py_kind_name(qg_py_kind k);

/* ---- writer (protocol 2, the subset torch's weights_only loader accepts) ---------- */
typedef struct {
  qg_buf out;
  int depth;
} qg_pkl_writer;

void qg_pkl_begin(qg_pkl_writer *w);                  /* PROTO 2 */
qg_status qg_pkl_end(qg_pkl_writer *w);               /* STOP */
void qg_pkl_dict_begin(qg_pkl_writer *w, int ordered); /* {} or OrderedDict() */
void qg_pkl_dict_end(qg_pkl_writer *w);
void qg_pkl_str(qg_pkl_writer *w, const char *s);
void qg_pkl_int(qg_pkl_writer *w, int64_t v);
void qg_pkl_bool(qg_pkl_writer *w, int v);
void qg_pkl_none(qg_pkl_writer *w);
/* A tensor over the whole storage `key` (contiguous, offset 0) via _rebuild_tensor_v2. */
void qg_pkl_tensor(qg_pkl_writer *w, const char *key, qg_dtype dtype, int ndim, const int64_t *shape);
/* torch's legacy storage class name for a dtype ("FloatStorage", ...), NULL if none. */
const char *qg_pkl_storage_name(qg_dtype t);

#endif
