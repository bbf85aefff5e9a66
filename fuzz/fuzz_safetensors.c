/* libFuzzer harness for the safetensors reader (and the JSON parser under it). Whatever
 * parses must also survive a round trip: serialize, parse again, get the same tensors and
 * metadata, and serialize to the same bytes. Any disagreement aborts, so libFuzzer
 * reports it like a crash.
 *
 * An input starting with '{' is taken as a header alone: the harness adds the length
 * field and a data buffer as long as the largest data_offsets end it names, so mutated
 * headers reach the offset and tiling checks instead of dying on a length mismatch. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/tensor.h"
#include "core/util.h"
#include "io/json_parse.h"
#include "io/safetensors.h"

static void same_or_abort(const qg_state *a, const qg_state *b) {
  if (a->n != b->n || a->n_meta != b->n_meta) abort();
  for (int i = 0; i < a->n; i++) {
    const qg_tensor *x = &a->t[i], *y = &b->t[i];
    if (strcmp(x->name, y->name) || x->dtype != y->dtype || x->ndim != y->ndim || x->nbytes != y->nbytes)
      abort();
    for (int d = 0; d < x->ndim; d++)
      if (x->shape[d] != y->shape[d]) abort();
    if (x->nbytes && memcmp(x->data, y->data, x->nbytes)) abort();
  }
  for (int i = 0; i < a->n_meta; i++) {
    const char *v = qg_state_get_meta(b, a->meta_keys[i]);
    if (!v || strcmp(v, a->meta_vals[i])) abort();
  }
}

static void check(const uint8_t *data, size_t size) {
  qg_state s;
  if (qg_safetensors_parse(data, size, "fuzz", &s) != QG_OK) {
    if (s.n || s.n_meta) abort(); /* a failed parse leaves the state empty */
    return;
  }
  qg_buf b1, b2;
  qg_buf_init(&b1);
  qg_buf_init(&b2);
  if (qg_safetensors_serialize(&s, &b1) != QG_OK) abort();
  qg_state t;
  if (qg_safetensors_parse(b1.p, b1.n, "fuzz2", &t) != QG_OK) abort();
  same_or_abort(&s, &t);
  if (qg_safetensors_serialize(&t, &b2) != QG_OK) abort();
  if (b1.n != b2.n || memcmp(b1.p, b2.p, b1.n)) abort();
  qg_buf_free(&b1);
  qg_buf_free(&b2);
  qg_state_free(&t);
  qg_state_free(&s);
}

/* The largest data_offsets end (at most 1 MiB) named by a header, or 0. */
static size_t data_len_for(const uint8_t *json, size_t n) {
  qg_jdoc doc;
  const qg_jnode *root;
  if (qg_jparse((const char *)json, n, NULL, &doc, &root) != QG_OK) return 0;
  int64_t end = 0;
  for (const qg_jnode *m = root->type == QG_JOBJ ? root->child : NULL; m; m = m->next) {
    const qg_jnode *o = qg_jobj_get(m, "data_offsets");
    const qg_jnode *e = o && o->type == QG_JARR && o->len == 2 ? o->child->next : NULL;
    if (e && e->type == QG_JNUM && e->is_int && e->i > end && e->i <= (1 << 20)) end = e->i;
  }
  qg_jdoc_free(&doc);
  return (size_t)end;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0 || data[0] != '{') {
    check(data, size);
    return 0;
  }
  size_t dl = data_len_for(data, size);
  uint8_t *img = malloc(8 + size + dl);
  if (!img) return 0;
  for (int i = 0; i < 8; i++) img[i] = (uint8_t)((uint64_t)size >> (8 * i));
  memcpy(img + 8, data, size);
  for (size_t i = 0; i < dl; i++) img[8 + size + i] = (uint8_t)(i * 131 + 7);
  check(img, 8 + size + dl);
  free(img);
  return 0;
}
