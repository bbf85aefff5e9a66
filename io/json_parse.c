/* Strict recursive-descent JSON parser; see json_parse.h. Nodes and decoded strings come
 * from two chunked arenas, so pointers stay valid while the tree grows and the whole
 * document is freed in one pass. Recursion depth is bounded by max_depth. */
#include "io/json_parse.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JP_DEFAULT_DEPTH 64
#define JP_DEPTH_CAP 512
#define JP_DEFAULT_NODES ((size_t)1 << 22)
#define JP_STR_CHUNK 16384

struct nchunk {
  struct nchunk *next;
  size_t used, cap;
  qg_jnode n[];
};
struct schunk {
  struct schunk *next;
  size_t used, cap;
  char b[];
};

typedef struct {
  const uint8_t *p;
  size_t len, pos;
  const char *name;
  size_t base;
  int max_depth;
  size_t max_nodes;
  qg_jdoc *doc;
} jp;

/* ---- UTF-8 ---------------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence starting at s (n > 0 bytes available), or 0. */
static size_t utf8_seq(const uint8_t *s, size_t n) {
  uint8_t c = s[0];
  if (c < 0x80) return 1;
  if (c < 0xC2) return 0; /* stray continuation byte, or an overlong 2-byte form */
  size_t need = c < 0xE0 ? 2 : c < 0xF0 ? 3 : c < 0xF5 ? 4 : 0;
  if (need == 0 || n < need) return 0;
  for (size_t k = 1; k < need; k++)
    if ((s[k] & 0xC0) != 0x80) return 0;
  if (c == 0xE0 && s[1] < 0xA0) return 0; /* overlong 3-byte */
  if (c == 0xED && s[1] >= 0xA0) return 0; /* UTF-16 surrogate encoded directly */
  if (c == 0xF0 && s[1] < 0x90) return 0; /* overlong 4-byte */
  if (c == 0xF4 && s[1] >= 0x90) return 0; /* above U+10FFFF */
  return need;
}

size_t qg_utf8_valid_prefix(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    size_t k = utf8_seq(s + i, n - i);
    if (!k) break;
    i += k;
  }
  return i;
}

/* ---- arenas --------------------------------------------------------------------------- */

static qg_status jp_fail(jp *j, size_t at, const char *fmt, ...) QG_PRINTF(3, 4);
static qg_status jp_fail(jp *j, size_t at, const char *fmt, ...) {
  char what[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  return qg_fail(QG_ERR_INPUT, "%s: offset %zu: %s", j->name, j->base + at, what);
}

static qg_jnode *new_node(jp *j, qg_status *st) {
  qg_jdoc *d = j->doc;
  if (d->n_nodes >= j->max_nodes) {
    *st = qg_fail(QG_ERR_NOMEM, "%s: offset %zu: more than %zu JSON values", j->name,
                  j->base + j->pos, j->max_nodes);
    return NULL;
  }
  struct nchunk *c = d->node_chunks;
  if (!c || c->used == c->cap) {
    size_t cap = c ? (c->cap < 65536 ? c->cap * 2 : c->cap) : 64;
    struct nchunk *nc = malloc(sizeof *nc + cap * sizeof(qg_jnode));
    if (!nc) {
      *st = qg_fail(QG_ERR_NOMEM, "%s: out of memory parsing JSON", j->name);
      return NULL;
    }
    nc->next = c;
    nc->used = 0;
    nc->cap = cap;
    d->node_chunks = c = nc;
  }
  qg_jnode *n = &c->n[c->used++];
  memset(n, 0, sizeof *n);
  d->n_nodes++;
  return n;
}

static char *new_str(jp *j, size_t n, qg_status *st) {
  struct schunk *c = j->doc->str_chunks;
  if (!c || c->cap - c->used < n) {
    size_t cap = n > JP_STR_CHUNK ? n : JP_STR_CHUNK;
    struct schunk *nc = malloc(sizeof *nc + cap);
    if (!nc) {
      *st = qg_fail(QG_ERR_NOMEM, "%s: out of memory parsing JSON", j->name);
      return NULL;
    }
    nc->used = 0;
    nc->cap = cap;
    /* A big dedicated block goes behind the head so the head keeps serving small strings. */
    if (c && n > JP_STR_CHUNK) {
      nc->next = c->next;
      c->next = nc;
    } else {
      nc->next = c;
      j->doc->str_chunks = nc;
    }
    c = nc;
  }
  char *s = c->b + c->used;
  c->used += n;
  return s;
}

void qg_jdoc_free(qg_jdoc *doc) {
  for (struct nchunk *c = doc->node_chunks, *nx; c; c = nx) {
    nx = c->next;
    free(c);
  }
  for (struct schunk *c = doc->str_chunks, *nx; c; c = nx) {
    nx = c->next;
    free(c);
  }
  memset(doc, 0, sizeof *doc);
}

/* ---- lexing helpers ------------------------------------------------------------------- */

/* What sits at position at, for messages: "end of input", "'x'" or "byte 0x9f". */
static const char *found(const jp *j, size_t at, char *buf, size_t cap) {
  if (at >= j->len) return "end of input";
  uint8_t c = j->p[at];
  if (c >= 0x21 && c < 0x7f)
    snprintf(buf, cap, "'%c'", c);
  else
    snprintf(buf, cap, "byte 0x%02x", c);
  return buf;
}

static void skip_ws(jp *j) {
  while (j->pos < j->len) {
    uint8_t c = j->p[j->pos];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
    j->pos++;
  }
}

static int hexval(uint8_t c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Reads the 4 hex digits of a \u escape whose backslash is at k (string ends at end). */
static qg_status read_u16(jp *j, size_t k, size_t end, unsigned *out) {
  if (end - k < 6) return jp_fail(j, k, "truncated \\u escape (4 hex digits expected)");
  unsigned v = 0;
  for (size_t i = k + 2; i < k + 6; i++) {
    int h = hexval(j->p[i]);
    if (h < 0) {
      char b[16];
      return jp_fail(j, i, "bad hex digit in \\u escape: %s", found(j, i, b, sizeof b));
    }
    v = v * 16 + (unsigned)h;
  }
  *out = v;
  return QG_OK;
}

static size_t put_utf8(char *o, unsigned cp) {
  if (cp < 0x80) {
    o[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (char)(0xC0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (char)(0xE0 | (cp >> 12));
    o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (char)(0xF0 | (cp >> 18));
  o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  o[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* Parses the string whose opening quote is at j->pos; decoded bytes never outnumber the
 * raw ones, so one allocation of the raw length suffices. */
static qg_status parse_string(jp *j, const char **out, size_t *out_len) {
  size_t start = j->pos, i = start + 1;
  while (i < j->len && j->p[i] != '"') {
    if (j->p[i] == '\\') {
      i += 2;
      continue;
    }
    if (j->p[i] < 0x20)
      return jp_fail(j, i, "raw control character 0x%02x in a string (must be escaped)", j->p[i]);
    i++;
  }
  if (i >= j->len) return jp_fail(j, start, "unterminated string");
  size_t end = i;
  qg_status st = QG_OK;
  char *o = new_str(j, end - start, &st); /* raw bytes between the quotes, plus a NUL */
  if (!o) return st;
  size_t n = 0;
  for (size_t k = start + 1; k < end;) {
    uint8_t c = j->p[k];
    if (c != '\\') {
      size_t sl = utf8_seq(j->p + k, end - k);
      if (!sl) return jp_fail(j, k, "invalid UTF-8 byte 0x%02x in a string", c);
      memcpy(o + n, j->p + k, sl);
      n += sl;
      k += sl;
      continue;
    }
    uint8_t e = j->p[k + 1]; /* exists: the closing quote at end was not escaped */
    const char *simple = strchr("\"\\/bfnrt", e);
    if (e && simple) {
      static const char repl[] = "\"\\/\b\f\n\r\t";
      o[n++] = repl[simple - "\"\\/bfnrt"];
      k += 2;
      continue;
    }
    if (e != 'u') {
      if (e >= 0x21 && e < 0x7f) return jp_fail(j, k, "bad escape \\%c", e);
      return jp_fail(j, k, "bad escape: backslash followed by byte 0x%02x", e);
    }
    unsigned cp;
    QG_TRY(read_u16(j, k, end, &cp));
    if (cp >= 0xDC00 && cp <= 0xDFFF)
      return jp_fail(j, k, "unpaired low surrogate \\u%04X", cp);
    if (cp >= 0xD800 && cp <= 0xDBFF) {
      unsigned lo;
      if (end - k < 12 || j->p[k + 6] != '\\' || j->p[k + 7] != 'u')
        return jp_fail(j, k, "high surrogate \\u%04X not followed by a \\u low surrogate", cp);
      QG_TRY(read_u16(j, k + 6, end, &lo));
      if (lo < 0xDC00 || lo > 0xDFFF)
        return jp_fail(j, k + 6, "\\u%04X after high surrogate \\u%04X is not a low surrogate", lo, cp);
      cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
      k += 6;
    }
    n += put_utf8(o + n, cp);
    k += 6;
  }
  o[n] = 0;
  *out = o;
  *out_len = n;
  j->pos = end + 1;
  return QG_OK;
}

static qg_status parse_number(jp *j, qg_jnode *v) {
  size_t start = j->pos;
  const uint8_t *p = j->p;
  int neg = 0;
  if (p[j->pos] == '-') {
    neg = 1;
    j->pos++;
  }
  char b[16];
  if (j->pos >= j->len || p[j->pos] < '0' || p[j->pos] > '9')
    return jp_fail(j, j->pos, "expected a digit, found %s", found(j, j->pos, b, sizeof b));
  /* Magnitude as uint64 with an overflow flag; the negative limit is one larger. */
  uint64_t mag = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
  int over = 0;
  if (p[j->pos] == '0') {
    j->pos++;
    if (j->pos < j->len && p[j->pos] >= '0' && p[j->pos] <= '9')
      return jp_fail(j, start, "number with a leading zero");
  } else {
    while (j->pos < j->len && p[j->pos] >= '0' && p[j->pos] <= '9') {
      unsigned d = p[j->pos++] - '0';
      if (mag > (lim - d) / 10) over = 1;
      else mag = mag * 10 + d;
    }
  }
  int is_int = !over;
  if (j->pos < j->len && p[j->pos] == '.') {
    j->pos++;
    if (j->pos >= j->len || p[j->pos] < '0' || p[j->pos] > '9')
      return jp_fail(j, j->pos, "expected a digit after '.', found %s", found(j, j->pos, b, sizeof b));
    while (j->pos < j->len && p[j->pos] >= '0' && p[j->pos] <= '9') j->pos++;
    is_int = 0;
  }
  if (j->pos < j->len && (p[j->pos] == 'e' || p[j->pos] == 'E')) {
    j->pos++;
    if (j->pos < j->len && (p[j->pos] == '+' || p[j->pos] == '-')) j->pos++;
    if (j->pos >= j->len || p[j->pos] < '0' || p[j->pos] > '9')
      return jp_fail(j, j->pos, "expected a digit in the exponent, found %s", found(j, j->pos, b, sizeof b));
    while (j->pos < j->len && p[j->pos] >= '0' && p[j->pos] <= '9') j->pos++;
    is_int = 0;
  }
  v->type = QG_JNUM;
  v->is_int = is_int;
  /* -(2^63) has no positive twin: negate in unsigned arithmetic, then convert. */
  if (is_int) v->i = neg ? (int64_t)(0 - mag) : (int64_t)mag;
  return QG_OK;
}

static qg_status parse_value(jp *j, int depth, qg_jnode *v);

/* Arrays and objects share one loop: members differ only by their "key": prefix. */
static qg_status parse_container(jp *j, int depth, qg_jnode *v, int is_obj) {
  char b[16];
  if (depth > j->max_depth)
    return jp_fail(j, j->pos, "nesting deeper than %d levels", j->max_depth);
  v->type = is_obj ? QG_JOBJ : QG_JARR;
  uint8_t close = is_obj ? '}' : ']';
  j->pos++;
  skip_ws(j);
  if (j->pos < j->len && j->p[j->pos] == close) {
    j->pos++;
    return QG_OK;
  }
  qg_jnode *tail = NULL;
  for (;;) {
    qg_status st = QG_OK;
    qg_jnode *c = new_node(j, &st);
    if (!c) return st;
    if (is_obj) {
      skip_ws(j);
      if (j->pos >= j->len || j->p[j->pos] != '"')
        return jp_fail(j, j->pos, "expected a string key, found %s", found(j, j->pos, b, sizeof b));
      c->key_offset = j->base + j->pos;
      QG_TRY(parse_string(j, &c->key, &c->key_len));
      skip_ws(j);
      if (j->pos >= j->len || j->p[j->pos] != ':')
        return jp_fail(j, j->pos, "expected ':' after an object key, found %s", found(j, j->pos, b, sizeof b));
      j->pos++;
    }
    QG_TRY(parse_value(j, depth, c));
    if (tail) tail->next = c;
    else v->child = c;
    tail = c;
    v->len++;
    skip_ws(j);
    if (j->pos < j->len && j->p[j->pos] == ',') {
      j->pos++;
      continue;
    }
    if (j->pos < j->len && j->p[j->pos] == close) {
      j->pos++;
      return QG_OK;
    }
    return jp_fail(j, j->pos, "expected ',' or '%c', found %s", close, found(j, j->pos, b, sizeof b));
  }
}

static qg_status parse_value(jp *j, int depth, qg_jnode *v) {
  char b[16];
  skip_ws(j);
  v->offset = j->base + j->pos;
  if (j->pos >= j->len) return jp_fail(j, j->pos, "expected a JSON value, found end of input");
  uint8_t c = j->p[j->pos];
  switch (c) {
    case '{': return parse_container(j, depth + 1, v, 1);
    case '[': return parse_container(j, depth + 1, v, 0);
    case '"':
      v->type = QG_JSTR;
      return parse_string(j, &v->s, &v->len);
    case 't':
    case 'f':
    case 'n': {
      const char *lit = c == 't' ? "true" : c == 'f' ? "false" : "null";
      size_t n = strlen(lit);
      if (j->len - j->pos < n || memcmp(j->p + j->pos, lit, n) != 0)
        return jp_fail(j, j->pos, "expected '%s'", lit);
      j->pos += n;
      v->type = c == 'n' ? QG_JNULL : QG_JBOOL;
      v->i = c == 't';
      return QG_OK;
    }
    default:
      if (c == '-' || (c >= '0' && c <= '9')) return parse_number(j, v);
      return jp_fail(j, j->pos, "expected a JSON value, found %s", found(j, j->pos, b, sizeof b));
  }
}

qg_status qg_jparse(const char *text, size_t len, const qg_jopts *opts, qg_jdoc *doc,
                    const qg_jnode **root) {
  memset(doc, 0, sizeof *doc);
  *root = NULL;
  jp j = {.p = (const uint8_t *)text, .len = len, .doc = doc};
  j.name = opts && opts->name ? opts->name : "json";
  j.base = opts ? opts->base_offset : 0;
  j.max_depth = opts && opts->max_depth > 0 ? opts->max_depth : JP_DEFAULT_DEPTH;
  if (j.max_depth > JP_DEPTH_CAP) j.max_depth = JP_DEPTH_CAP;
  j.max_nodes = opts && opts->max_nodes ? opts->max_nodes : JP_DEFAULT_NODES;
  qg_status st = QG_OK;
  qg_jnode *r = new_node(&j, &st);
  if (r) st = parse_value(&j, 0, r);
  if (!st) {
    skip_ws(&j);
    char b[16];
    if (j.pos < j.len) st = jp_fail(&j, j.pos, "unexpected %s after the JSON value", found(&j, j.pos, b, sizeof b));
  }
  if (st) {
    qg_jdoc_free(doc);
    return st;
  }
  *root = r;
  return QG_OK;
}

/* ---- queries -------------------------------------------------------------------------- */

const qg_jnode *qg_jobj_get(const qg_jnode *obj, const char *key) {
  if (!obj || obj->type != QG_JOBJ) return NULL;
  size_t kl = strlen(key);
  for (const qg_jnode *c = obj->child; c; c = c->next)
    if (c->key_len == kl && memcmp(c->key, key, kl) == 0) return c;
  return NULL;
}

static int key_cmp(const void *a, const void *b) {
  const qg_jnode *x = *(const qg_jnode *const *)a, *y = *(const qg_jnode *const *)b;
  size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
  int r = memcmp(x->key, y->key, n);
  if (r) return r;
  if (x->key_len != y->key_len) return x->key_len < y->key_len ? -1 : 1;
  return x->key_offset < y->key_offset ? -1 : x->key_offset > y->key_offset;
}

qg_status qg_jobj_duplicate(const qg_jnode *obj, const qg_jnode **dup) {
  *dup = NULL;
  if (!obj || obj->type != QG_JOBJ || obj->len < 2) return QG_OK;
  const qg_jnode **v = malloc(obj->len * sizeof *v);
  if (!v) return qg_fail(QG_ERR_NOMEM, "out of memory checking %zu JSON keys", obj->len);
  size_t n = 0;
  for (const qg_jnode *c = obj->child; c; c = c->next) v[n++] = c;
  qsort(v, n, sizeof *v, key_cmp);
  /* Within a run of equal keys the first is the original; every later one repeats it. */
  for (size_t i = 1; i < n; i++)
    if (v[i]->key_len == v[i - 1]->key_len && memcmp(v[i]->key, v[i - 1]->key, v[i]->key_len) == 0)
      if (!*dup || v[i]->key_offset < (*dup)->key_offset) *dup = v[i];
  free(v);
  return QG_OK;
}

const char *qg_jtype_name(qg_jtype t) {
  switch (t) {
    case QG_JNULL: return "null";
    case QG_JBOOL: return "boolean";
    case QG_JNUM: return "number";
    case QG_JSTR: return "string";
    case QG_JARR: return "array";
    case QG_JOBJ: return "object";
  }
  return "?";
}
