/* Safetensors reader and writer; the format and the rules we check are in safetensors.h. */
#include "io/safetensors.h"

#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "core/util.h"
#include "io/json_parse.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c copies tensor bytes as they are: it needs a little-endian host"
#endif

#define ST_META_KEY "__metadata__"
/* The reference header needs 3 levels; anything deeper is hostile or broken. */
#define ST_JSON_DEPTH 64

static const char *const st_names[QG_DTYPE_COUNT] = {
    [QG_F32] = "F32", [QG_F16] = "F16", [QG_BF16] = "BF16", [QG_F64] = "F64", [QG_I8] = "I8",
    [QG_U8] = "U8",   [QG_I16] = "I16", [QG_I32] = "I32",   [QG_I64] = "I64", [QG_BOOL] = "BOOL",
};

/* Dtypes the reference knows and we do not hold: well-formed, but unsupported here. */
static const char *const st_foreign[] = {"U16",     "U32",     "U64",     "F8_E5M2", "F8_E4M3",
                                         "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4",      "C64"};

const char *qg_safetensors_dtype_name(qg_dtype t) {
  return (unsigned)t < QG_DTYPE_COUNT ? st_names[t] : "?";
}

int qg_safetensors_dtype_from_name(const char *name, qg_dtype *out) {
  for (int t = 0; t < QG_DTYPE_COUNT; t++)
    if (strcmp(name, st_names[t]) == 0) {
      *out = (qg_dtype)t;
      return 0;
    }
  return -1;
}

/* ---- reading -------------------------------------------------------------------------- */

typedef struct {
  const qg_jnode *m; /* the header member: m->key is the name */
  qg_dtype dtype;
  int ndim;
  int64_t shape[QG_MAX_DIMS];
  uint64_t begin, end;
  size_t order; /* position in the header, to keep sorting stable */
} st_entry;

/* A non-negative JSON integer, or -1. */
static int64_t json_uint(const qg_jnode *v) {
  return v->type == QG_JNUM && v->is_int && v->i >= 0 ? v->i : -1;
}

static qg_status parse_dtype(const char *file, const char *tn, const qg_jnode *v, qg_dtype *out) {
  if (v->type != QG_JSTR)
    return qg_fail(QG_ERR_INPUT, "%s: tensor '%s': offset %zu: dtype must be a string, found %s",
                   file, tn, v->offset, qg_jtype_name(v->type));
  if (qg_safetensors_dtype_from_name(v->s, out) == 0 && strlen(v->s) == v->len) return QG_OK;
  for (size_t i = 0; i < sizeof st_foreign / sizeof st_foreign[0]; i++)
    if (strcmp(v->s, st_foreign[i]) == 0)
      return qg_fail(QG_ERR_UNSUPPORTED, "%s: tensor '%s': dtype %s is not supported (F32, F16, "
                     "BF16, F64, I8, U8, I16, I32, I64, BOOL are)", file, tn, v->s);
  return qg_fail(QG_ERR_INPUT, "%s: tensor '%s': offset %zu: unknown dtype \"%s\"", file, tn,
                 v->offset, v->s);
}

static qg_status parse_shape(const char *file, const char *tn, const qg_jnode *v, st_entry *e) {
  if (v->type != QG_JARR)
    return qg_fail(QG_ERR_INPUT, "%s: tensor '%s': offset %zu: shape must be an array, found %s",
                   file, tn, v->offset, qg_jtype_name(v->type));
  if (v->len > QG_MAX_DIMS)
    return qg_fail(QG_ERR_UNSUPPORTED, "%s: tensor '%s': shape has %zu dims, at most %d supported",
                   file, tn, v->len, QG_MAX_DIMS);
  e->ndim = 0;
  for (const qg_jnode *d = v->child; d; d = d->next) {
    if ((e->shape[e->ndim] = json_uint(d)) < 0)
      return qg_fail(QG_ERR_INPUT, "%s: tensor '%s': offset %zu: shape[%d] must be a non-negative "
                     "integer within int64", file, tn, d->offset, e->ndim);
    e->ndim++;
  }
  return QG_OK;
}

static qg_status parse_offsets(const char *file, const char *tn, const qg_jnode *v, st_entry *e) {
  int64_t b = -1, x = -1;
  if (v->type == QG_JARR && v->len == 2) {
    b = json_uint(v->child);
    x = json_uint(v->child->next);
  }
  if (b < 0 || x < 0)
    return qg_fail(QG_ERR_INPUT, "%s: tensor '%s': offset %zu: data_offsets must be [begin, end], "
                   "two non-negative integers", file, tn, v->offset);
  e->begin = (uint64_t)b;
  e->end = (uint64_t)x;
  return QG_OK;
}

/* One tensor entry: exactly dtype, shape and data_offsets, consistent with each other and
 * inside the data buffer. */
static qg_status parse_entry(const char *file, const qg_jnode *m, uint64_t data_len, st_entry *e) {
  const char *tn = m->key;
  if (strlen(tn) != m->key_len)
    return qg_fail(QG_ERR_UNSUPPORTED, "%s: offset %zu: tensor name contains a NUL character "
                   "(\\u0000), which we cannot hold", file, m->key_offset);
  if (m->type != QG_JOBJ)
    return qg_fail(QG_ERR_INPUT, "%s: tensor '%s': offset %zu: entry must be an object, found %s",
                   file, tn, m->offset, qg_jtype_name(m->type));
  const qg_jnode *f[3] = {NULL, NULL, NULL};
  static const char *const keys[3] = {"dtype", "shape", "data_offsets"};
  for (const qg_jnode *c = m->child; c; c = c->next) {
    int k = 0;
    while (k < 3 && !(strlen(keys[k]) == c->key_len && strcmp(c->key, keys[k]) == 0)) k++;
    if (k == 3)
      return qg_fail(QG_ERR_INPUT, "%s: tensor '%s': offset %zu: unexpected key \"%s\" (only dtype, "
                     "shape and data_offsets are allowed)", file, tn, c->key_offset, c->key);
    if (f[k])
      return qg_fail(QG_ERR_INPUT, "%s: tensor '%s': offset %zu: duplicate key \"%s\"", file, tn,
                     c->key_offset, keys[k]);
    f[k] = c;
  }
  for (int k = 0; k < 3; k++)
    if (!f[k]) return qg_fail(QG_ERR_INPUT, "%s: tensor '%s': offset %zu: missing \"%s\"", file, tn,
                              m->offset, keys[k]);
  QG_TRY(parse_dtype(file, tn, f[0], &e->dtype));
  QG_TRY(parse_shape(file, tn, f[1], e));
  QG_TRY(parse_offsets(file, tn, f[2], e));
  char sb[256];
  int64_t numel = qg_shape_numel(e->ndim, e->shape);
  uint64_t es = qg_dtype_size(e->dtype), want;
  if (numel < 0 || qg_mul_overflow_u64((uint64_t)numel, es, &want))
    return qg_fail(QG_ERR_INPUT, "%s: tensor '%s': shape %s has too many elements", file, tn,
                   qg_shape_str(e->ndim, e->shape, sb, sizeof sb));
  if (e->begin > e->end)
    return qg_fail(QG_ERR_INPUT, "%s: tensor '%s': data_offsets [%llu, %llu]: begin is after end",
                   file, tn, (unsigned long long)e->begin, (unsigned long long)e->end);
  if (e->end > data_len)
    return qg_fail(QG_ERR_INPUT, "%s: tensor '%s': data_offsets [%llu, %llu] run past the end of "
                   "the %llu-byte data buffer", file, tn, (unsigned long long)e->begin,
                   (unsigned long long)e->end, (unsigned long long)data_len);
  if (e->end - e->begin != want)
    return qg_fail(QG_ERR_INPUT, "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes, but "
                   "shape %s of %s needs %llu", file, tn, (unsigned long long)e->begin,
                   (unsigned long long)e->end, (unsigned long long)(e->end - e->begin),
                   qg_shape_str(e->ndim, e->shape, sb, sizeof sb), st_names[e->dtype],
                   (unsigned long long)want);
  return QG_OK;
}

static qg_status parse_meta(const char *file, const qg_jnode *m, qg_state *st) {
  if (m->type == QG_JNULL) return QG_OK; /* the reference writes Option<map>: null is none */
  if (m->type != QG_JOBJ)
    return qg_fail(QG_ERR_INPUT, "%s: offset %zu: __metadata__ must be an object of strings, "
                   "found %s", file, m->offset, qg_jtype_name(m->type));
  const qg_jnode *dup;
  QG_TRY(qg_jobj_duplicate(m, &dup));
  if (dup)
    return qg_fail(QG_ERR_INPUT, "%s: offset %zu: duplicate __metadata__ key \"%s\"", file,
                   dup->key_offset, dup->key);
  for (const qg_jnode *c = m->child; c; c = c->next) {
    if (c->type != QG_JSTR)
      return qg_fail(QG_ERR_INPUT, "%s: offset %zu: __metadata__ value for \"%s\" must be a "
                     "string, found %s", file, c->offset, c->key, qg_jtype_name(c->type));
    if (strlen(c->key) != c->key_len || strlen(c->s) != c->len)
      return qg_fail(QG_ERR_UNSUPPORTED, "%s: offset %zu: __metadata__ entry contains a NUL "
                     "character (\\u0000), which we cannot hold", file, c->key_offset);
    QG_TRY(qg_state_set_meta(st, c->key, c->s));
  }
  return QG_OK;
}

static int entry_cmp(const void *a, const void *b) {
  const st_entry *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return x->order < y->order ? -1 : x->order > y->order;
}

/* Sorted by offsets, the tensors must tile [0, data_len): each begins where the previous
 * ended (zero-byte tensors included), and the last ends at data_len. */
static qg_status check_tiling(const char *file, const st_entry *e, size_t n, uint64_t data_len) {
  uint64_t pos = 0;
  for (size_t i = 0; i < n; i++) {
    if (e[i].begin < pos)
      return qg_fail(QG_ERR_INPUT, "%s: tensor '%s': data_offsets [%llu, %llu] overlap tensor "
                     "'%s' [%llu, %llu]", file, e[i].m->key, (unsigned long long)e[i].begin,
                     (unsigned long long)e[i].end, e[i - 1].m->key, (unsigned long long)e[i - 1].begin,
                     (unsigned long long)e[i - 1].end);
    if (e[i].begin > pos)
      return qg_fail(QG_ERR_INPUT, "%s: tensor '%s': data_offsets [%llu, %llu] leave a gap: bytes "
                     "[%llu, %llu) of the data buffer belong to no tensor", file, e[i].m->key,
                     (unsigned long long)e[i].begin, (unsigned long long)e[i].end,
                     (unsigned long long)pos, (unsigned long long)e[i].begin);
    pos = e[i].end;
  }
  if (pos != data_len)
    return qg_fail(QG_ERR_INPUT, "%s: bytes [%llu, %llu) at the end of the data buffer belong to "
                   "no tensor%s%s%s", file, (unsigned long long)pos, (unsigned long long)data_len,
                   n ? " (the last is '" : "", n ? e[n - 1].m->key : "", n ? "')" : "");
  return QG_OK;
}

/* Everything after the JSON parse: schema, offsets, and the copy into st. */
static qg_status build_state(const char *file, const qg_jnode *root, const uint8_t *buf,
                             uint64_t data_len, qg_state *st) {
  const qg_jnode *dup;
  QG_TRY(qg_jobj_duplicate(root, &dup));
  if (dup)
    return qg_fail(QG_ERR_INPUT, "%s: offset %zu: duplicate tensor name '%s'", file,
                   dup->key_offset, dup->key);
  st_entry *e = malloc((root->len ? root->len : 1) * sizeof *e);
  if (!e) return qg_fail(QG_ERR_NOMEM, "%s: out of memory for %zu header entries", file, root->len);
  size_t n = 0;
  qg_status s = QG_OK;
  for (const qg_jnode *m = root->child; m && !s; m = m->next) {
    if (m->key_len == strlen(ST_META_KEY) && strcmp(m->key, ST_META_KEY) == 0) {
      s = parse_meta(file, m, st);
      continue;
    }
    e[n].m = m;
    e[n].order = n;
    s = parse_entry(file, m, data_len, &e[n]);
    n++;
  }
  if (!s) {
    qsort(e, n, sizeof *e, entry_cmp);
    s = check_tiling(file, e, n, data_len);
  }
  for (size_t i = 0; i < n && !s; i++) {
    size_t nb = (size_t)(e[i].end - e[i].begin);
    void *p = malloc(nb ? nb : 1);
    if (!p) {
      s = qg_fail(QG_ERR_NOMEM, "%s: tensor '%s': cannot allocate %zu bytes", file, e[i].m->key, nb);
      break;
    }
    if (nb) memcpy(p, buf + e[i].begin, nb);
    s = qg_state_add_owned(st, e[i].m->key, e[i].dtype, e[i].ndim, e[i].shape, p);
    if (s) qg_fail_prefix(s, "%s", file);
  }
  free(e);
  return s;
}

qg_status qg_safetensors_parse(const uint8_t *data, size_t len, const char *name, qg_state *out) {
  qg_state_init(out);
  if (!name) name = "safetensors";
  if (len < 8)
    return qg_fail(QG_ERR_INPUT, "%s: offset 0: %zu bytes, too short for the 8-byte header length",
                   name, len);
  uint64_t n = qg_rd_u64le(data);
  if (n < 2)
    return qg_fail(QG_ERR_INPUT, "%s: offset 0: header length %llu is below the minimum of 2 "
                   "(\"{}\")", name, (unsigned long long)n);
  if (n > QG_SAFETENSORS_MAX_HEADER)
    return qg_fail(QG_ERR_INPUT, "%s: offset 0: header length %llu exceeds the %u-byte limit",
                   name, (unsigned long long)n, QG_SAFETENSORS_MAX_HEADER);
  if (n > len - 8)
    return qg_fail(QG_ERR_INPUT, "%s: offset 0: header length %llu runs past the end of the file "
                   "(%zu bytes follow the length field)", name, (unsigned long long)n, len - 8);
  const char *hdr = (const char *)data + 8;
  qg_jopts o = {.name = name, .base_offset = 8, .max_depth = ST_JSON_DEPTH};
  qg_jdoc doc;
  const qg_jnode *root;
  QG_TRY(qg_jparse(hdr, (size_t)n, &o, &doc, &root));
  qg_status s = QG_OK;
  if (root->type != QG_JOBJ)
    s = qg_fail(QG_ERR_INPUT, "%s: offset 8: header is not a JSON object (found %s)", name,
                qg_jtype_name(root->type));
  else if (hdr[0] != '{') /* the reference insists on it; whitespace is allowed only after */
    s = qg_fail(QG_ERR_INPUT, "%s: offset 8: header must start with '{', found whitespace", name);
  qg_state st;
  qg_state_init(&st);
  if (!s) s = build_state(name, root, data + 8 + n, (uint64_t)(len - 8 - n), &st);
  qg_jdoc_free(&doc);
  if (s) {
    qg_state_free(&st);
    return s;
  }
  *out = st;
  return QG_OK;
}

qg_status qg_safetensors_read(const char *path, qg_state *out) {
  qg_state_init(out);
  qg_mmap m;
  QG_TRY(qg_mmap_open(path, &m));
  qg_status s = qg_safetensors_parse(m.data, m.len, path, out);
  qg_mmap_close(&m);
  return s;
}

/* ---- writing -------------------------------------------------------------------------- */

/* Escapes exactly as serde_json does (the reference writer), so headers match byte for
 * byte: \" \\ \b \f \n \r \t, other control bytes as \u00xx (lower-case hex), the rest
 * (UTF-8 included) verbatim. */
static void put_json_str(qg_buf *b, const char *s) {
  static const char hex[] = "0123456789abcdef";
  qg_buf_byte(b, '"');
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    unsigned c = *p;
    const char *esc = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\b' ? "\\b" : c == '\f' ? "\\f"
                    : c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t" : NULL;
    if (esc) qg_buf_str(b, esc);
    else if (c < 0x20) {
      char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
      qg_buf_append(b, u, 6);
    } else qg_buf_byte(b, (uint8_t)c);
  }
  qg_buf_byte(b, '"');
}

static int str_cmp(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The first string that occurs twice among v[0..n), or NULL (sorts a copy: O(n log n)). */
static qg_status find_dup(char *const *v, int n, const char **dup) {
  *dup = NULL;
  if (n < 2) return QG_OK;
  const char **c = malloc(sizeof *c * (size_t)n);
  if (!c) return qg_fail(QG_ERR_NOMEM, "out of memory");
  memcpy(c, v, sizeof *c * (size_t)n);
  qsort(c, (size_t)n, sizeof *c, str_cmp);
  for (int i = 1; i < n && !*dup; i++)
    if (strcmp(c[i], c[i - 1]) == 0) *dup = c[i];
  free(c);
  return QG_OK;
}

static qg_status check_utf8(const char *what, const char *s) {
  size_t n = strlen(s);
  size_t ok = qg_utf8_valid_prefix((const uint8_t *)s, n);
  if (ok != n) return qg_fail(QG_ERR_INPUT, "%s is not valid UTF-8 (byte %zu)", what, ok);
  return QG_OK;
}

/* Checks one tensor of a state about to be written. */
static qg_status check_tensor(const qg_tensor *t, int i) {
  if (!t->name) return qg_fail(QG_ERR_INPUT, "tensor #%d has no name", i);
  const char *tn = t->name;
  if (strcmp(tn, ST_META_KEY) == 0)
    return qg_fail(QG_ERR_INPUT, "tensor '%s': the name is reserved for metadata", tn);
  char what[64];
  snprintf(what, sizeof what, "the name of tensor #%d", i);
  QG_TRY(check_utf8(what, tn));
  if ((unsigned)t->dtype >= QG_DTYPE_COUNT)
    return qg_fail(QG_ERR_INPUT, "tensor '%s': invalid dtype %d", tn, (int)t->dtype);
  if (t->device != QG_DEV_HOST)
    return qg_fail(QG_ERR_UNSUPPORTED, "tensor '%s': lives on a device; copy it to the host first", tn);
  int64_t numel = t->ndim >= 0 && t->ndim <= QG_MAX_DIMS ? qg_shape_numel(t->ndim, t->shape) : -1;
  if (numel < 0 || (uint64_t)numel > SIZE_MAX / qg_dtype_size(t->dtype) ||
      (size_t)numel * qg_dtype_size(t->dtype) != t->nbytes)
    return qg_fail(QG_ERR_INPUT, "tensor '%s': shape, dtype and byte size (%zu) disagree", tn, t->nbytes);
  if (t->nbytes && !t->data) return qg_fail(QG_ERR_INPUT, "tensor '%s': no data", tn);
  return QG_OK;
}

/* Validates s and builds the padded header JSON into hdr. */
static qg_status build_header(const qg_state *s, qg_buf *hdr) {
  for (int i = 0; i < s->n; i++) QG_TRY(check_tensor(&s->t[i], i));
  for (int i = 0; i < s->n_meta; i++) {
    QG_TRY(check_utf8("a metadata key", s->meta_keys[i]));
    QG_TRY(check_utf8("a metadata value", s->meta_vals[i]));
  }
  char **names = malloc(sizeof *names * (size_t)(s->n ? s->n : 1));
  if (!names) return qg_fail(QG_ERR_NOMEM, "out of memory");
  for (int i = 0; i < s->n; i++) names[i] = s->t[i].name;
  const char *dup;
  qg_status st = find_dup(names, s->n, &dup);
  free(names);
  QG_TRY(st);
  if (dup) return qg_fail(QG_ERR_INPUT, "duplicate tensor name '%s'", dup);
  QG_TRY(find_dup(s->meta_keys, s->n_meta, &dup));
  if (dup) return qg_fail(QG_ERR_INPUT, "duplicate metadata key '%s'", dup);

  qg_buf_byte(hdr, '{');
  if (s->n_meta) {
    qg_buf_str(hdr, "\"" ST_META_KEY "\":{");
    for (int i = 0; i < s->n_meta; i++) {
      if (i) qg_buf_byte(hdr, ',');
      put_json_str(hdr, s->meta_keys[i]);
      qg_buf_byte(hdr, ':');
      put_json_str(hdr, s->meta_vals[i]);
    }
    qg_buf_byte(hdr, '}');
  }
  uint64_t off = 0;
  for (int i = 0; i < s->n; i++) {
    const qg_tensor *t = &s->t[i];
    if (i || s->n_meta) qg_buf_byte(hdr, ',');
    put_json_str(hdr, t->name);
    qg_buf_printf(hdr, ":{\"dtype\":\"%s\",\"shape\":[", st_names[t->dtype]);
    for (int d = 0; d < t->ndim; d++) qg_buf_printf(hdr, "%s%lld", d ? "," : "", (long long)t->shape[d]);
    qg_buf_printf(hdr, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                  (unsigned long long)(off + t->nbytes));
    off += t->nbytes; /* cannot overflow: the tensors are all in memory at once */
  }
  qg_buf_byte(hdr, '}');
  /* The reference pads the JSON with spaces so the data buffer starts 8-byte aligned. */
  while (hdr->n % 8) qg_buf_byte(hdr, ' ');
  QG_TRY(qg_buf_status(hdr));
  if (hdr->n > QG_SAFETENSORS_MAX_HEADER)
    return qg_fail(QG_ERR_INPUT, "the header would be %zu bytes, above the %u-byte limit readers "
                   "accept", hdr->n, QG_SAFETENSORS_MAX_HEADER);
  return QG_OK;
}

qg_status qg_safetensors_serialize(const qg_state *s, qg_buf *out) {
  qg_buf hdr;
  qg_buf_init(&hdr);
  qg_status st = build_header(s, &hdr);
  if (!st) {
    qg_buf_u64le(out, hdr.n);
    qg_buf_append(out, hdr.p, hdr.n);
    for (int i = 0; i < s->n; i++)
      if (s->t[i].nbytes) qg_buf_append(out, s->t[i].data, s->t[i].nbytes);
    st = qg_buf_status(out);
  }
  qg_buf_free(&hdr);
  return st;
}

qg_status qg_safetensors_write(const char *path, const qg_state *s) {
  qg_buf hdr;
  qg_buf_init(&hdr);
  qg_status st = build_header(s, &hdr);
  if (st) {
    qg_buf_free(&hdr);
    return qg_fail_prefix(st, "%s", path);
  }
  qg_atomic_file a;
  st = qg_atomic_open(&a, path);
  if (st) {
    qg_buf_free(&hdr);
    return st;
  }
  uint8_t len8[8];
  for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)hdr.n >> (8 * i));
  st = qg_atomic_write(&a, len8, 8);
  if (!st) st = qg_atomic_write(&a, hdr.p, hdr.n);
  /* Tensor data streams straight from the state: no second copy of the model in memory. */
  for (int i = 0; i < s->n && !st; i++)
    if (s->t[i].nbytes) st = qg_atomic_write(&a, s->t[i].data, s->t[i].nbytes);
  qg_buf_free(&hdr);
  if (st) {
    qg_atomic_abort(&a);
    return st;
  }
  return qg_atomic_commit(&a);
}
