#include "io/ptz.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/file.h"
#include "io/pickle.h"
#include "io/torchfile.h"

void qg_int8_artifact_init(qg_int8_artifact *a) {
  memset(a, 0, sizeof *a);
  qg_state_init(&a->quantized);
  qg_state_init(&a->scales);
  qg_state_init(&a->passthrough);
}

void qg_int8_artifact_free(qg_int8_artifact *a) {
  for (int i = 0; i < a->n_orig_dtype; i++) free(a->orig_dtype[i]);
  for (int i = 0; i < a->n_pass_orig; i++) free(a->pass_orig[i]);
  free(a->orig_dtype);
  free(a->pass_orig);
  free(a->per_row);
  free(a->format);
  qg_state_free(&a->quantized);
  qg_state_free(&a->scales);
  qg_state_free(&a->passthrough);
  memset(a, 0, sizeof *a);
}

qg_status qg_zlib_inflate(const uint8_t *data, size_t len, const char *fname, size_t max_out, uint8_t **out,
                          size_t *out_len) {
  *out = NULL;
  *out_len = 0;
  z_stream zs;
  memset(&zs, 0, sizeof zs);
  if (inflateInit(&zs) != Z_OK) return qg_fail(QG_ERR_NOMEM, "%s: zlib init failed", fname);
  size_t cap = len * 4 + 1024, n = 0;
  if (cap > max_out) cap = max_out;
  uint8_t *buf = malloc(cap ? cap : 1);
  qg_status s = QG_OK;
  if (!buf) {
    s = qg_fail(QG_ERR_NOMEM, "%s: out of memory", fname);
    goto done;
  }
  const uint8_t *in = data;
  size_t in_left = len;
  for (;;) {
    if (n == cap) {
      if (cap >= max_out) {
        s = qg_fail(QG_ERR_INPUT, "%s: zlib stream inflates past %zu bytes (refusing a possible zlib bomb)", fname,
                    max_out);
        goto done;
      }
      size_t nc = cap * 2 > max_out ? max_out : cap * 2;
      uint8_t *nb = realloc(buf, nc);
      if (!nb) {
        s = qg_fail(QG_ERR_NOMEM, "%s: out of memory inflating", fname);
        goto done;
      }
      buf = nb;
      cap = nc;
    }
    uInt in_chunk = in_left > (1u << 30) ? (1u << 30) : (uInt)in_left;
    uInt out_chunk = cap - n > (1u << 30) ? (1u << 30) : (uInt)(cap - n);
    zs.next_in = (Bytef *)in;
    zs.avail_in = in_chunk;
    zs.next_out = buf + n;
    zs.avail_out = out_chunk;
    int r = inflate(&zs, Z_NO_FLUSH);
    size_t used = in_chunk - zs.avail_in;
    in += used;
    in_left -= used;
    n += out_chunk - zs.avail_out;
    if (r == Z_STREAM_END) break;
    if (r == Z_BUF_ERROR && in_left == 0 && zs.avail_out != 0) {
      s = qg_fail(QG_ERR_INPUT, "%s: zlib stream truncated at compressed offset %zu", fname, len);
      goto done;
    }
    if (r != Z_OK && r != Z_BUF_ERROR) {
      s = qg_fail(QG_ERR_INPUT, "%s: zlib data corrupt near compressed offset %zu (%s)", fname, (size_t)(in - data),
                  zs.msg ? zs.msg : "inflate error");
      goto done;
    }
  }
  if (in_left != 0) {
    s = qg_fail(QG_ERR_INPUT, "%s: %zu bytes of trailing data after the zlib stream at offset %zu", fname, in_left,
                (size_t)(in - data));
    goto done;
  }
  *out = buf;
  *out_len = n;
  buf = NULL;
done:
  inflateEnd(&zs);
  free(buf);
  return s;
}

/* Reads dict[name] -> tensor for each entry of a pickled sub-dict into a state. */
static qg_status read_tensor_dict(qg_torchfile *tf, const qg_py *d, const char *what, qg_state *out) {
  if (!d || d->kind != QG_PY_DICT)
    return qg_fail(QG_ERR_INPUT, "%s: artifact entry '%s' is missing or not a dict", tf->fname, what);
  for (size_t i = 0; i + 1 < d->n; i += 2) {
    const qg_py *k = d->items[i];
    if (k->kind != QG_PY_STR) return qg_fail(QG_ERR_INPUT, "%s: '%s' has a non-string key", tf->fname, what);
    QG_TRY(qg_torchfile_tensor(tf, d->items[i + 1], k->s, out));
  }
  return QG_OK;
}

static const char *dict_str(const qg_py *d, const char *key) {
  const qg_py *v = qg_py_dict_get(d, key);
  return v && v->kind == QG_PY_STR ? v->s : NULL;
}

static qg_status check_dtype_name(const char *fname, const char *tensor, const char *name) {
  qg_dtype t;
  if (qg_dtype_from_name(name, &t) != 0 || !qg_dtype_is_float(t))
    return qg_fail(QG_ERR_INPUT, "%s: tensor '%s': original dtype '%s' is not a float type", fname, tensor, name);
  return QG_OK;
}

static qg_status parse_artifact(qg_torchfile *tf, qg_int8_artifact *a) {
  const qg_py *root = tf->pkl.root;
  const char *fn = tf->fname;
  if (root->kind != QG_PY_DICT) return qg_fail(QG_ERR_INPUT, "%s: artifact is a %s, not a dict", fn, qg_py_kind_name(root->kind));
  const char *fmt = dict_str(root, "__quant_format__");
  if (!fmt) return qg_fail(QG_ERR_INPUT, "%s: no '__quant_format__' string: not a contest int8 artifact", fn);
  if (strcmp(fmt, "int8_clean_per_row_v1") != 0)
    return qg_fail(QG_ERR_UNSUPPORTED, "%s: __quant_format__ '%s' (only int8_clean_per_row_v1 is known)", fn, fmt);
  if (!(a->format = qg_strdup(fmt))) return qg_fail(QG_ERR_NOMEM, "out of memory");
  const qg_py *quant = qg_py_dict_get(root, "quantized"), *scales = qg_py_dict_get(root, "scales");
  const qg_py *dtypes = qg_py_dict_get(root, "dtypes"), *pass = qg_py_dict_get(root, "passthrough");
  const qg_py *qmeta = qg_py_dict_get(root, "qmeta"), *porig = qg_py_dict_get(root, "passthrough_orig_dtypes");
  if (!dtypes || dtypes->kind != QG_PY_DICT) return qg_fail(QG_ERR_INPUT, "%s: artifact entry 'dtypes' is missing or not a dict", fn);
  if (qmeta && qmeta->kind != QG_PY_DICT) return qg_fail(QG_ERR_INPUT, "%s: 'qmeta' is not a dict", fn);
  if (porig && porig->kind != QG_PY_DICT) return qg_fail(QG_ERR_INPUT, "%s: 'passthrough_orig_dtypes' is not a dict", fn);
  QG_TRY(read_tensor_dict(tf, quant, "quantized", &a->quantized));
  QG_TRY(read_tensor_dict(tf, pass, "passthrough", &a->passthrough));
  int nq = a->quantized.n, np = a->passthrough.n;
  a->orig_dtype = calloc((size_t)nq + 1, sizeof *a->orig_dtype);
  a->per_row = calloc((size_t)nq + 1, sizeof *a->per_row);
  a->pass_orig = calloc((size_t)np + 1, sizeof *a->pass_orig);
  if (!a->orig_dtype || !a->per_row || !a->pass_orig) return qg_fail(QG_ERR_NOMEM, "out of memory");
  a->n_orig_dtype = a->n_per_row = nq;
  a->n_pass_orig = np;
  if (!scales || scales->kind != QG_PY_DICT) return qg_fail(QG_ERR_INPUT, "%s: artifact entry 'scales' is missing or not a dict", fn);
  for (int i = 0; i < nq; i++) {
    const qg_tensor *q = &a->quantized.t[i];
    const char *name = q->name;
    if (q->dtype != QG_I8)
      return qg_fail(QG_ERR_INPUT, "%s: quantized tensor '%s' is %s, expected int8", fn, name, qg_dtype_name(q->dtype));
    const qg_py *sv = qg_py_dict_get(scales, name);
    if (!sv) return qg_fail(QG_ERR_INPUT, "%s: quantized tensor '%s' has no scale", fn, name);
    QG_TRY(qg_torchfile_tensor(tf, sv, name, &a->scales));
    const qg_tensor *s = &a->scales.t[i];
    const char *dt = dict_str(dtypes, name);
    if (!dt) return qg_fail(QG_ERR_INPUT, "%s: quantized tensor '%s' has no entry in 'dtypes'", fn, name);
    QG_TRY(check_dtype_name(fn, name, dt));
    if (!(a->orig_dtype[i] = qg_strdup(dt))) return qg_fail(QG_ERR_NOMEM, "out of memory");
    const char *scheme = dict_str(qg_py_dict_get(qmeta, name), "scheme");
    a->per_row[i] = (scheme && !strcmp(scheme, "per_row")) || s->ndim > 0;
    if (!qg_dtype_is_float(s->dtype))
      return qg_fail(QG_ERR_INPUT, "%s: scale of '%s' is %s, expected a float type", fn, name, qg_dtype_name(s->dtype));
    if (a->per_row[i]) {
      if (q->ndim < 1 || qg_tensor_numel(s) != q->shape[0])
        return qg_fail(QG_ERR_INPUT, "%s: tensor '%s': %lld row scales for %lld rows", fn, name,
                       (long long)qg_tensor_numel(s), (long long)(q->ndim ? q->shape[0] : 0));
    } else if (qg_tensor_numel(s) != 1) {
      return qg_fail(QG_ERR_INPUT, "%s: tensor '%s': per-tensor scale has %lld elements, expected 1", fn, name,
                     (long long)qg_tensor_numel(s));
    }
    for (int64_t j = 0; j < qg_tensor_numel(s); j++)
      if (!isfinite(qg_read_elem(s->data, s->dtype, (size_t)j)))
        return qg_fail(QG_ERR_INPUT, "%s: tensor '%s': scale %lld is not finite", fn, name, (long long)j);
  }
  for (int i = 0; i < np; i++) {
    const char *name = a->passthrough.t[i].name;
    if (qg_state_find(&a->quantized, name))
      return qg_fail(QG_ERR_INPUT, "%s: tensor '%s' is both quantized and passthrough", fn, name);
    const char *o = dict_str(porig, name);
    if (o) {
      QG_TRY(check_dtype_name(fn, name, o));
      if (!(a->pass_orig[i] = qg_strdup(o))) return qg_fail(QG_ERR_NOMEM, "out of memory");
    }
  }
  return QG_OK;
}

qg_status qg_ptz_read_mem(const uint8_t *data, size_t len, const char *fname, qg_int8_artifact *a) {
  qg_int8_artifact_init(a);
  uint8_t *raw = NULL;
  size_t raw_len = 0;
  /* A zlib stream starts with CMF 0x78 (deflate, 32K window) and a header checksum. */
  if (len >= 2 && data[0] == 0x78 && ((data[0] << 8) | data[1]) % 31 == 0) {
    size_t lim = QG_PTZ_MAX_INFLATED;
    if (len < (QG_PTZ_MAX_INFLATED - QG_INFLATE_SLACK) / QG_MAX_INFLATE_RATIO)
      lim = len * QG_MAX_INFLATE_RATIO + QG_INFLATE_SLACK;
    QG_TRY(qg_zlib_inflate(data, len, fname, lim, &raw, &raw_len));
    data = raw;
    len = raw_len;
  } else if (!(len >= 4 && !memcmp(data, "PK\3\4", 4))) {
    return qg_fail(QG_ERR_INPUT, "%s: offset 0: neither a zlib stream (78 xx) nor a torch zip (PK): not a .ptz", fname);
  }
  qg_torchfile tf;
  qg_status s = qg_torchfile_open_mem(data, len, fname, &tf);
  if (!s) {
    s = parse_artifact(&tf, a);
    qg_torchfile_close(&tf);
  }
  free(raw);
  if (s) qg_int8_artifact_free(a);
  return s;
}

qg_status qg_ptz_read(const char *path, qg_int8_artifact *a) {
  uint8_t *data;
  size_t len;
  qg_int8_artifact_init(a);
  QG_TRY(qg_read_file(path, &data, &len, 0));
  qg_status s = qg_ptz_read_mem(data, len, path, a);
  free(data);
  return s;
}

/* Stores float values in dtype t (round to nearest even, as torch's .to()). */
static void store_f32(void *dst, qg_dtype t, const float *v, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    switch (t) {
      case QG_F32: ((float *)dst)[i] = v[i]; break;
      case QG_F64: ((double *)dst)[i] = v[i]; break;
      case QG_F16: ((uint16_t *)dst)[i] = qg_f32_to_f16(v[i]); break;
      case QG_BF16: ((uint16_t *)dst)[i] = qg_f32_to_bf16(v[i]); break;
      default: break;
    }
  }
}

qg_status qg_int8_dequantize(const qg_int8_artifact *a, qg_state *out) {
  qg_state_init(out);
  qg_status s = QG_OK;
  float *tmp = NULL;
  for (int i = 0; i < a->quantized.n && !s; i++) {
    const qg_tensor *q = &a->quantized.t[i], *sc = &a->scales.t[i];
    qg_dtype dt;
    qg_dtype_from_name(a->orig_dtype[i], &dt);
    int64_t n = qg_tensor_numel(q);
    free(tmp);
    tmp = malloc((size_t)(n ? n : 1) * sizeof *tmp);
    if (!tmp) {
      s = qg_fail(QG_ERR_NOMEM, "out of memory");
      break;
    }
    const int8_t *c = q->data;
    if (a->per_row[i]) {
      int64_t rows = q->shape[0], cols = rows ? n / rows : 0;
      for (int64_t r = 0; r < rows; r++) {
        float scale = (float)qg_read_elem(sc->data, sc->dtype, (size_t)r);
        for (int64_t j = 0; j < cols; j++) tmp[r * cols + j] = (float)c[r * cols + j] * scale;
      }
    } else {
      float scale = (float)qg_read_elem(sc->data, sc->dtype, 0);
      for (int64_t j = 0; j < n; j++) tmp[j] = (float)c[j] * scale;
    }
    qg_tensor *t;
    if ((s = qg_state_add(out, q->name, dt, q->ndim, q->shape, &t))) break;
    store_f32(t->data, dt, tmp, n);
  }
  for (int i = 0; i < a->passthrough.n && !s; i++) {
    const qg_tensor *p = &a->passthrough.t[i];
    qg_dtype dt = p->dtype;
    if (a->pass_orig[i]) qg_dtype_from_name(a->pass_orig[i], &dt);
    qg_tensor *t;
    if ((s = qg_state_add(out, p->name, dt, p->ndim, p->shape, &t))) break;
    if (dt == p->dtype) {
      memcpy(t->data, p->data, p->nbytes);
      continue;
    }
    int64_t n = qg_tensor_numel(p);
    free(tmp);
    tmp = malloc((size_t)(n ? n : 1) * sizeof *tmp);
    if (!tmp) {
      s = qg_fail(QG_ERR_NOMEM, "out of memory");
      break;
    }
    qg_tensor_to_f32(p, tmp);
    store_f32(t->data, dt, tmp, n);
  }
  free(tmp);
  if (s) qg_state_free(out);
  return s;
}

/* ---- writer ------------------------------------------------------------------------- */

static qg_status pickle_tensor_dict(qg_pkl_writer *pw, qg_torch_writer *tw, const qg_state *s) {
  qg_pkl_dict_begin(pw, 0);
  for (int i = 0; i < s->n; i++) {
    const qg_tensor *t = &s->t[i];
    char key[32];
    if (!qg_pkl_storage_name(t->dtype))
      return qg_fail(QG_ERR_UNSUPPORTED, "tensor '%s': dtype %s has no torch storage type", t->name, qg_dtype_name(t->dtype));
    QG_TRY(qg_torch_writer_storage(tw, t->data, t->nbytes, key, sizeof key));
    qg_pkl_str(pw, t->name);
    qg_pkl_tensor(pw, key, t->dtype, t->ndim, t->shape);
  }
  qg_pkl_dict_end(pw);
  return QG_OK;
}

qg_status qg_ptz_encode(const qg_int8_artifact *a, uint8_t **blob, size_t *blob_len, uint8_t **raw, size_t *raw_len) {
  *blob = NULL;
  *blob_len = 0;
  if (raw) *raw = NULL;
  qg_pkl_writer pw;
  qg_torch_writer tw;
  qg_buf image;
  qg_buf_init(&image);
  qg_pkl_begin(&pw);
  qg_torch_writer_init(&tw, "archive");
  qg_status s = QG_OK;
  /* Key order as quantize_state_dict_int8 inserts them. */
  qg_pkl_dict_begin(&pw, 0);
  qg_pkl_str(&pw, "__quant_format__");
  qg_pkl_str(&pw, a->format ? a->format : "int8_clean_per_row_v1");
  qg_pkl_str(&pw, "quantized");
  if ((s = pickle_tensor_dict(&pw, &tw, &a->quantized))) goto done;
  qg_pkl_str(&pw, "scales");
  if ((s = pickle_tensor_dict(&pw, &tw, &a->scales))) goto done;
  qg_pkl_str(&pw, "dtypes");
  qg_pkl_dict_begin(&pw, 0);
  for (int i = 0; i < a->quantized.n; i++) {
    qg_pkl_str(&pw, a->quantized.t[i].name);
    qg_pkl_str(&pw, a->orig_dtype[i]);
  }
  qg_pkl_dict_end(&pw);
  qg_pkl_str(&pw, "passthrough");
  if ((s = pickle_tensor_dict(&pw, &tw, &a->passthrough))) goto done;
  int any_row = 0, any_orig = 0;
  for (int i = 0; i < a->quantized.n; i++) any_row |= a->per_row[i];
  for (int i = 0; i < a->passthrough.n; i++) any_orig |= a->pass_orig[i] != NULL;
  if (any_row) {
    qg_pkl_str(&pw, "qmeta");
    qg_pkl_dict_begin(&pw, 0);
    for (int i = 0; i < a->quantized.n; i++) {
      if (!a->per_row[i]) continue;
      qg_pkl_str(&pw, a->quantized.t[i].name);
      qg_pkl_dict_begin(&pw, 0);
      qg_pkl_str(&pw, "scheme");
      qg_pkl_str(&pw, "per_row");
      qg_pkl_str(&pw, "axis");
      qg_pkl_int(&pw, 0);
      qg_pkl_dict_end(&pw);
    }
    qg_pkl_dict_end(&pw);
  }
  if (any_orig) {
    qg_pkl_str(&pw, "passthrough_orig_dtypes");
    qg_pkl_dict_begin(&pw, 0);
    for (int i = 0; i < a->passthrough.n; i++) {
      if (!a->pass_orig[i]) continue;
      qg_pkl_str(&pw, a->passthrough.t[i].name);
      qg_pkl_str(&pw, a->pass_orig[i]);
    }
    qg_pkl_dict_end(&pw);
  }
  qg_pkl_dict_end(&pw);
  if ((s = qg_pkl_end(&pw))) goto done;
  if ((s = qg_torch_writer_finish(&tw, &pw.out, &image))) goto done;
  uLongf bound = compressBound((uLong)image.n);
  *blob = malloc(bound);
  if (!*blob) {
    s = qg_fail(QG_ERR_NOMEM, "out of memory");
    goto done;
  }
  if (compress2(*blob, &bound, image.p, (uLong)image.n, 9) != Z_OK) {
    free(*blob);
    *blob = NULL;
    s = qg_fail(QG_ERR_INTERNAL, "zlib compression failed");
    goto done;
  }
  *blob_len = bound;
  if (raw) {
    *raw = image.p;
    *raw_len = image.n;
    qg_buf_init(&image);
  }
done:
  qg_buf_free(&image);
  qg_buf_free(&pw.out);
  qg_torch_writer_free(&tw);
  return s;
}

qg_status qg_ptz_write(const char *path, const qg_int8_artifact *a, size_t *compressed_bytes) {
  uint8_t *blob;
  size_t n;
  QG_TRY(qg_ptz_encode(a, &blob, &n, NULL, NULL));
  qg_status s = qg_write_file_atomic(path, blob, n);
  free(blob);
  if (!s && compressed_bytes) *compressed_bytes = n;
  return s;
}
