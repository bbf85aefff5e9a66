#include "core/json.h"

#include <math.h>
#include <stdio.h>

void qg_json_init(qg_json *j, qg_buf *out, int pretty) {
  memset(j, 0, sizeof *j);
  j->out = out;
  j->pretty = pretty;
}

static void indent(qg_json *j) {
  if (!j->pretty) return;
  qg_buf_byte(j->out, '\n');
  for (int i = 0; i < j->depth; i++) qg_buf_str(j->out, "  ");
}

/* Before any value or key: a comma after the previous sibling, then indentation. */
static void pre_value(qg_json *j) {
  if (j->after_key) {
    j->after_key = 0;
    return;
  }
  if (j->depth > 0) {
    if (j->count[j->depth - 1]++ > 0) qg_buf_byte(j->out, ',');
    indent(j);
  }
}

static void open(qg_json *j, char c) {
  pre_value(j);
  qg_buf_byte(j->out, (uint8_t)c);
  if (j->depth < QG_JSON_MAX_DEPTH) j->count[j->depth] = 0;
  j->depth++;
}

static void close_(qg_json *j, char c) {
  int had = j->depth > 0 && j->depth <= QG_JSON_MAX_DEPTH && j->count[j->depth - 1] > 0;
  j->depth--;
  if (had) indent(j);
  qg_buf_byte(j->out, (uint8_t)c);
}

void qg_json_obj_begin(qg_json *j) { open(j, '{'); }
void qg_json_obj_end(qg_json *j) { close_(j, '}'); }
void qg_json_arr_begin(qg_json *j) { open(j, '['); }
void qg_json_arr_end(qg_json *j) { close_(j, ']'); }

static void write_string(qg_buf *b, const char *s) {
  qg_buf_byte(b, '"');
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    switch (*p) {
      case '"': qg_buf_str(b, "\\\""); break;
      case '\\': qg_buf_str(b, "\\\\"); break;
      case '\n': qg_buf_str(b, "\\n"); break;
      case '\r': qg_buf_str(b, "\\r"); break;
      case '\t': qg_buf_str(b, "\\t"); break;
      default:
        if (*p < 0x20)
          qg_buf_printf(b, "\\u%04x", *p);
        else
          qg_buf_byte(b, *p);
    }
  }
  qg_buf_byte(b, '"');
}

void qg_json_key(qg_json *j, const char *k) {
  pre_value(j);
  write_string(j->out, k);
  qg_buf_str(j->out, j->pretty ? ": " : ":");
  j->after_key = 1;
}

void qg_json_str(qg_json *j, const char *s) {
  pre_value(j);
  write_string(j->out, s);
}
void qg_json_int(qg_json *j, int64_t v) {
  pre_value(j);
  qg_buf_printf(j->out, "%lld", (long long)v);
}
void qg_json_num(qg_json *j, double v) {
  pre_value(j);
  if (!isfinite(v))
    qg_buf_str(j->out, "null");
  else
    qg_buf_printf(j->out, "%.17g", v);
}
void qg_json_bool(qg_json *j, int v) {
  pre_value(j);
  qg_buf_str(j->out, v ? "true" : "false");
}
void qg_json_null(qg_json *j) {
  pre_value(j);
  qg_buf_str(j->out, "null");
}
