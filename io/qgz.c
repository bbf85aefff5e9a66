/* The .qgz artifact (see io/qgz.h): encode, compress, read with every length checked. */
#include "io/qgz.h"
#include "io/compress_memo.h"

#include <brotli/decode.h>
#include <brotli/encode.h>
#include <lzma.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "core/file.h"
#include "core/threadpool.h"
#include "io/qgz_rans.h"
#include "io/rans.h"

/* ---- compressors -------------------------------------------------------------------- */

const char *qg_compressor_name(qg_compressor c) {
  static const char *n[] = {"none", "zstd-22", "brotli-11", "xz-9e", "zlib-9", "rans"};
  return (unsigned)c < QG_COMP_COUNT ? n[c] : "?";
}

qg_status qg_compressor_from_name(const char *name, qg_compressor *out) {
  static const char *n[] = {"none", "zstd", "brotli", "xz", "zlib", "rans"};
  for (int i = 0; i < QG_COMP_COUNT; i++)
    if (!strcmp(name, n[i]) || !strcmp(name, qg_compressor_name((qg_compressor)i))) {
      *out = (qg_compressor)i;
      return QG_OK;
    }
  return qg_fail(QG_ERR_INPUT, "unknown compressor '%s' (valid: zstd, brotli, xz, zlib, rans, none)", name);
}

static int g_brotli_quality = 11, g_rans_inline = 1;

void qg_qgz_rans_set_inline(int on) { g_rans_inline = on; }

void qg_qgz_set_brotli_quality(int q) { g_brotli_quality = q < 0 ? 0 : q > 11 ? 11 : q; }

static qg_status rans_bytes(const uint8_t *in, size_t n, uint8_t **out, size_t *out_len) {
  uint32_t *sym = malloc((n + 1) * sizeof *sym);
  if (!sym) return qg_fail(QG_ERR_NOMEM, "out of memory (rANS symbols)");
  for (size_t i = 0; i < n; i++) sym[i] = in[i];
  qg_buf b;
  qg_buf_init(&b);
  qg_status s = qg_rans_compress(sym, n, 256, 0, &b);
  free(sym);
  if (s) return qg_buf_free(&b), s;
  *out = b.p ? b.p : malloc(1), *out_len = b.n;
  return *out ? QG_OK : qg_fail(QG_ERR_NOMEM, "out of memory");
}

qg_status qg_compress(qg_compressor c, const uint8_t *in, size_t n, uint8_t **out, size_t *out_len) {
  if (c == QG_COMP_RANS) return rans_bytes(in, n, out, out_len);
  /* the slow ones are remembered by content (io/compress_memo.h): the same bytes back */
  qg_memo_key key;
  int memo = (c == QG_COMP_BROTLI || c == QG_COMP_ZSTD || c == QG_COMP_XZ) &&
             qg_memo_key_of((int)c, c == QG_COMP_BROTLI ? g_brotli_quality : 0, in, n, &key);
  if (memo && qg_memo_get(&key, out, out_len)) return QG_OK;
  size_t cap = n + n / 2 + 4096;
  if (c == QG_COMP_ZSTD) cap = ZSTD_compressBound(n);
  if (c == QG_COMP_XZ) cap = lzma_stream_buffer_bound(n);
  if (c == QG_COMP_ZLIB) cap = compressBound((uLong)n);
  uint8_t *o = malloc(cap ? cap : 1);
  if (!o) return qg_fail(QG_ERR_NOMEM, "out of memory (compression buffer)");
  size_t len = cap;
  int ok = 1;
  switch (c) {
    case QG_COMP_NONE: memcpy(o, in, n), len = n; break;
    case QG_COMP_ZSTD: len = ZSTD_compress(o, cap, in, n, 22), ok = !ZSTD_isError(len); break;
    case QG_COMP_BROTLI:
      ok = BrotliEncoderCompress(g_brotli_quality, BROTLI_MAX_WINDOW_BITS, BROTLI_MODE_GENERIC, n, in, &len, o) == BROTLI_TRUE;
      break;
    case QG_COMP_XZ: {
      size_t pos = 0;
      ok = lzma_easy_buffer_encode(9 | LZMA_PRESET_EXTREME, LZMA_CHECK_CRC64, NULL, in, n, o, &pos, cap) == LZMA_OK;
      len = pos;
      break;
    }
    case QG_COMP_ZLIB: {
      uLongf dl = (uLongf)cap;
      ok = compress2(o, &dl, in, (uLong)n, 9) == Z_OK;
      len = dl;
      break;
    }
    default: ok = 0;
  }
  if (!ok) {
    free(o);
    return qg_fail(QG_ERR_INTERNAL, "%s compression of %zu bytes failed", qg_compressor_name(c), n);
  }
  if (memo) qg_memo_put(&key, o, len);
  *out = o, *out_len = len;
  return QG_OK;
}

qg_status qg_decompress(qg_compressor c, const uint8_t *in, size_t n, uint8_t *out, size_t expect, const char *fname) {
  int ok = 0;
  if (c == QG_COMP_RANS) {
    uint32_t *sym = malloc((expect + 1) * sizeof *sym);
    if (!sym) return qg_fail(QG_ERR_NOMEM, "out of memory (rANS symbols)");
    size_t used = 0;
    ok = qg_rans_decompress(in, n, &used, sym, expect, 256) == QG_OK && used == n;
    for (size_t i = 0; ok && i < expect; i++) out[i] = (uint8_t)sym[i];
    free(sym);
  }
  switch (c) {
    case QG_COMP_NONE: ok = n == expect; if (ok) memcpy(out, in, n); break;
    case QG_COMP_ZSTD: {
      size_t r = ZSTD_decompress(out, expect, in, n);
      ok = !ZSTD_isError(r) && r == expect;
      break;
    }
    case QG_COMP_BROTLI: {
      size_t dl = expect;
      ok = BrotliDecoderDecompress(n, in, &dl, out) == BROTLI_DECODER_RESULT_SUCCESS && dl == expect;
      break;
    }
    case QG_COMP_XZ: {
      uint64_t memlimit = (uint64_t)256 << 20; /* xz -9e needs ~65 MiB */
      size_t ip = 0, op = 0;
      ok = lzma_stream_buffer_decode(&memlimit, 0, NULL, in, &ip, n, out, &op, expect) == LZMA_OK && ip == n &&
           op == expect;
      break;
    }
    case QG_COMP_ZLIB: {
      uLongf dl = (uLongf)expect;
      ok = uncompress(out, &dl, in, (uLong)n) == Z_OK && dl == expect;
      break;
    }
    default: break;
  }
  if (!ok)
    return qg_fail(QG_ERR_INPUT, "%s: offset %d: %s payload is corrupt or does not inflate to the %zu bytes the header "
                   "says", fname, QG_QGZ_HEADER, qg_compressor_name(c), expect);
  return QG_OK;
}

/* ---- payload ------------------------------------------------------------------------ */

static void put_varint(qg_buf *b, uint64_t v) {
  while (v >= 0x80) {
    qg_buf_byte(b, (uint8_t)(v | 0x80));
    v >>= 7;
  }
  qg_buf_byte(b, (uint8_t)v);
}

static void put_str(qg_buf *b, const char *s) {
  size_t n = s ? strlen(s) : 0;
  put_varint(b, n);
  qg_buf_append(b, s, n);
}

static int64_t code_bytes(int64_t count, int bits, qg_code_layout layout) {
  return layout == QG_LAYOUT_PACKED ? (count * bits + 7) / 8 : count * ((bits + 7) / 8);
}

static void put_codes(qg_buf *b, const qg_qsection *s, qg_code_layout layout) {
  const uint32_t *c = s->data;
  if (layout == QG_LAYOUT_BYTES) {
    int nb = (s->bits + 7) / 8;
    for (int64_t i = 0; i < s->count; i++)
      for (int k = 0; k < nb; k++) qg_buf_byte(b, (uint8_t)(c[i] >> (8 * k)));
    return;
  }
  uint64_t acc = 0;
  int have = 0;
  uint64_t mask = s->bits == 32 ? 0xffffffffull : (((uint64_t)1 << s->bits) - 1);
  for (int64_t i = 0; i < s->count; i++) {
    acc |= ((uint64_t)c[i] & mask) << have;
    have += s->bits;
    while (have >= 8) {
      qg_buf_byte(b, (uint8_t)acc);
      acc >>= 8, have -= 8;
    }
  }
  if (have) qg_buf_byte(b, (uint8_t)acc);
}

/* v2 (rans) form of a 16-bit section: deltas mod 2^16, low bytes then high bytes */
static void put_u16_delta_planes(qg_buf *b, const uint16_t *h, int64_t n) {
  for (int plane = 0; plane < 2; plane++) {
    uint16_t prev = 0;
    for (int64_t j = 0; j < n; j++) {
      uint16_t d = (uint16_t)(h[j] - prev);
      prev = h[j];
      qg_buf_byte(b, (uint8_t)(d >> (8 * plane)));
    }
  }
}

/* Format 3: a code section of up to 16 bits carries a byte saying where its codes are. */
static int v3_flagged(const qg_qsection *s) { return s->kind == QG_SEC_CODES && s->bits >= 1 && s->bits <= 16; }

/* v2: the rANS meta of format version v2 (2 or 3), 0 for format 1; inl (format 3, NULL:
 * none): per section in payload order, 1 = codes inline here rather than in the code block */
static qg_status payload_v(const qg_qtensor *const *q, int n, qg_code_layout layout, int v2, qg_buf *b,
                           size_t *scale_raw, const uint8_t *inl, int planes) {
  int idx = 0;
  if (v2 == QG_QGZ_VERSION_RANS) planes = 1;
  for (int i = 0; i < n; i++) {
    const qg_qtensor *t = q[i];
    put_str(b, t->name);
    put_str(b, t->method);
    put_str(b, t->options);
    qg_buf_byte(b, (uint8_t)t->orig_dtype);
    qg_buf_byte(b, (uint8_t)t->ndim);
    for (int d = 0; d < t->ndim; d++) put_varint(b, (uint64_t)t->shape[d]);
    qg_buf_byte(b, (uint8_t)t->nsec);
    for (int k = 0; k < t->nsec; k++, idx++) {
      const qg_qsection *s = &t->sec[k];
      size_t nl = strlen(s->name);
      qg_buf_byte(b, (uint8_t)nl);
      qg_buf_append(b, s->name, nl);
      qg_buf_byte(b, (uint8_t)s->kind);
      qg_buf_byte(b, (uint8_t)s->bits);
      put_varint(b, (uint64_t)s->count);
      if (s->kind != QG_SEC_CODES && s->kind != QG_SEC_RAW && scale_raw)
        *scale_raw += (size_t)qg_qsection_packed_bytes(s);
      int ext = v2 && qg_qgz_rans_external(s, v2) && !(inl && inl[idx]);
      if (s->kind == QG_SEC_CODES) {
        if (!ext) put_codes(b, s, layout);
      } else if (v2 && planes && (s->kind == QG_SEC_F16 || s->kind == QG_SEC_BF16)) {
        put_u16_delta_planes(b, s->data, s->count);
      } else if (s->kind == QG_SEC_F16 || s->kind == QG_SEC_BF16) {
        const uint16_t *h = s->data;
        for (int64_t j = 0; j < s->count; j++) qg_buf_u16le(b, h[j]);
      } else if (s->kind == QG_SEC_F32) {
        const float *f = s->data;
        for (int64_t j = 0; j < s->count; j++) {
          uint32_t u;
          memcpy(&u, &f[j], 4);
          qg_buf_u32le(b, u);
        }
      } else {
        qg_buf_append(b, s->data, (size_t)s->count);
      }
    }
  }
  return qg_buf_status(b);
}

qg_status qg_qgz_payload(const qg_qtensor *const *q, int n, qg_code_layout layout, qg_buf *b) {
  return payload_v(q, n, layout, 0, b, NULL, NULL, 0);
}

/* ---- encode --------------------------------------------------------------------------- */

static qg_status encode_layout(const qg_qtensor *const *q, int n, qg_compressor comp, qg_code_layout layout,
                               uint8_t **file, size_t *len, size_t *raw) {
  qg_buf p;
  qg_buf_init(&p);
  qg_status s = qg_qgz_payload(q, n, layout, &p);
  if (!s && p.n > QG_QGZ_MAX_PAYLOAD) s = qg_fail(QG_ERR_NOMEM, "artifact payload of %zu bytes is too large", p.n);
  uint8_t *z = NULL;
  size_t zn = 0;
  if (!s) s = qg_compress(comp, p.p ? p.p : (const uint8_t *)"", p.n, &z, &zn);
  if (!s) {
    uint8_t *f = malloc(QG_QGZ_HEADER + zn);
    if (!f) {
      s = qg_fail(QG_ERR_NOMEM, "out of memory");
    } else {
      memcpy(f, QG_QGZ_MAGIC, 4);
      qg_wr_u16le(f + 4, QG_QGZ_VERSION);
      f[6] = (uint8_t)comp, f[7] = (uint8_t)layout;
      qg_wr_u32le(f + 8, (uint32_t)n);
      qg_wr_u32le(f + 12, (uint32_t)crc32(0L, p.p ? p.p : (const Bytef *)"", (uInt)p.n));
      qg_wr_u32le(f + 16, (uint32_t)p.n), qg_wr_u32le(f + 20, (uint32_t)((uint64_t)p.n >> 32));
      qg_wr_u32le(f + 24, (uint32_t)zn), qg_wr_u32le(f + 28, (uint32_t)((uint64_t)zn >> 32));
      memcpy(f + QG_QGZ_HEADER, z, zn);
      *file = f, *len = QG_QGZ_HEADER + zn, *raw = p.n;
    }
  }
  free(z);
  qg_buf_free(&p);
  return s;
}

static void put_header(uint8_t *f, int version, qg_compressor comp, qg_code_layout layout, int n, const qg_buf *p,
                       size_t zn) {
  memcpy(f, QG_QGZ_MAGIC, 4);
  qg_wr_u16le(f + 4, (uint16_t)version);
  f[6] = (uint8_t)comp, f[7] = (uint8_t)layout;
  qg_wr_u32le(f + 8, (uint32_t)n);
  qg_wr_u32le(f + 12, (uint32_t)crc32(0L, p->p ? p->p : (const Bytef *)"", (uInt)p->n));
  qg_wr_u32le(f + 16, (uint32_t)p->n), qg_wr_u32le(f + 20, (uint32_t)((uint64_t)p->n >> 32));
  qg_wr_u32le(f + 24, (uint32_t)zn), qg_wr_u32le(f + 28, (uint32_t)((uint64_t)zn >> 32));
}

/* One format-3 image with the sections inl marks inline in the meta (NULL: none). */
static qg_status encode_rans_with(const qg_qtensor *const *q, int n, const uint8_t *inl, int planes, qg_buf *body,
                                  qg_qgz_info *inf, uint8_t *fell_back) {
  qg_buf meta;
  qg_buf_init(&meta), qg_buf_init(body);
  uint8_t *z = NULL;
  size_t zn = 0;
  qg_qgz_rans_stats st;
  inf->scale_raw = 0;
  qg_status s = payload_v(q, n, QG_LAYOUT_PACKED, QG_QGZ_VERSION_WIDE, &meta, &inf->scale_raw, inl, planes);
  if (!s && meta.n > QG_QGZ_MAX_PAYLOAD) s = qg_fail(QG_ERR_NOMEM, "artifact payload of %zu bytes is too large", meta.n);
  if (!s) s = qg_compress(QG_COMP_BROTLI, meta.p ? meta.p : (const uint8_t *)"", meta.n, &z, &zn);
  if (!s) {
    qg_buf_zeros(body, QG_QGZ_HEADER);
    qg_varint_put(body, zn);
    qg_buf_append(body, z, zn);
    inf->meta_compressed = body->n - QG_QGZ_HEADER;
    /* the code block opens with where each code section of <= 16 bits is: a bit each,
     * 1 = in the block (kept out of the meta, where it would disturb brotli's matches) */
    size_t before = body->n;
    qg_buf_byte(body, (uint8_t)(planes ? QG_QGZ_META_PLANES : 0));
    int nf = 0;
    for (int i = 0; i < n; i++)
      for (int k = 0; k < q[i]->nsec; k++) nf += v3_flagged(&q[i]->sec[k]);
    qg_varint_put(body, (uint64_t)nf);
    uint8_t acc = 0;
    int na = 0;
    for (int i = 0, idx = 0; i < n; i++)
      for (int k = 0; k < q[i]->nsec; k++, idx++) {
        if (!v3_flagged(&q[i]->sec[k])) continue;
        acc |= (uint8_t)(!(inl && inl[idx]) << na);
        if (++na == 8) qg_buf_byte(body, acc), acc = 0, na = 0;
      }
    if (na) qg_buf_byte(body, acc);
    size_t place = body->n - before;
    s = qg_qgz_rans_encode(q, n, inl, body, &st, fell_back);
    st.stream_headers += place;
  }
  if (!s) s = qg_buf_status(body);
  if (!s) {
    put_header(body->p, QG_QGZ_VERSION_WIDE, QG_COMP_RANS, QG_LAYOUT_PACKED, n, &meta, body->n - QG_QGZ_HEADER);
    inf->layout = QG_LAYOUT_PACKED;
    inf->raw_bytes = inf->packed_raw = meta.n;
    inf->packed_compressed = body->n - QG_QGZ_HEADER;
    inf->file_bytes = body->n;
    inf->code_payload = st.code_payload, inf->code_tables = st.tables, inf->code_stream_headers = st.stream_headers;
    inf->streams_ctx = st.ctx, inf->streams_wide = st.wide, inf->streams_own = st.own, inf->streams_shared = st.shared;
    inf->streams_brotli = st.brotli, inf->shared_tables = st.shared_tables, inf->streams_permuted = st.permuted;
    inf->streams_transposed = st.transposed;
    inf->streams_inline = 0;
    if (inl)
      for (int i = 0, idx = 0; i < n; i++)
        for (int k = 0; k < q[i]->nsec; k++, idx++) inf->streams_inline += inl[idx] && v3_flagged(&q[i]->sec[k]);
  } else {
    qg_buf_free(body);
  }
  free(z);
  qg_buf_free(&meta);
  return s;
}

/* Format 3: header, varint meta bytes, brotli meta, code block (io/qgz_rans.h). The
 * smallest of a few images, which differ in which code sections stay inline in the meta
 * (where brotli models them with everything else): all of them (about the brotli-11
 * artifact, so that rans is never much larger than brotli on a whole file; made with the
 * f16 sections delta-planed and as they are, and the better form is kept for the rest),
 * none (each stream in the block falls back to its own brotli stream where that is
 * smaller), those fallbacks (over codes in order), the fallbacks with every narrow
 * (<= 12-bit) or every wide section, and every brotli stream, transposed ones included. */
/* One candidate image of encode_rans, made on the pool. */
typedef struct {
  const qg_qtensor *const *q;
  int n, planes;
  const uint8_t *inl;
  uint8_t *fell_back;
  qg_buf out;
  qg_qgz_info inf;
  int made;
} rans_image;

static qg_status image_task(void *v, int64_t k) {
  rans_image *im = (rans_image *)v + k;
  qg_status s = encode_rans_with(im->q, im->n, im->inl, im->planes, &im->out, &im->inf, im->fell_back);
  im->made = !s;
  return s;
}

/* Makes images im[0..k) on the pool, then keeps the first smallest of best and them in
 * order (the outcome of trying them one after another). */
static qg_status take_images(rans_image *im, int k, qg_buf *best, qg_qgz_info *bi) {
  qg_status s = qg_parallel_try(k, image_task, im);
  for (int i = 0; i < k; i++) {
    if (!s && im[i].out.n < best->n) qg_buf_free(best), *best = im[i].out, *bi = im[i].inf;
    else if (im[i].made) qg_buf_free(&im[i].out);
  }
  return s;
}

static qg_status encode_rans(const qg_qtensor *const *q, int n, uint8_t **file, size_t *len, qg_qgz_info *inf) {
  int ns = 0;
  for (int i = 0; i < n; i++) ns += q[i]->nsec;
  enum { NC = 4 };
  uint8_t *fb = calloc((size_t)ns + 1, 1), *m = calloc((size_t)(NC + 1) * ((size_t)ns + 1), 1);
  if (!fb || !m) return free(fb), free(m), qg_fail(QG_ERR_NOMEM, "out of memory");
  qg_buf best;
  qg_qgz_info bi = *inf;
  uint8_t *all = m + (size_t)NC * (ns + 1);
  memset(all, 1, (size_t)ns + 1);
  if (!g_rans_inline) {
    free(fb), free(m);
    qg_status s = encode_rans_with(q, n, NULL, 1, &best, &bi, NULL);
    if (!s) *inf = bi, *file = best.p, *len = best.n;
    return s;
  }
  /* every code section inline, f16 sections delta-planed and as they are: the planes of
   * the smaller are used from here on */
  rans_image im[NC] = {{0}};
  for (int k = 0; k < 2; k++) im[k] = (rans_image){.q = q, .n = n, .planes = !k, .inl = all, .inf = *inf};
  qg_status s = qg_parallel_try(2, image_task, im);
  int planes = 1;
  if (!s) {
    best = im[0].out, bi = im[0].inf;
    if (im[1].out.n < best.n) qg_buf_free(&best), best = im[1].out, bi = im[1].inf, planes = 0;
    else qg_buf_free(&im[1].out);
  } else {
    for (int k = 0; k < 2; k++)
      if (im[k].made) qg_buf_free(&im[k].out);
    return free(fb), free(m), s;
  }
  /* none inline (each stream's own brotli fallback where that is smaller) */
  im[0] = (rans_image){.q = q, .n = n, .planes = planes, .inl = NULL, .fell_back = fb, .inf = *inf};
  s = take_images(im, 1, &best, &bi);
  for (int c = 0; c < NC; c++)
    for (int i = 0, idx = 0; i < n; i++)
      for (int k = 0; k < q[i]->nsec; k++, idx++) {
        int wide = q[i]->sec[k].bits > QG_QGZ_RANS_MAX_BITS;
        m[(size_t)c * (ns + 1) + idx] = (uint8_t)(fb[idx] == 1 || (c == 1 && !wide) || (c == 2 && wide) || (c == 3 && fb[idx]));
      }
  int k = 0;
  for (int c = 0; !s && c < NC; c++) {
    uint8_t *mc = m + (size_t)c * (ns + 1);
    int seen = 0, dup = 0; /* skip masks of no section and masks already tried */
    for (int i = 0; i < ns; i++) seen |= mc[i];
    for (int d = 0; d <= NC && !dup; d++) dup = d != c && (d < c || d == NC) && !memcmp(mc, m + (size_t)d * (ns + 1), (size_t)ns);
    if (!seen || dup) continue;
    im[k++] = (rans_image){.q = q, .n = n, .planes = planes, .inl = mc, .inf = *inf};
  }
  if (!s) s = take_images(im, k, &best, &bi);
  free(fb), free(m);
  if (s) return qg_buf_free(&best), s;
  *inf = bi, *file = best.p, *len = best.n;
  return QG_OK;
}

typedef struct {
  const qg_qtensor *const *q;
  int n;
  qg_compressor comp;
  uint8_t *f[2];
  size_t fl[2], raw[2];
  const int *which; /* task k makes layout which[k] */
} layout_job;

static qg_status layout_task(void *v, int64_t k) {
  layout_job *j = v;
  int l = j->which[k];
  return encode_layout(j->q, j->n, j->comp, (qg_code_layout)l, &j->f[l], &j->fl[l], &j->raw[l]);
}

qg_status qg_qgz_encode(const qg_qtensor *const *q, int n, qg_compressor comp, qg_code_layout layout, uint8_t **file,
                        size_t *len, qg_qgz_info *info) {
  qg_qgz_info inf = {0};
  if (comp == QG_COMP_RANS) {
    inf.comp = comp;
    QG_TRY(encode_rans(q, n, file, len, &inf));
    if (info) *info = inf;
    return QG_OK;
  }
  inf.comp = comp;
  /* the layouts asked for, compressed side by side on the pool */
  layout_job lj = {q, n, comp, {NULL, NULL}, {0, 0}, {0, 0}, NULL};
  int ls[2], nl = 0;
  for (int l = 0; l < 2; l++)
    if (layout == QG_LAYOUT_AUTO || layout == (qg_code_layout)l) ls[nl++] = l;
  lj.which = ls;
  qg_status s = qg_parallel_try(nl, layout_task, &lj);
  uint8_t **f = lj.f;
  size_t *fl = lj.fl, *raw = lj.raw;
  if (s) return free(f[0]), free(f[1]), s;
  int pick = !f[0] ? 1 : !f[1] ? 0 : (fl[1] < fl[0] ? 1 : 0); /* ties keep bit-packed */
  inf.layout = (qg_code_layout)pick;
  inf.packed_raw = raw[0], inf.bytes_raw = raw[1];
  inf.packed_compressed = f[0] ? fl[0] - QG_QGZ_HEADER : 0;
  inf.bytes_compressed = f[1] ? fl[1] - QG_QGZ_HEADER : 0;
  inf.raw_bytes = raw[pick];
  inf.file_bytes = fl[pick];
  free(f[1 - pick]);
  *file = f[pick], *len = fl[pick];
  if (info) *info = inf;
  return QG_OK;
}

qg_status qg_qgz_write(const char *path, const qg_qtensor *const *q, int n, qg_compressor comp,
                       qg_code_layout layout, qg_qgz_info *info) {
  uint8_t *f;
  size_t len;
  QG_TRY(qg_qgz_encode(q, n, comp, layout, &f, &len, info));
  qg_status s = qg_write_file_atomic(path, f, len);
  free(f);
  return s;
}

/* ---- read ----------------------------------------------------------------------------- */

void qg_qgz_free(qg_qgz *a) {
  for (int i = 0; i < a->n; i++) qg_qtensor_free(&a->t[i]);
  free(a->t);
  memset(a, 0, sizeof *a);
}

int qg_qgz_sniff(const uint8_t *head, size_t n) { return n >= 4 && !memcmp(head, QG_QGZ_MAGIC, 4); }

typedef struct {
  const uint8_t *p;
  size_t n, off;
  const char *fname, *tensor;
  int v2; /* format version 2 or 3 (0 for 1): external codes, delta-planed 16-bit sections */
  int planes;   /* f16/bf16 sections as delta byte planes (formats 2 and 3) */
  uint8_t *ext; /* format 3: per section read, whether its codes are in the code block */
  size_t nsec, cap_sec;
  const uint8_t *flags; /* format 3: the code block's placement bits */
  uint64_t nflag, flag_i;
  uint64_t extent_lim; /* bound on a tensor's element count (allocation guard) */
  int64_t numel;       /* of the tensor being read */
} rd;

static qg_status bad(rd *r, const char *what) {
  if (r->tensor)
    return qg_fail(QG_ERR_INPUT, "%s: payload offset %zu (tensor '%s'): %s", r->fname, r->off, r->tensor, what);
  return qg_fail(QG_ERR_INPUT, "%s: payload offset %zu: %s", r->fname, r->off, what);
}

static qg_status get_u8(rd *r, uint8_t *v) {
  if (r->off >= r->n) return bad(r, "truncated");
  *v = r->p[r->off++];
  return QG_OK;
}

static qg_status get_varint(rd *r, uint64_t *v) {
  uint64_t x = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    uint8_t b = 0;
    QG_TRY(get_u8(r, &b));
    x |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *v = x;
      return QG_OK;
    }
  }
  return bad(r, "varint too long");
}

static qg_status get_str(rd *r, char **out, size_t max, int allow_empty) {
  uint64_t n = 0;
  QG_TRY(get_varint(r, &n));
  if (n > max || n > r->n - r->off) return bad(r, "string length beyond the payload or limit");
  if (!n && !allow_empty) return bad(r, "empty string");
  if (memchr(r->p + r->off, 0, (size_t)n)) return bad(r, "NUL byte in a string");
  if (!(*out = qg_strndup((const char *)r->p + r->off, (size_t)n))) return qg_fail(QG_ERR_NOMEM, "out of memory");
  r->off += (size_t)n;
  return QG_OK;
}

static qg_status read_section(rd *r, qg_qtensor *t, qg_code_layout layout) {
  uint8_t nl = 0, kind = 0, bits = 0;
  QG_TRY(get_u8(r, &nl));
  if (nl == 0 || nl >= QG_SEC_NAME_MAX || nl > r->n - r->off) return bad(r, "bad section name length");
  char name[QG_SEC_NAME_MAX];
  memcpy(name, r->p + r->off, nl);
  name[nl] = 0;
  if (strlen(name) != nl) return bad(r, "NUL byte in a section name");
  r->off += nl;
  QG_TRY(get_u8(r, &kind));
  QG_TRY(get_u8(r, &bits));
  uint64_t count = 0;
  QG_TRY(get_varint(r, &count));
  if (kind >= QG_SEC_KIND_COUNT) return bad(r, "unknown section kind");
  if (kind == QG_SEC_CODES ? (bits < 1 || bits > 32) : bits != 0) return bad(r, "bad code width");
  if (count > ((uint64_t)1 << 36)) return bad(r, "section too large");
  int ext = r->v2 == QG_QGZ_VERSION_RANS && kind == QG_SEC_CODES && bits <= QG_QGZ_RANS_MAX_BITS;
  if (r->v2 >= QG_QGZ_VERSION_WIDE && kind == QG_SEC_CODES && bits <= 16) {
    if (r->flag_i >= r->nflag) return bad(r, "more code sections than the code block places");
    ext = (r->flags[r->flag_i / 8] >> (r->flag_i % 8)) & 1;
    r->flag_i++;
  }
  if (r->v2 >= QG_QGZ_VERSION_WIDE) {
    if (r->nsec == r->cap_sec) {
      size_t nc = r->cap_sec ? 2 * r->cap_sec : 64;
      uint8_t *ne = realloc(r->ext, nc);
      if (!ne) return qg_fail(QG_ERR_NOMEM, "out of memory");
      r->ext = ne, r->cap_sec = nc;
    }
    r->ext[r->nsec++] = (uint8_t)ext;
  }
  uint64_t need = ext ? 0
                  : kind == QG_SEC_CODES ? (uint64_t)code_bytes((int64_t)count, bits, layout)
                  : kind == QG_SEC_F32 ? count * 4
                  : kind == QG_SEC_RAW ? count
                                       : count * 2;
  if (need > r->n - r->off) return bad(r, "section data runs past the payload");
  /* external codes take no payload bytes (a one-symbol stream codes in none), so they are
   * bounded by the tensor's own size; transforms may pad to twice it */
  if (ext && count > 2 * (uint64_t)r->numel + 1024) return bad(r, "code section larger than its tensor");
  if (qg_qtensor_find(t, name)) return bad(r, "duplicate section");
  if (t->nsec >= QG_QT_MAX_SECTIONS) return bad(r, "too many sections");
  void *d;
  QG_TRY(qg_qtensor_add(t, name, (qg_sec_kind)kind, bits, (int64_t)count, &d));
  const uint8_t *p = r->p + r->off;
  if (ext) {
    /* filled from the code block */
  } else if (r->v2 && r->planes && (kind == QG_SEC_F16 || kind == QG_SEC_BF16)) {
    uint16_t *h = d, prev = 0;
    for (uint64_t i = 0; i < count; i++) h[i] = prev = (uint16_t)(prev + (p[i] | (p[count + i] << 8)));
  } else if (kind == QG_SEC_CODES) {
    uint32_t *c = d;
    if (layout == QG_LAYOUT_BYTES) {
      int nb = (bits + 7) / 8;
      uint64_t lim = bits == 32 ? 0xffffffffull : ((uint64_t)1 << bits) - 1;
      for (uint64_t i = 0; i < count; i++) {
        uint64_t v = 0;
        for (int k = 0; k < nb; k++) v |= (uint64_t)p[i * nb + k] << (8 * k);
        if (v > lim) return bad(r, "code wider than its section's bit width");
        c[i] = (uint32_t)v;
      }
    } else {
      uint64_t acc = 0, mask = bits == 32 ? 0xffffffffull : (((uint64_t)1 << bits) - 1);
      int have = 0;
      size_t k = 0;
      for (uint64_t i = 0; i < count; i++) {
        while (have < bits) acc |= (uint64_t)p[k++] << have, have += 8;
        c[i] = (uint32_t)(acc & mask);
        acc >>= bits, have -= bits;
      }
    }
  } else if (kind == QG_SEC_F16 || kind == QG_SEC_BF16) {
    uint16_t *h = d;
    for (uint64_t i = 0; i < count; i++) h[i] = qg_rd_u16le(p + 2 * i);
  } else if (kind == QG_SEC_F32) {
    float *f = d;
    for (uint64_t i = 0; i < count; i++) {
      uint32_t u = qg_rd_u32le(p + 4 * i);
      memcpy(&f[i], &u, 4);
    }
  } else {
    memcpy(d, p, (size_t)count);
  }
  r->off += (size_t)need;
  return QG_OK;
}

static qg_status read_tensor(rd *r, qg_qtensor *t, qg_code_layout layout) {
  r->tensor = NULL;
  QG_TRY(get_str(r, &t->name, 4096, 0));
  r->tensor = t->name;
  QG_TRY(get_str(r, &t->method, 64, 0));
  QG_TRY(get_str(r, &t->options, 4096, 1));
  uint8_t dt = 0, nd = 0, ns = 0;
  QG_TRY(get_u8(r, &dt));
  if (dt >= QG_DTYPE_COUNT) return bad(r, "unknown dtype");
  t->orig_dtype = (qg_dtype)dt;
  QG_TRY(get_u8(r, &nd));
  if (nd > QG_MAX_DIMS) return bad(r, "too many dims");
  t->ndim = nd;
  for (int d = 0; d < nd; d++) {
    uint64_t v = 0;
    QG_TRY(get_varint(r, &v));
    if (v > ((uint64_t)1 << 40)) return bad(r, "dim too large");
    t->shape[d] = (int64_t)v;
  }
  /* The product of the nonzero dims, checked: a 0 dim makes the count 0, but the
   * dequantizers still size rows and columns from the others. */
  uint64_t extent = 1;
  for (int d = 0; d < nd; d++)
    if (t->shape[d] && qg_mul_overflow_u64(extent, (uint64_t)t->shape[d], &extent))
      return bad(r, "shape dims multiply past 64 bits");
  /* no quantizer stores fewer than 1 bit per 8 weights: a cheap bound on allocations */
  if (qg_shape_numel(nd, t->shape) < 0 || extent > r->extent_lim)
    return bad(r, "shape larger than the payload can hold");
  qg_matrix_view(nd, t->shape, &t->rows, &t->cols);
  r->numel = (int64_t)extent;
  QG_TRY(get_u8(r, &ns));
  if (ns > QG_QT_MAX_SECTIONS) return bad(r, "too many sections");
  for (int k = 0; k < ns; k++) QG_TRY(read_section(r, t, layout));
  return QG_OK;
}

qg_status qg_qgz_read_mem(const uint8_t *data, size_t len, const char *fname, qg_qgz *out) {
  memset(out, 0, sizeof *out);
  if (len < QG_QGZ_HEADER) return qg_fail(QG_ERR_INPUT, "%s: offset 0: %zu bytes is shorter than the %d-byte .qgz header",
                                          fname, len, QG_QGZ_HEADER);
  if (!qg_qgz_sniff(data, len)) return qg_fail(QG_ERR_INPUT, "%s: offset 0: not a .qgz artifact (bad magic)", fname);
  unsigned ver = qg_rd_u16le(data + 4);
  if (ver != QG_QGZ_VERSION && ver != QG_QGZ_VERSION_RANS && ver != QG_QGZ_VERSION_WIDE)
    return qg_fail(QG_ERR_UNSUPPORTED, "%s: offset 4: format version %u (this build reads %d to %d)", fname, ver,
                   QG_QGZ_VERSION, QG_QGZ_VERSION_WIDE);
  if (data[6] >= QG_COMP_COUNT) return qg_fail(QG_ERR_INPUT, "%s: offset 6: unknown compressor %u", fname, data[6]);
  if ((ver != QG_QGZ_VERSION) != (data[6] == QG_COMP_RANS))
    return qg_fail(QG_ERR_INPUT, "%s: offset 6: compressor %s does not match format version %u", fname,
                   qg_compressor_name((qg_compressor)data[6]), ver);
  if (data[7] > 1) return qg_fail(QG_ERR_INPUT, "%s: offset 7: unknown code layout %u", fname, data[7]);
  uint32_t count = qg_rd_u32le(data + 8), crc = qg_rd_u32le(data + 12);
  uint64_t raw = qg_rd_u64le(data + 16), zn = qg_rd_u64le(data + 24);
  if (zn != len - QG_QGZ_HEADER)
    return qg_fail(QG_ERR_INPUT, "%s: offset 24: header says %llu compressed bytes, the file holds %zu (truncated?)",
                   fname, (unsigned long long)zn, len - QG_QGZ_HEADER);
  if (raw > QG_QGZ_MAX_PAYLOAD) return qg_fail(QG_ERR_INPUT, "%s: offset 16: payload of %llu bytes beyond the limit",
                                               fname, (unsigned long long)raw);
  /* checked before allocating and inflating: a few KiB claiming a 2 GiB payload is a bomb */
  if (data[6] != QG_COMP_NONE && raw > zn * QG_MAX_INFLATE_RATIO + QG_INFLATE_SLACK)
    return qg_fail(QG_ERR_INPUT, "%s: offset 16: payload of %llu bytes from %llu compressed is more than %dx "
                   "(refusing a possible decompression bomb)", fname, (unsigned long long)raw,
                   (unsigned long long)zn, QG_MAX_INFLATE_RATIO);
  out->comp = (qg_compressor)data[6];
  out->layout = (qg_code_layout)data[7];
  out->raw_bytes = raw;
  /* version 2: the brotli meta first, the code block after it */
  const uint8_t *body = data + QG_QGZ_HEADER;
  size_t bn = (size_t)zn, mpos = 0;
  qg_compressor mcomp = out->comp;
  if (ver != QG_QGZ_VERSION) {
    uint64_t mz;
    if (qg_varint_get(body, bn, &mpos, &mz) || mz > bn - mpos)
      return qg_fail(QG_ERR_INPUT, "%s: offset %d: meta length missing or past the end of the file", fname, QG_QGZ_HEADER);
    if (raw > mz * QG_MAX_INFLATE_RATIO + QG_INFLATE_SLACK)
      return qg_fail(QG_ERR_INPUT, "%s: offset 16: meta of %llu bytes from %llu compressed is more than %dx", fname,
                     (unsigned long long)raw, (unsigned long long)mz, QG_MAX_INFLATE_RATIO);
    body += mpos, bn = (size_t)mz, mcomp = QG_COMP_BROTLI;
  }
  uint8_t *p = malloc(raw ? (size_t)raw : 1);
  if (!p) return qg_fail(QG_ERR_NOMEM, "out of memory (%llu-byte payload)", (unsigned long long)raw);
  qg_status s = qg_decompress(mcomp, body, bn, p, (size_t)raw, fname);
  if (!s && (uint32_t)crc32(0L, p, (uInt)raw) != crc)
    s = qg_fail(QG_ERR_INPUT, "%s: offset 12: payload CRC-32 mismatch (corrupt file)", fname);
  rd r = {p, (size_t)raw, 0, fname, NULL, ver == QG_QGZ_VERSION ? 0 : (int)ver, 1, NULL, 0, 0, NULL, 0, 0,
          64 * (uint64_t)raw + 1024, 0};
  const uint8_t *cb = body + bn;
  if (!s && ver >= QG_QGZ_VERSION_WIDE) {
    size_t cl = (size_t)(data + len - cb), cp = 1;
    if (!cl || (cb[0] & ~QG_QGZ_META_PLANES))
      s = qg_fail(QG_ERR_INPUT, "%s: code block offset 0: missing or unknown meta options", fname);
    else if (qg_varint_get(cb, cl, &cp, &r.nflag) || r.nflag > 8 * (uint64_t)cl || (r.nflag + 7) / 8 > cl - cp)
      s = qg_fail(QG_ERR_INPUT, "%s: code block offset 1: code placement bits missing or past the end", fname);
    else
      r.planes = cb[0] & QG_QGZ_META_PLANES, r.flags = cb + cp, cb += cp + (size_t)(r.nflag + 7) / 8;
  }
  if (r.v2) r.extent_lim = 64 * (uint64_t)len + ((uint64_t)1 << 24);
  int cap = 0;
  for (uint32_t i = 0; !s && i < count; i++) {
    if ((int)i == cap) { /* grown as tensors are read: the count field is not trusted */
      cap = cap ? 2 * cap : 64;
      qg_qtensor *nt = realloc(out->t, sizeof *nt * (size_t)cap);
      if (!nt) {
        s = qg_fail(QG_ERR_NOMEM, "out of memory");
        break;
      }
      out->t = nt;
    }
    qg_qtensor_init(&out->t[i]);
    out->n = (int)i + 1;
    s = read_tensor(&r, &out->t[i], out->layout);
    for (uint32_t j = 0; !s && j < i; j++)
      if (!strcmp(out->t[j].name, out->t[i].name)) s = bad(&r, "duplicate tensor name");
  }
  r.tensor = NULL;
  if (!s && r.off != r.n) s = bad(&r, "trailing bytes after the last tensor");
  if (!s && r.flag_i != r.nflag) s = bad(&r, "the code block places more code sections than the payload has");
  if (!s && r.v2) {
    s = qg_qgz_rans_decode(cb, (size_t)(data + len - cb), out->t, out->n, fname, r.v2, r.ext);
  }
  free(r.ext);
  free(p);
  if (s) qg_qgz_free(out);
  return s;
}

qg_status qg_qgz_read(const char *path, qg_qgz *out) {
  uint8_t *d;
  size_t n;
  memset(out, 0, sizeof *out);
  QG_TRY(qg_read_file(path, &d, &n, 0));
  qg_status s = qg_qgz_read_mem(d, n, path, out);
  free(d);
  return s;
}
