/* A minimal streaming JSON writer into a qg_buf: correct escaping, commas handled by a
 * nesting stack. Used by `inspect --json`, reports and benchmarks. */
#ifndef QG_CORE_JSON_H
#define QG_CORE_JSON_H

#include <stdint.h>

#include "core/util.h"

#define QG_JSON_MAX_DEPTH 32

typedef struct {
  qg_buf *out;
  int depth;
  int count[QG_JSON_MAX_DEPTH]; /* items written at each level */
  int after_key;
  int pretty;
} qg_json;

void qg_json_init(qg_json *j, qg_buf *out, int pretty);
void qg_json_obj_begin(qg_json *j);
void qg_json_obj_end(qg_json *j);
void qg_json_arr_begin(qg_json *j);
void qg_json_arr_end(qg_json *j);
void qg_json_key(qg_json *j, const char *k);
void qg_json_str(qg_json *j, const char *s);
void qg_json_int(qg_json *j, int64_t v);
void qg_json_num(qg_json *j, double v); /* non-finite values are written as null */
void qg_json_bool(qg_json *j, int v);
void qg_json_null(qg_json *j);

#endif
