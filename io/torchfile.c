#include "io/torchfile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "core/util.h"

void qg_torchfile_close(qg_torchfile *tf) {
  qg_zip_close(&tf->zip);
  qg_pickle_free(&tf->pkl);
  free(tf->prefix);
  free(tf->fname);
  memset(tf, 0, sizeof *tf);
}

qg_status qg_torchfile_open_mem(const uint8_t *data, size_t len, const char *fname, qg_torchfile *tf) {
  memset(tf, 0, sizeof *tf);
  if (!fname) fname = "<memory>";
  tf->fname = qg_strdup(fname);
  if (!tf->fname) return qg_fail(QG_ERR_NOMEM, "out of memory");
  qg_status s = qg_zip_open_mem(data, len, fname, &tf->zip);
  if (s) goto fail;
  /* The pickle sits at <one folder>/data.pkl; the folder name varies (archive/, final_model/). */
  qg_zip_entry *pkl = NULL;
  for (int i = 0; i < tf->zip.n; i++) {
    const char *nm = tf->zip.entries[i].name;
    const char *slash = strchr(nm, '/');
    if (slash && strcmp(slash + 1, "data.pkl") == 0) {
      if (pkl) {
        s = qg_fail(QG_ERR_INPUT, "%s: two data.pkl entries ('%s' and '%s')", fname, pkl->name, nm);
        goto fail;
      }
      pkl = &tf->zip.entries[i];
    }
  }
  if (!pkl) {
    s = qg_fail(QG_ERR_INPUT, "%s: no <folder>/data.pkl entry: not a torch.save file", fname);
    goto fail;
  }
  tf->prefix = qg_strndup(pkl->name, strlen(pkl->name) - strlen("data.pkl"));
  if (!tf->prefix) {
    s = qg_fail(QG_ERR_NOMEM, "out of memory");
    goto fail;
  }
  char name[1024];
  snprintf(name, sizeof name, "%sbyteorder", tf->prefix);
  qg_zip_entry *bo = qg_zip_find(&tf->zip, name);
  if (bo) {
    const uint8_t *p;
    size_t n;
    if ((s = qg_zip_read(&tf->zip, bo, &p, &n))) goto fail;
    if (!(n == 6 && memcmp(p, "little", 6) == 0)) {
      s = qg_fail(QG_ERR_UNSUPPORTED, "%s: byteorder is '%.*s' (only little-endian files are read)", fname,
                  (int)(n > 16 ? 16 : n), (const char *)p);
      goto fail;
    }
  }
  const uint8_t *p;
  size_t n;
  if ((s = qg_zip_read(&tf->zip, pkl, &p, &n))) goto fail;
  char pname[1200];
  snprintf(pname, sizeof pname, "%s:%s", fname, pkl->name);
  if ((s = qg_pickle_load(p, n, pname, &tf->pkl))) goto fail;
  return QG_OK;
fail:
  qg_torchfile_close(tf);
  return s;
}

qg_status qg_torchfile_tensor(qg_torchfile *tf, const qg_py *t, const char *name, qg_state *out) {
  if (t->kind != QG_PY_TENSOR)
    return qg_fail(QG_ERR_INPUT, "%s: '%s' is a %s, not a tensor", tf->fname, name, qg_py_kind_name(t->kind));
  const qg_py *st = t->storage;
  char ename[1024];
  snprintf(ename, sizeof ename, "%sdata/%s", tf->prefix, st->s);
  qg_zip_entry *e = qg_zip_find(&tf->zip, ename);
  if (!e) return qg_fail(QG_ERR_INPUT, "%s: tensor '%s': storage entry '%s' is missing", tf->fname, name, ename);
  size_t es = qg_dtype_size(t->dtype);
  uint64_t st_bytes;
  if (qg_mul_overflow_u64((uint64_t)st->numel, es, &st_bytes) || st_bytes != e->size)
    return qg_fail(QG_ERR_INPUT, "%s: tensor '%s': storage '%s' holds %llu bytes, expected %lld x %zu (%s)", tf->fname,
                   name, ename, (unsigned long long)e->size, (long long)st->numel, es, qg_dtype_name(t->dtype));
  int64_t numel = qg_shape_numel(t->ndim, t->shape);
  if (numel < 0) return qg_fail(QG_ERR_INPUT, "%s: tensor '%s': invalid shape", tf->fname, name);
  /* The largest element index the view touches must lie inside the storage. */
  if (numel > 0) {
    int64_t last = t->storage_offset;
    for (int i = 0; i < t->ndim; i++) {
      if (t->stride[i] < 0) return qg_fail(QG_ERR_INPUT, "%s: tensor '%s': negative stride", tf->fname, name);
      int64_t reach;
      if (qg_mul_overflow_i64(t->shape[i] - 1, t->stride[i], &reach) || qg_add_overflow_i64(last, reach, &last))
        return qg_fail(QG_ERR_INPUT, "%s: tensor '%s': strides overflow", tf->fname, name);
    }
    if (last >= st->numel)
      return qg_fail(QG_ERR_INPUT, "%s: tensor '%s': view reaches element %lld of a %lld-element storage", tf->fname,
                     name, (long long)last, (long long)st->numel);
  }
  const uint8_t *src;
  size_t n;
  QG_TRY(qg_zip_read(&tf->zip, e, &src, &n));
  qg_tensor *dst;
  QG_TRY(qg_state_add(out, name, t->dtype, t->ndim, t->shape, &dst));
  if (numel == 0) return QG_OK;
  /* Walk the view in row-major order with an index counter; runs along a contiguous last
   * dimension are copied at once. */
  int nd = t->ndim;
  int64_t idx[QG_MAX_DIMS] = {0};
  int64_t inner = nd > 0 ? t->shape[nd - 1] : 1;
  int inner_contig = nd == 0 || t->stride[nd - 1] == 1;
  uint8_t *d = dst->data;
  for (int64_t done = 0; done < numel;) {
    int64_t off = t->storage_offset;
    for (int i = 0; i < nd; i++) off += idx[i] * t->stride[i];
    if (inner_contig) {
      memcpy(d + (size_t)done * es, src + (size_t)off * es, (size_t)inner * es);
    } else {
      for (int64_t j = 0; j < inner; j++)
        memcpy(d + (size_t)(done + j) * es, src + (size_t)(off + j * t->stride[nd - 1]) * es, es);
    }
    done += inner;
    for (int i = nd - 2; i >= 0; i--) {
      if (++idx[i] < t->shape[i]) break;
      idx[i] = 0;
    }
  }
  return QG_OK;
}

qg_status qg_pt_load_mem(const uint8_t *data, size_t len, const char *fname, qg_state *out) {
  qg_torchfile tf;
  qg_state_init(out);
  QG_TRY(qg_torchfile_open_mem(data, len, fname, &tf));
  const qg_py *root = tf.pkl.root;
  qg_status s = QG_OK;
  if (root->kind != QG_PY_DICT) {
    s = qg_fail(QG_ERR_INPUT, "%s: the pickled object is a %s, not a state dict", tf.fname, qg_py_kind_name(root->kind));
    goto done;
  }
  /* Training checkpoints often nest the weights one level down. */
  const qg_py *inner = qg_py_dict_get(root, "state_dict");
  if (!inner) inner = qg_py_dict_get(root, "model");
  if (inner && inner->kind == QG_PY_DICT) root = inner;
  if (qg_py_dict_get(root, "__quant_format__")) {
    s = qg_fail(QG_ERR_INPUT, "%s: this is a contest quantized artifact (__quant_format__), not a plain state dict; "
                "read it as .ptz", tf.fname);
    goto done;
  }
  for (size_t i = 0; i + 1 < root->n; i += 2) {
    const qg_py *k = root->items[i], *v = root->items[i + 1];
    if (k->kind != QG_PY_STR) {
      s = qg_fail(QG_ERR_INPUT, "%s: state dict key #%zu is a %s, not a string", tf.fname, i / 2, qg_py_kind_name(k->kind));
      goto done;
    }
    if (v->kind != QG_PY_TENSOR) {
      s = qg_fail(QG_ERR_INPUT, "%s: state dict entry '%s' is a %s, not a tensor", tf.fname, k->s, qg_py_kind_name(v->kind));
      goto done;
    }
    if ((s = qg_torchfile_tensor(&tf, v, k->s, out))) goto done;
  }
done:
  qg_torchfile_close(&tf);
  if (s) qg_state_free(out);
  return s;
}

qg_status qg_pt_load(const char *path, qg_state *out) {
  uint8_t *data;
  size_t len;
  qg_state_init(out);
  QG_TRY(qg_read_file(path, &data, &len, 0));
  qg_status s = qg_pt_load_mem(data, len, path, out);
  free(data);
  return s;
}

/* ---- writer ------------------------------------------------------------------------- */

void qg_torch_writer_init(qg_torch_writer *w, const char *prefix) {
  memset(w, 0, sizeof *w);
  w->prefix = qg_strdup(prefix);
}

void qg_torch_writer_free(qg_torch_writer *w) {
  free(w->prefix);
  free(w->st);
  memset(w, 0, sizeof *w);
}

qg_status qg_torch_writer_storage(qg_torch_writer *w, const void *data, size_t n, char *key, size_t cap) {
  if (!w->prefix) return qg_fail(QG_ERR_NOMEM, "out of memory");
  if (w->n == w->cap) {
    int c = w->cap ? w->cap * 2 : 64;
    void *p = realloc(w->st, sizeof *w->st * (size_t)c);
    if (!p) return qg_fail(QG_ERR_NOMEM, "out of memory");
    w->st = p;
    w->cap = c;
  }
  w->st[w->n].data = data;
  w->st[w->n].n = n;
  snprintf(key, cap, "%d", w->n);
  w->n++;
  return QG_OK;
}

qg_status qg_torch_writer_finish(qg_torch_writer *w, const qg_buf *pickle, qg_buf *image) {
  qg_zip_writer z;
  qg_zip_writer_init(&z);
  char name[512];
  qg_status s = QG_OK;
#define ADD(suffix, data, n)                                           \
  do {                                                                 \
    snprintf(name, sizeof name, "%s/%s", w->prefix, suffix);           \
    if ((s = qg_zip_writer_add(&z, name, data, n))) goto done;         \
  } while (0)
  ADD("data.pkl", pickle->p, pickle->n);
  ADD(".format_version", "1", 1);
  ADD(".storage_alignment", "64", 2);
  ADD("byteorder", "little", 6);
  for (int i = 0; i < w->n; i++) {
    char suffix[64];
    snprintf(suffix, sizeof suffix, "data/%d", i);
    ADD(suffix, w->st[i].data, w->st[i].n);
  }
  ADD("version", "3\n", 2);
  /* torch writes a random 40-digit id here; a fixed one keeps our output reproducible */
  ADD(".data/serialization_id", "0000000000000000000000000000000000000000", 40);
#undef ADD
  if ((s = qg_zip_writer_finish(&z))) goto done;
  *image = z.out;
  qg_buf_init(&z.out);
done:
  qg_zip_writer_free(&z);
  return s;
}

qg_status qg_pt_save_mem(const qg_state *s, qg_buf *image) {
  qg_torch_writer w;
  qg_pkl_writer pw;
  qg_torch_writer_init(&w, "archive");
  qg_pkl_begin(&pw);
  qg_pkl_dict_begin(&pw, 1);
  qg_status st = QG_OK;
  for (int i = 0; i < s->n; i++) {
    const qg_tensor *t = &s->t[i];
    char key[32];
    if (!qg_pkl_storage_name(t->dtype)) {
      st = qg_fail(QG_ERR_UNSUPPORTED, "tensor '%s': dtype %s has no torch storage type", t->name, qg_dtype_name(t->dtype));
      goto done;
    }
    if ((st = qg_torch_writer_storage(&w, t->data, t->nbytes, key, sizeof key))) goto done;
    qg_pkl_str(&pw, t->name);
    qg_pkl_tensor(&pw, key, t->dtype, t->ndim, t->shape);
  }
  qg_pkl_dict_end(&pw);
  if ((st = qg_pkl_end(&pw))) goto done;
  st = qg_torch_writer_finish(&w, &pw.out, image);
done:
  qg_buf_free(&pw.out);
  qg_torch_writer_free(&w);
  return st;
}

qg_status qg_pt_save(const char *path, const qg_state *s) {
  qg_buf img;
  qg_buf_init(&img);
  qg_status st = qg_pt_save_mem(s, &img);
  if (!st) st = qg_write_file_atomic(path, img.p, img.n);
  qg_buf_free(&img);
  return st;
}
