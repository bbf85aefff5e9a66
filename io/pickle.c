#include "io/pickle.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define QG_PKL_MAX_OBJECTS 50000000u
#define QG_PKL_MAX_MEMO (1u << 24)

/* Storage classes torch writes in persistent ids, and their element types. */
static const struct {
  const char *name;
  qg_dtype dtype;
} storage_types[] = {
    {"FloatStorage", QG_F32}, {"DoubleStorage", QG_F64}, {"HalfStorage", QG_F16},
    {"BFloat16Storage", QG_BF16}, {"CharStorage", QG_I8}, {"ByteStorage", QG_U8},
    {"ShortStorage", QG_I16},   {"IntStorage", QG_I32},   {"LongStorage", QG_I64},
    {"BoolStorage", QG_BOOL},
};
#define N_STORAGE_TYPES (sizeof storage_types / sizeof storage_types[0])

const char *qg_pkl_storage_name(qg_dtype t) {
  for (size_t i = 0; i < N_STORAGE_TYPES; i++)
    if (storage_types[i].dtype == t) return storage_types[i].name;
  return NULL;
}

const char *qg_py_kind_name(qg_py_kind k) {
  static const char *names[] = {"None", "bool", "int", "float", "str", "bytes", "tuple",
                                "list", "dict", "global", "storage", "tensor", "mark"};
  return (unsigned)k <= QG_PY_MARK ? names[k] : "?";
}

typedef struct {
  const uint8_t *d;
  size_t len, pos;
  const char *fname;
  qg_pickle *pk;
  qg_py **stack;
  size_t sn, scap;
  qg_py **memo;
  size_t mn, mcap;
} vm;

static qg_status perr(vm *m, size_t at, const char *what, const char *detail) {
  return qg_fail(QG_ERR_INPUT, "%s: pickle offset %zu: %s%s%s", m->fname, at, what, detail ? ": " : "",
                 detail ? detail : "");
}

static qg_py *newobj(vm *m, qg_py_kind k) {
  qg_pickle *p = m->pk;
  if (p->n_all >= QG_PKL_MAX_OBJECTS) return NULL;
  if (p->n_all == p->cap_all) {
    size_t cap = p->cap_all ? p->cap_all * 2 : 256;
    qg_py **a = realloc(p->all, cap * sizeof *a);
    if (!a) return NULL;
    p->all = a;
    p->cap_all = cap;
  }
  qg_py *o = calloc(1, sizeof *o);
  if (!o) return NULL;
  o->kind = k;
  p->all[p->n_all++] = o;
  return o;
}

static int push(vm *m, qg_py *o) {
  if (!o) return 0;
  if (m->sn == m->scap) {
    size_t cap = m->scap ? m->scap * 2 : 64;
    qg_py **s = realloc(m->stack, cap * sizeof *s);
    if (!s) return 0;
    m->stack = s;
    m->scap = cap;
  }
  m->stack[m->sn++] = o;
  return 1;
}

static int add_item(qg_py *c, qg_py *it) {
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 8;
    qg_py **a = realloc(c->items, cap * sizeof *a);
    if (!a) return 0;
    c->items = a;
    c->cap = cap;
  }
  c->items[c->n++] = it;
  return 1;
}

static int keys_equal(const qg_py *a, const qg_py *b) {
  if (a->kind != b->kind) return 0;
  switch (a->kind) {
    case QG_PY_STR:
    case QG_PY_BYTES: return a->len == b->len && memcmp(a->s, b->s, a->len) == 0;
    case QG_PY_INT:
    case QG_PY_BOOL: return a->i == b->i;
    case QG_PY_NONE: return 1;
    default: return a == b;
  }
}

/* d[k] = v with Python's overwrite semantics. */
static int dict_set(qg_py *d, qg_py *k, qg_py *v) {
  for (size_t i = 0; i + 1 < d->n; i += 2)
    if (keys_equal(d->items[i], k)) {
      d->items[i + 1] = v;
      return 1;
    }
  return add_item(d, k) && add_item(d, v);
}

const qg_py *qg_py_dict_get(const qg_py *d, const char *key) {
  if (!d || d->kind != QG_PY_DICT) return NULL;
  size_t kl = strlen(key);
  for (size_t i = 0; i + 1 < d->n; i += 2) {
    const qg_py *k = d->items[i];
    if (k->kind == QG_PY_STR && k->len == kl && memcmp(k->s, key, kl) == 0) return d->items[i + 1];
  }
  return NULL;
}

/* Index of the topmost MARK, or -1. */
static long find_mark(vm *m) {
  for (size_t i = m->sn; i-- > 0;)
    if (m->stack[i]->kind == QG_PY_MARK) return (long)i;
  return -1;
}

static int need(vm *m, size_t n) { return m->len - m->pos >= n; }

static qg_py *make_str(vm *m, qg_py_kind k, const uint8_t *p, size_t n) {
  qg_py *o = newobj(m, k);
  if (!o) return NULL;
  o->s = qg_strndup((const char *)p, n);
  if (!o->s) return NULL;
  o->len = n;
  return o;
}

static int is_allowed_global(const char *g) {
  if (!strcmp(g, "collections.OrderedDict") || !strcmp(g, "torch._utils._rebuild_tensor_v2") ||
      !strcmp(g, "torch._utils._rebuild_parameter"))
    return 1;
  if (!strncmp(g, "torch.", 6))
    for (size_t i = 0; i < N_STORAGE_TYPES; i++)
      if (!strcmp(g + 6, storage_types[i].name)) return 1;
  return 0;
}

static qg_status make_global(vm *m, size_t at, const char *mod, size_t ml, const char *name, size_t nl) {
  char g[256];
  if (ml + nl + 2 > sizeof g) return perr(m, at, "global name too long", NULL);
  memcpy(g, mod, ml);
  g[ml] = '.';
  memcpy(g + ml + 1, name, nl);
  g[ml + nl + 1] = 0;
  if (strlen(g) != ml + nl + 1) return perr(m, at, "global name contains a NUL byte", NULL);
  if (!is_allowed_global(g))
    return qg_fail(QG_ERR_INPUT,
                   "%s: pickle offset %zu: global '%s' is not allowed (a state dict needs only "
                   "collections.OrderedDict, torch._utils._rebuild_tensor_v2 and torch.*Storage; nothing is executed)",
                   m->fname, at, g);
  qg_py *o = newobj(m, QG_PY_GLOBAL);
  if (!o || !(o->s = qg_strdup(g)) || !push(m, o)) return qg_fail(QG_ERR_NOMEM, "out of memory");
  o->len = strlen(g);
  return QG_OK;
}

static int tuple_of_ints(const qg_py *t, int64_t *out, int *n) {
  if (t->kind != QG_PY_TUPLE || t->n > QG_MAX_DIMS) return 0;
  for (size_t i = 0; i < t->n; i++) {
    if (t->items[i]->kind != QG_PY_INT) return 0;
    out[i] = t->items[i]->i;
  }
  *n = (int)t->n;
  return 1;
}

/* REDUCE: apply one of the allowed callables. */
static qg_status reduce(vm *m, size_t at, qg_py *fn, qg_py *args) {
  if (fn->kind != QG_PY_GLOBAL) return perr(m, at, "REDUCE on a non-callable", qg_py_kind_name(fn->kind));
  if (args->kind != QG_PY_TUPLE) return perr(m, at, "REDUCE arguments are not a tuple", NULL);
  if (!strcmp(fn->s, "collections.OrderedDict")) {
    if (args->n != 0) return perr(m, at, "OrderedDict() with arguments is unsupported", NULL);
    return push(m, newobj(m, QG_PY_DICT)) ? QG_OK : qg_fail(QG_ERR_NOMEM, "out of memory");
  }
  if (!strcmp(fn->s, "torch._utils._rebuild_parameter")) {
    if (args->n < 1 || args->items[0]->kind != QG_PY_TENSOR)
      return perr(m, at, "_rebuild_parameter expects a tensor", NULL);
    return push(m, args->items[0]) ? QG_OK : qg_fail(QG_ERR_NOMEM, "out of memory");
  }
  if (!strcmp(fn->s, "torch._utils._rebuild_tensor_v2")) {
    if (args->n < 4) return perr(m, at, "_rebuild_tensor_v2 expects (storage, offset, size, stride, ...)", NULL);
    qg_py *st = args->items[0], *off = args->items[1];
    qg_py *t = newobj(m, QG_PY_TENSOR);
    if (!t) return qg_fail(QG_ERR_NOMEM, "out of memory");
    int nd1 = 0, nd2 = 0;
    if (st->kind != QG_PY_STORAGE || off->kind != QG_PY_INT || off->i < 0 ||
        !tuple_of_ints(args->items[2], t->shape, &nd1) || !tuple_of_ints(args->items[3], t->stride, &nd2) ||
        nd1 != nd2)
      return perr(m, at, "_rebuild_tensor_v2 arguments are malformed (storage, offset, size, stride)", NULL);
    t->storage = st;
    t->dtype = st->dtype;
    t->storage_offset = off->i;
    t->ndim = nd1;
    return push(m, t) ? QG_OK : qg_fail(QG_ERR_NOMEM, "out of memory");
  }
  return perr(m, at, "REDUCE on a global that is not callable here", fn->s);
}

/* BINPERSID: ('storage', torch.XStorage, key, location, numel). */
static qg_status persistent(vm *m, size_t at, qg_py *pid) {
  if (pid->kind != QG_PY_TUPLE || pid->n != 5 || pid->items[0]->kind != QG_PY_STR ||
      strcmp(pid->items[0]->s, "storage") != 0 || pid->items[1]->kind != QG_PY_GLOBAL ||
      pid->items[2]->kind != QG_PY_STR || pid->items[4]->kind != QG_PY_INT || pid->items[4]->i < 0)
    return perr(m, at, "persistent id is not ('storage', type, key, location, numel)", NULL);
  const char *g = pid->items[1]->s;
  qg_py *st = newobj(m, QG_PY_STORAGE);
  if (!st) return qg_fail(QG_ERR_NOMEM, "out of memory");
  int found = 0;
  for (size_t i = 0; i < N_STORAGE_TYPES; i++)
    if (!strncmp(g, "torch.", 6) && !strcmp(g + 6, storage_types[i].name)) {
      st->dtype = storage_types[i].dtype;
      found = 1;
    }
  if (!found) return perr(m, at, "persistent id names an unknown storage type", g);
  st->s = pid->items[2]->s;
  st->len = pid->items[2]->len;
  st->numel = pid->items[4]->i;
  return push(m, st) ? QG_OK : qg_fail(QG_ERR_NOMEM, "out of memory");
}

static qg_status run(vm *m) {
  for (;;) {
    size_t at = m->pos;
    if (!need(m, 1)) return perr(m, at, "unexpected end of data (no STOP opcode)", NULL);
    uint8_t op = m->d[m->pos++];
    const uint8_t *a = m->d + m->pos;
    qg_py *o;
    switch (op) {
      case 0x80: /* PROTO */
        if (!need(m, 1)) return perr(m, at, "truncated PROTO", NULL);
        if (a[0] < 2 || a[0] > 5) return qg_fail(QG_ERR_UNSUPPORTED, "%s: pickle offset %zu: protocol %u (2-5 supported)", m->fname, at, a[0]);
        m->pos += 1;
        break;
      case 0x95: /* FRAME: a length hint only */
        if (!need(m, 8)) return perr(m, at, "truncated FRAME", NULL);
        m->pos += 8;
        break;
      case '.': /* STOP */
        if (m->sn != 1 || m->stack[0]->kind == QG_PY_MARK)
          return perr(m, at, "STOP with a malformed stack (expected exactly one object)", NULL);
        m->pk->root = m->stack[0];
        return QG_OK;
      case '(': if (!push(m, newobj(m, QG_PY_MARK))) goto oom; break;
      case '}': if (!push(m, newobj(m, QG_PY_DICT))) goto oom; break;
      case ']': if (!push(m, newobj(m, QG_PY_LIST))) goto oom; break;
      case ')': if (!push(m, newobj(m, QG_PY_TUPLE))) goto oom; break;
      case 'N': if (!push(m, newobj(m, QG_PY_NONE))) goto oom; break;
      case 0x88:
      case 0x89:
        if (!(o = newobj(m, QG_PY_BOOL))) goto oom;
        o->i = op == 0x88;
        if (!push(m, o)) goto oom;
        break;
      case 'J': case 'K': case 'M': { /* BININT, BININT1, BININT2 */
        size_t n = op == 'J' ? 4 : op == 'K' ? 1 : 2;
        if (!need(m, n)) return perr(m, at, "truncated integer", NULL);
        if (!(o = newobj(m, QG_PY_INT))) goto oom;
        o->i = op == 'J' ? (int32_t)qg_rd_u32le(a) : op == 'K' ? a[0] : qg_rd_u16le(a);
        m->pos += n;
        if (!push(m, o)) goto oom;
        break;
      }
      case 0x8a: case 0x8b: { /* LONG1, LONG4: little-endian two's complement */
        size_t hl = op == 0x8a ? 1 : 4;
        if (!need(m, hl)) return perr(m, at, "truncated LONG", NULL);
        uint64_t n = op == 0x8a ? a[0] : qg_rd_u32le(a);
        if (n > 8) return qg_fail(QG_ERR_UNSUPPORTED, "%s: pickle offset %zu: integer of %llu bytes (at most 8 supported)", m->fname, at, (unsigned long long)n);
        if (!need(m, hl + n)) return perr(m, at, "truncated LONG", NULL);
        uint64_t v = 0;
        for (size_t i = 0; i < n; i++) v |= (uint64_t)a[hl + i] << (8 * i);
        if (n > 0 && n < 8 && (a[hl + n - 1] & 0x80)) v |= ~0ull << (8 * n);
        if (!(o = newobj(m, QG_PY_INT))) goto oom;
        memcpy(&o->i, &v, 8);
        m->pos += hl + n;
        if (!push(m, o)) goto oom;
        break;
      }
      case 'G': { /* BINFLOAT, big-endian */
        if (!need(m, 8)) return perr(m, at, "truncated BINFLOAT", NULL);
        uint64_t v = 0;
        for (int i = 0; i < 8; i++) v = (v << 8) | a[i];
        if (!(o = newobj(m, QG_PY_FLOAT))) goto oom;
        memcpy(&o->f, &v, 8);
        m->pos += 8;
        if (!push(m, o)) goto oom;
        break;
      }
      case 'X': case 0x8c: case 0x8d: case 'B': case 'C': case 0x8e: { /* strings, bytes */
        size_t hl = (op == 0x8c || op == 'C') ? 1 : (op == 0x8d || op == 0x8e) ? 8 : 4;
        if (!need(m, hl)) return perr(m, at, "truncated string length", NULL);
        uint64_t n = hl == 1 ? a[0] : hl == 4 ? qg_rd_u32le(a) : qg_rd_u64le(a);
        if (n > m->len - m->pos - hl) return perr(m, at, "string length runs past the end of the pickle", NULL);
        qg_py_kind k = (op == 'B' || op == 'C' || op == 0x8e) ? QG_PY_BYTES : QG_PY_STR;
        if (!push(m, make_str(m, k, a + hl, (size_t)n))) goto oom;
        m->pos += hl + (size_t)n;
        break;
      }
      case 'q': case 'r': case 0x94: { /* BINPUT, LONG_BINPUT, MEMOIZE */
        size_t n = op == 'q' ? 1 : op == 'r' ? 4 : 0;
        if (!need(m, n)) return perr(m, at, "truncated memo index", NULL);
        if (m->sn == 0 || m->stack[m->sn - 1]->kind == QG_PY_MARK)
          return perr(m, at, "memo store without an object on the stack", NULL);
        uint64_t idx = op == 'q' ? a[0] : op == 'r' ? qg_rd_u32le(a) : m->mn;
        if (idx >= QG_PKL_MAX_MEMO) return perr(m, at, "memo index too large", NULL);
        if (idx >= m->mcap) {
          size_t cap = m->mcap ? m->mcap : 64;
          while (cap <= idx) cap *= 2;
          qg_py **mm = realloc(m->memo, cap * sizeof *mm);
          if (!mm) goto oom;
          memset(mm + m->mcap, 0, (cap - m->mcap) * sizeof *mm);
          m->memo = mm;
          m->mcap = cap;
        }
        m->memo[idx] = m->stack[m->sn - 1];
        if (idx >= m->mn) m->mn = idx + 1;
        m->pos += n;
        break;
      }
      case 'h': case 'j': { /* BINGET, LONG_BINGET */
        size_t n = op == 'h' ? 1 : 4;
        if (!need(m, n)) return perr(m, at, "truncated memo index", NULL);
        uint64_t idx = op == 'h' ? a[0] : qg_rd_u32le(a);
        if (idx >= m->mn || !m->memo[idx]) return perr(m, at, "memo get of an unset index", NULL);
        if (!push(m, m->memo[idx])) goto oom;
        m->pos += n;
        break;
      }
      case 'c': { /* GLOBAL "module\nname\n" */
        const uint8_t *nl1 = memchr(a, '\n', m->len - m->pos);
        if (!nl1) return perr(m, at, "truncated GLOBAL", NULL);
        const uint8_t *nm = nl1 + 1;
        const uint8_t *nl2 = memchr(nm, '\n', (size_t)(m->d + m->len - nm));
        if (!nl2) return perr(m, at, "truncated GLOBAL", NULL);
        QG_TRY(make_global(m, at, (const char *)a, (size_t)(nl1 - a), (const char *)nm, (size_t)(nl2 - nm)));
        m->pos = (size_t)(nl2 + 1 - m->d);
        break;
      }
      case 0x93: { /* STACK_GLOBAL */
        if (m->sn < 2) return perr(m, at, "STACK_GLOBAL needs two strings", NULL);
        qg_py *name = m->stack[m->sn - 1], *mod = m->stack[m->sn - 2];
        if (name->kind != QG_PY_STR || mod->kind != QG_PY_STR) return perr(m, at, "STACK_GLOBAL needs two strings", NULL);
        m->sn -= 2;
        QG_TRY(make_global(m, at, mod->s, mod->len, name->s, name->len));
        break;
      }
      case 't': case 'l': case 'd': case 'e': case 'u': { /* from MARK: TUPLE LIST DICT APPENDS SETITEMS */
        long mk = find_mark(m);
        if (mk < 0) return perr(m, at, "opcode needs a MARK", NULL);
        size_t first = (size_t)mk + 1, cnt = m->sn - first;
        qg_py *target;
        if (op == 'e' || op == 'u') {
          if (mk == 0) return perr(m, at, "APPENDS/SETITEMS without a target", NULL);
          target = m->stack[mk - 1];
          if (op == 'e' && target->kind != QG_PY_LIST) return perr(m, at, "APPENDS on a non-list", qg_py_kind_name(target->kind));
          if (op == 'u' && target->kind != QG_PY_DICT) return perr(m, at, "SETITEMS on a non-dict", qg_py_kind_name(target->kind));
        } else {
          target = newobj(m, op == 't' ? QG_PY_TUPLE : op == 'l' ? QG_PY_LIST : QG_PY_DICT);
          if (!target) goto oom;
        }
        if ((op == 'd' || op == 'u') && cnt % 2) return perr(m, at, "odd number of items for a dict", NULL);
        for (size_t i = first; i < m->sn; i++)
          if (m->stack[i]->kind == QG_PY_MARK) return perr(m, at, "MARK inside a collection", NULL);
        for (size_t i = first; i < m->sn; i += (op == 'd' || op == 'u') ? 2 : 1) {
          int ok = (op == 'd' || op == 'u') ? dict_set(target, m->stack[i], m->stack[i + 1]) : add_item(target, m->stack[i]);
          if (!ok) goto oom;
        }
        m->sn = (size_t)mk;
        if (op != 'e' && op != 'u' && !push(m, target)) goto oom;
        break;
      }
      case 0x85: case 0x86: case 0x87: { /* TUPLE1..3 */
        size_t n = (size_t)(op - 0x84);
        if (m->sn < n) return perr(m, at, "TUPLEn with too few items", NULL);
        if (!(o = newobj(m, QG_PY_TUPLE))) goto oom;
        for (size_t i = m->sn - n; i < m->sn; i++) {
          if (m->stack[i]->kind == QG_PY_MARK) return perr(m, at, "MARK inside a tuple", NULL);
          if (!add_item(o, m->stack[i])) goto oom;
        }
        m->sn -= n;
        if (!push(m, o)) goto oom;
        break;
      }
      case 'a': { /* APPEND */
        if (m->sn < 2 || m->stack[m->sn - 2]->kind != QG_PY_LIST || m->stack[m->sn - 1]->kind == QG_PY_MARK)
          return perr(m, at, "APPEND needs a list and an item", NULL);
        if (!add_item(m->stack[m->sn - 2], m->stack[m->sn - 1])) goto oom;
        m->sn--;
        break;
      }
      case 's': { /* SETITEM */
        if (m->sn < 3 || m->stack[m->sn - 3]->kind != QG_PY_DICT || m->stack[m->sn - 1]->kind == QG_PY_MARK ||
            m->stack[m->sn - 2]->kind == QG_PY_MARK)
          return perr(m, at, "SETITEM needs a dict, a key and a value", NULL);
        if (!dict_set(m->stack[m->sn - 3], m->stack[m->sn - 2], m->stack[m->sn - 1])) goto oom;
        m->sn -= 2;
        break;
      }
      case 'R': { /* REDUCE */
        if (m->sn < 2) return perr(m, at, "REDUCE needs a callable and arguments", NULL);
        qg_py *args = m->stack[m->sn - 1], *fn = m->stack[m->sn - 2];
        m->sn -= 2;
        QG_TRY(reduce(m, at, fn, args));
        break;
      }
      case 'b': { /* BUILD: object state (e.g. a state dict's _metadata) is not needed */
        if (m->sn < 2 || m->stack[m->sn - 1]->kind == QG_PY_MARK || m->stack[m->sn - 2]->kind == QG_PY_MARK)
          return perr(m, at, "BUILD needs an object and a state", NULL);
        m->sn--;
        break;
      }
      case 'Q': { /* BINPERSID */
        if (m->sn < 1) return perr(m, at, "BINPERSID with an empty stack", NULL);
        qg_py *pid = m->stack[--m->sn];
        QG_TRY(persistent(m, at, pid));
        break;
      }
      case '0': /* POP */
        if (m->sn < 1) return perr(m, at, "POP on an empty stack", NULL);
        m->sn--;
        break;
      default: {
        char what[64];
        snprintf(what, sizeof what, "opcode 0x%02x", op);
        return qg_fail(QG_ERR_INPUT,
                       "%s: pickle offset %zu: %s is not allowed in a state dict (nothing is executed)",
                       m->fname, at, what);
      }
    }
  }
oom:
  return qg_fail(QG_ERR_NOMEM, "%s: out of memory (or over %u objects) while unpickling", m->fname, QG_PKL_MAX_OBJECTS);
}

qg_status qg_pickle_load(const uint8_t *data, size_t len, const char *fname, qg_pickle *out) {
  memset(out, 0, sizeof *out);
  vm m = {.d = data, .len = len, .fname = fname ? fname : "<memory>", .pk = out};
  qg_status s = run(&m);
  free(m.stack);
  free(m.memo);
  if (s) qg_pickle_free(out);
  return s;
}

void qg_pickle_free(qg_pickle *p) {
  for (size_t i = 0; i < p->n_all; i++) {
    qg_py *o = p->all[i];
    if (o->kind != QG_PY_STORAGE) free(o->s); /* a storage borrows its key string */
    free(o->items);
    free(o);
  }
  free(p->all);
  memset(p, 0, sizeof *p);
}

/* ---- writer ------------------------------------------------------------------------- */

void qg_pkl_begin(qg_pkl_writer *w) {
  memset(w, 0, sizeof *w);
  qg_buf_init(&w->out);
  qg_buf_byte(&w->out, 0x80);
  qg_buf_byte(&w->out, 2);
}

qg_status qg_pkl_end(qg_pkl_writer *w) {
  qg_buf_byte(&w->out, '.');
  if (w->depth != 0) return qg_fail(QG_ERR_INTERNAL, "pickle writer: unbalanced dict begin/end");
  return qg_buf_status(&w->out);
}

static void put_global(qg_pkl_writer *w, const char *mod, const char *name) {
  qg_buf_byte(&w->out, 'c');
  qg_buf_str(&w->out, mod);
  qg_buf_byte(&w->out, '\n');
  qg_buf_str(&w->out, name);
  qg_buf_byte(&w->out, '\n');
}

void qg_pkl_dict_begin(qg_pkl_writer *w, int ordered) {
  if (ordered) {
    put_global(w, "collections", "OrderedDict");
    qg_buf_byte(&w->out, ')');
    qg_buf_byte(&w->out, 'R');
  } else {
    qg_buf_byte(&w->out, '}');
  }
  qg_buf_byte(&w->out, '(');
  w->depth++;
}

void qg_pkl_dict_end(qg_pkl_writer *w) {
  qg_buf_byte(&w->out, 'u');
  w->depth--;
}

void qg_pkl_str(qg_pkl_writer *w, const char *s) {
  size_t n = strlen(s);
  qg_buf_byte(&w->out, 'X');
  qg_buf_u32le(&w->out, (uint32_t)n);
  qg_buf_append(&w->out, s, n);
}

void qg_pkl_int(qg_pkl_writer *w, int64_t v) {
  if (v >= 0 && v < 256) {
    qg_buf_byte(&w->out, 'K');
    qg_buf_byte(&w->out, (uint8_t)v);
  } else if (v >= 0 && v < 65536) {
    qg_buf_byte(&w->out, 'M');
    qg_buf_u16le(&w->out, (uint16_t)v);
  } else if (v >= INT32_MIN && v <= INT32_MAX) {
    qg_buf_byte(&w->out, 'J');
    qg_buf_u32le(&w->out, (uint32_t)(int32_t)v);
  } else {
    qg_buf_byte(&w->out, 0x8a);
    qg_buf_byte(&w->out, 8);
    qg_buf_u64le(&w->out, (uint64_t)v);
  }
}

void qg_pkl_bool(qg_pkl_writer *w, int v) { qg_buf_byte(&w->out, v ? 0x88 : 0x89); }
void qg_pkl_none(qg_pkl_writer *w) { qg_buf_byte(&w->out, 'N'); }

static void put_int_tuple(qg_pkl_writer *w, int n, const int64_t *v) {
  qg_buf_byte(&w->out, '(');
  for (int i = 0; i < n; i++) qg_pkl_int(w, v[i]);
  qg_buf_byte(&w->out, 't');
}

void qg_pkl_tensor(qg_pkl_writer *w, const char *key, qg_dtype dtype, int ndim, const int64_t *shape) {
  int64_t numel = qg_shape_numel(ndim, shape), stride[QG_MAX_DIMS], acc = 1;
  for (int i = ndim - 1; i >= 0; i--) {
    stride[i] = acc;
    acc *= shape[i];
  }
  /* _rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict()) as torch writes it */
  put_global(w, "torch._utils", "_rebuild_tensor_v2");
  qg_buf_byte(&w->out, '(');
  qg_buf_byte(&w->out, '(');
  qg_pkl_str(w, "storage");
  put_global(w, "torch", qg_pkl_storage_name(dtype));
  qg_pkl_str(w, key);
  qg_pkl_str(w, "cpu");
  qg_pkl_int(w, numel);
  qg_buf_byte(&w->out, 't');
  qg_buf_byte(&w->out, 'Q');
  qg_pkl_int(w, 0);
  put_int_tuple(w, ndim, shape);
  put_int_tuple(w, ndim, stride);
  qg_pkl_bool(w, 0);
  put_global(w, "collections", "OrderedDict");
  qg_buf_byte(&w->out, ')');
  qg_buf_byte(&w->out, 'R');
  qg_buf_byte(&w->out, 't');
  qg_buf_byte(&w->out, 'R');
}
