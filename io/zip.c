#include "io/zip.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD 0x06054b50u
#define SIG_EOCD64 0x06064b50u
#define SIG_EOCD64_LOC 0x07064b50u
#define QG_ZIP_ALIGN 64
#define QG_ZIP_MAX_ENTRIES 1000000

static qg_status zfail(const qg_zip *z, uint64_t off, const char *what) {
  return qg_fail(QG_ERR_INPUT, "%s: zip offset %llu: %s", z->fname, (unsigned long long)off, what);
}

void qg_zip_close(qg_zip *z) {
  for (int i = 0; i < z->n; i++) free(z->entries[i].name);
  free(z->entries);
  free(z->fname);
  memset(z, 0, sizeof *z);
}

/* Locates the end-of-central-directory record and returns the central directory's
 * offset, size and entry count (from the zip64 record where the classic one overflows). */
static qg_status find_central(const qg_zip *z, uint64_t *cd_off, uint64_t *cd_size, uint64_t *count) {
  if (z->len < 22) return zfail(z, 0, "too short for a zip file (no end-of-central-directory record)");
  size_t lo = z->len > 22 + 65535 ? z->len - 22 - 65535 : 0;
  size_t eocd = (size_t)-1;
  for (size_t p = z->len - 22 + 1; p-- > lo;) {
    if (qg_rd_u32le(z->data + p) == SIG_EOCD && p + 22 + qg_rd_u16le(z->data + p + 20) == z->len) {
      eocd = p;
      break;
    }
  }
  if (eocd == (size_t)-1) return zfail(z, z->len, "no end-of-central-directory record (not a zip file, or truncated)");
  const uint8_t *e = z->data + eocd;
  if (qg_rd_u16le(e + 4) != 0 || qg_rd_u16le(e + 6) != 0) return zfail(z, eocd, "multi-disk zip archives are unsupported");
  *count = qg_rd_u16le(e + 10);
  *cd_size = qg_rd_u32le(e + 12);
  *cd_off = qg_rd_u32le(e + 16);
  if (*count == 0xffff || *cd_size == 0xffffffffu || *cd_off == 0xffffffffu) {
    if (eocd < 20 || qg_rd_u32le(z->data + eocd - 20) != SIG_EOCD64_LOC)
      return zfail(z, eocd, "zip64 values without a zip64 end-of-central-directory locator");
    uint64_t r = qg_rd_u64le(z->data + eocd - 20 + 8);
    if (r > z->len - 56 || z->len < 56 || qg_rd_u32le(z->data + r) != SIG_EOCD64)
      return zfail(z, eocd - 20, "zip64 locator points outside the file or at a bad record");
    *count = qg_rd_u64le(z->data + r + 32);
    *cd_size = qg_rd_u64le(z->data + r + 40);
    *cd_off = qg_rd_u64le(z->data + r + 48);
  }
  if (*cd_off > z->len || *cd_size > z->len - *cd_off)
    return zfail(z, eocd, "central directory lies outside the file");
  if (*count > QG_ZIP_MAX_ENTRIES || *count > *cd_size / 46 + 1)
    return zfail(z, eocd, "entry count does not fit the central directory");
  return QG_OK;
}

/* Reads the zip64 extended-information extra field for values stored as 0xffffffff. */
static qg_status read_zip64_extra(const qg_zip *z, uint64_t off, const uint8_t *x, size_t xl,
                                  uint64_t *usize, uint64_t *csize, uint64_t *lho) {
  size_t p = 0;
  while (p + 4 <= xl) {
    uint16_t id = qg_rd_u16le(x + p), sz = qg_rd_u16le(x + p + 2);
    if (p + 4 + sz > xl) return zfail(z, off, "extra field runs past its entry");
    if (id == 0x0001) {
      size_t q = p + 4, end = p + 4 + sz;
      uint64_t *fields[3] = {usize, csize, lho};
      for (int i = 0; i < 3; i++) {
        if (*fields[i] != 0xffffffffu) continue;
        if (q + 8 > end) return zfail(z, off, "zip64 extra field too short");
        *fields[i] = qg_rd_u64le(x + q);
        q += 8;
      }
    }
    p += 4 + (size_t)sz;
  }
  if (*usize == 0xffffffffu || *csize == 0xffffffffu || *lho == 0xffffffffu)
    return zfail(z, off, "zip64 sizes announced but no zip64 extra field");
  return QG_OK;
}

qg_status qg_zip_open_mem(const uint8_t *data, size_t len, const char *fname, qg_zip *z) {
  memset(z, 0, sizeof *z);
  z->data = data;
  z->len = len;
  z->fname = qg_strdup(fname ? fname : "<memory>");
  if (!z->fname) return qg_fail(QG_ERR_NOMEM, "out of memory");
  uint64_t cd_off = 0, cd_size = 0, count = 0;
  qg_status s = find_central(z, &cd_off, &cd_size, &count);
  if (s) goto fail;
  z->entries = calloc(count ? count : 1, sizeof *z->entries);
  if (!z->entries) {
    s = qg_fail(QG_ERR_NOMEM, "out of memory");
    goto fail;
  }
  uint64_t p = cd_off, end = cd_off + cd_size;
  for (uint64_t i = 0; i < count; i++) {
    if (end - p < 46 || qg_rd_u32le(data + p) != SIG_CENTRAL) {
      s = zfail(z, p, "expected a central directory entry");
      goto fail;
    }
    const uint8_t *c = data + p;
    uint16_t flags = qg_rd_u16le(c + 8), method = qg_rd_u16le(c + 10);
    uint32_t crc = qg_rd_u32le(c + 16);
    uint64_t csize = qg_rd_u32le(c + 20), usize = qg_rd_u32le(c + 24);
    uint16_t nl = qg_rd_u16le(c + 28), xl = qg_rd_u16le(c + 30), cl = qg_rd_u16le(c + 32);
    uint64_t lho = qg_rd_u32le(c + 42);
    if (46 + (uint64_t)nl + xl + cl > end - p) {
      s = zfail(z, p, "central directory entry runs past the directory");
      goto fail;
    }
    char *name = qg_strndup((const char *)c + 46, nl);
    if (!name) {
      s = qg_fail(QG_ERR_NOMEM, "out of memory");
      goto fail;
    }
    z->entries[z->n].name = name;
    z->n++;
    if (strlen(name) != nl) {
      s = zfail(z, p, "entry name contains a NUL byte");
      goto fail;
    }
    if ((s = read_zip64_extra(z, p, c + 46 + nl, xl, &usize, &csize, &lho))) goto fail;
    if (flags & 1) {
      s = qg_fail(QG_ERR_UNSUPPORTED, "%s: zip entry '%s' is encrypted", z->fname, name);
      goto fail;
    }
    if (method != 0) {
      s = qg_fail(QG_ERR_UNSUPPORTED, "%s: zip entry '%s' uses compression method %u (torch files store entries uncompressed)",
                  z->fname, name, method);
      goto fail;
    }
    if (csize != usize) {
      s = qg_fail(QG_ERR_INPUT, "%s: zip entry '%s' is stored but declares %llu compressed vs %llu uncompressed bytes",
                  z->fname, name, (unsigned long long)csize, (unsigned long long)usize);
      goto fail;
    }
    /* Local header: its name must agree; its extra field (torch's alignment padding) moves
     * the data start. Sizes there may be zero (data-descriptor flag), so the central
     * directory's sizes are the ones trusted, and checked against the file. */
    if (lho > len || len - lho < 30 || qg_rd_u32le(data + lho) != SIG_LOCAL) {
      s = qg_fail(QG_ERR_INPUT, "%s: zip entry '%s': local header at offset %llu is missing or outside the file",
                  z->fname, name, (unsigned long long)lho);
      goto fail;
    }
    uint16_t lnl = qg_rd_u16le(data + lho + 26), lxl = qg_rd_u16le(data + lho + 28);
    uint64_t dstart = lho + 30 + lnl + lxl;
    if (lnl != nl || dstart > len || memcmp(data + lho + 30, name, nl) != 0) {
      s = qg_fail(QG_ERR_INPUT, "%s: zip entry '%s': local header at offset %llu does not match the central directory",
                  z->fname, name, (unsigned long long)lho);
      goto fail;
    }
    if (usize > len - dstart) {
      s = qg_fail(QG_ERR_INPUT, "%s: zip entry '%s' declares %llu bytes at offset %llu, past the end of the %zu-byte file",
                  z->fname, name, (unsigned long long)usize, (unsigned long long)dstart, len);
      goto fail;
    }
    for (int j = 0; j < z->n - 1; j++)
      if (strcmp(z->entries[j].name, name) == 0) {
        s = qg_fail(QG_ERR_INPUT, "%s: duplicate zip entry '%s'", z->fname, name);
        goto fail;
      }
    z->entries[z->n - 1].data_offset = dstart;
    z->entries[z->n - 1].size = usize;
    z->entries[z->n - 1].crc32 = crc;
    p += 46 + (uint64_t)nl + xl + cl;
  }
  return QG_OK;
fail:
  qg_zip_close(z);
  return s;
}

qg_zip_entry *qg_zip_find(const qg_zip *z, const char *name) {
  for (int i = 0; i < z->n; i++)
    if (strcmp(z->entries[i].name, name) == 0) return &z->entries[i];
  return NULL;
}

static uint32_t crc32_of(const uint8_t *p, uint64_t n) {
  uLong c = crc32(0L, Z_NULL, 0);
  while (n > 0) {
    uInt chunk = n > 0x40000000u ? 0x40000000u : (uInt)n;
    c = crc32(c, p, chunk);
    p += chunk;
    n -= chunk;
  }
  return (uint32_t)c;
}

qg_status qg_zip_read(const qg_zip *z, qg_zip_entry *e, const uint8_t **p, size_t *n) {
  const uint8_t *d = z->data + e->data_offset;
  if (!e->crc_checked) {
    uint32_t c = crc32_of(d, e->size);
    if (c != e->crc32)
      return qg_fail(QG_ERR_INPUT, "%s: zip entry '%s' at offset %llu: CRC-32 %08x, expected %08x (corrupt data)",
                     z->fname, e->name, (unsigned long long)e->data_offset, c, e->crc32);
    e->crc_checked = 1;
  }
  *p = d;
  *n = (size_t)e->size;
  return QG_OK;
}

/* ---- writer ------------------------------------------------------------------------ */

void qg_zip_writer_init(qg_zip_writer *w) {
  memset(w, 0, sizeof *w);
  qg_buf_init(&w->out);
}

void qg_zip_writer_free(qg_zip_writer *w) {
  for (int i = 0; i < w->n; i++) free(w->entries[i].name);
  free(w->entries);
  qg_buf_free(&w->out);
  memset(w, 0, sizeof *w);
}

qg_status qg_zip_writer_add(qg_zip_writer *w, const char *name, const void *data, size_t n) {
  size_t nl = strlen(name);
  if (nl > 0xffff) return qg_fail(QG_ERR_INPUT, "zip entry name too long: %.64s...", name);
  if (n >= 0xffffffffu || w->out.n + n + 4096 >= 0xffffffffu)
    return qg_fail(QG_ERR_UNSUPPORTED, "zip entry '%s': archives over 4 GiB (zip64) are not written", name);
  if (w->n == w->cap) {
    int cap = w->cap ? 2 * w->cap : 32;
    struct qg_zip_wentry *e = realloc(w->entries, sizeof *e * (size_t)cap);
    if (!e) return qg_fail(QG_ERR_NOMEM, "out of memory");
    w->entries = e;
    w->cap = cap;
  }
  struct qg_zip_wentry *e = &w->entries[w->n];
  e->name = qg_strdup(name);
  if (!e->name) return qg_fail(QG_ERR_NOMEM, "out of memory");
  e->header_offset = w->out.n;
  e->size = n;
  e->crc32 = crc32_of(data, n);
  w->n++;
  /* Pad through an extra field (id "FB", as torch's writer names it) so the data begins
   * on a 64-byte boundary; an extra field needs at least its 4-byte header. */
  size_t base = w->out.n + 30 + nl;
  size_t pad = (QG_ZIP_ALIGN - base % QG_ZIP_ALIGN) % QG_ZIP_ALIGN;
  if (pad > 0 && pad < 4) pad += QG_ZIP_ALIGN;
  qg_buf *b = &w->out;
  qg_buf_u32le(b, SIG_LOCAL);
  qg_buf_u16le(b, 20);      /* version needed */
  qg_buf_u16le(b, 0x0800);  /* flags: UTF-8 names */
  qg_buf_u16le(b, 0);       /* stored */
  qg_buf_u16le(b, 0);       /* time */
  qg_buf_u16le(b, 0x21);    /* date: 1980-01-01 */
  qg_buf_u32le(b, e->crc32);
  qg_buf_u32le(b, (uint32_t)n);
  qg_buf_u32le(b, (uint32_t)n);
  qg_buf_u16le(b, (uint16_t)nl);
  qg_buf_u16le(b, (uint16_t)pad);
  qg_buf_append(b, name, nl);
  if (pad) {
    qg_buf_u16le(b, 0x4246); /* "FB" */
    qg_buf_u16le(b, (uint16_t)(pad - 4));
    qg_buf_zeros(b, pad - 4);
  }
  qg_buf_append(b, data, n);
  return qg_buf_status(b);
}

qg_status qg_zip_writer_finish(qg_zip_writer *w) {
  if (w->n > 0xfffe) return qg_fail(QG_ERR_UNSUPPORTED, "zip with %d entries needs zip64, not written", w->n);
  qg_buf *b = &w->out;
  uint64_t cd_off = b->n;
  for (int i = 0; i < w->n; i++) {
    struct qg_zip_wentry *e = &w->entries[i];
    size_t nl = strlen(e->name);
    qg_buf_u32le(b, SIG_CENTRAL);
    qg_buf_u16le(b, 20); /* version made by */
    qg_buf_u16le(b, 20); /* version needed */
    qg_buf_u16le(b, 0x0800);
    qg_buf_u16le(b, 0);
    qg_buf_u16le(b, 0);
    qg_buf_u16le(b, 0x21);
    qg_buf_u32le(b, e->crc32);
    qg_buf_u32le(b, (uint32_t)e->size);
    qg_buf_u32le(b, (uint32_t)e->size);
    qg_buf_u16le(b, (uint16_t)nl);
    qg_buf_u16le(b, 0); /* extra */
    qg_buf_u16le(b, 0); /* comment */
    qg_buf_u16le(b, 0); /* disk */
    qg_buf_u16le(b, 0); /* internal attributes */
    qg_buf_u32le(b, 0); /* external attributes */
    qg_buf_u32le(b, (uint32_t)e->header_offset);
    qg_buf_append(b, e->name, nl);
  }
  uint64_t cd_size = b->n - cd_off;
  qg_buf_u32le(b, SIG_EOCD);
  qg_buf_u16le(b, 0);
  qg_buf_u16le(b, 0);
  qg_buf_u16le(b, (uint16_t)w->n);
  qg_buf_u16le(b, (uint16_t)w->n);
  qg_buf_u32le(b, (uint32_t)cd_size);
  qg_buf_u32le(b, (uint32_t)cd_off);
  qg_buf_u16le(b, 0);
  return qg_buf_status(b);
}
