/* torch.save files: a zip (io/zip.h) holding <prefix>/data.pkl (io/pickle.h) and one
 * entry per storage (<prefix>/data/<key>). Reads state dicts into a qg_state and writes
 * them back in the layout torch itself produces, so torch.load accepts our files. */
#ifndef QG_IO_TORCHFILE_H
#define QG_IO_TORCHFILE_H

#include "core/tensor.h"
#include "io/pickle.h"
#include "io/zip.h"

typedef struct {
  qg_zip zip;
  qg_pickle pkl;
  char *prefix; /* "archive/", "final_model/", ... */
  char *fname;
} qg_torchfile;

/* Opens the zip image (not copied: data must outlive tf), finds <prefix>/data.pkl, checks
 * byteorder, unpickles. */
qg_status qg_torchfile_open_mem(const uint8_t *data, size_t len, const char *fname, qg_torchfile *tf);
void qg_torchfile_close(qg_torchfile *tf);
/* Copies a tensor leaf of the pickle into `out` as a contiguous tensor named `name`,
 * honouring its storage offset and strides; every index is bounds-checked. */
qg_status qg_torchfile_tensor(qg_torchfile *tf, const qg_py *t, const char *name, qg_state *out);

/* A .pt state dict: the root dict (or its "state_dict" / "model" entry) of name -> tensor. */
qg_status qg_pt_load_mem(const uint8_t *data, size_t len, const char *fname, qg_state *out);
qg_status qg_pt_load(const char *path, qg_state *out);

/* Writer: storages are registered (not copied; they must stay valid until finish), the
 * caller pickles references to them by key, then finish lays out the zip as torch does. */
typedef struct {
  char *prefix;
  struct {
    const void *data;
    size_t n;
  } *st;
  int n, cap;
} qg_torch_writer;

void qg_torch_writer_init(qg_torch_writer *w, const char *prefix /* e.g. "archive" */);
/* Registers a storage and returns its key ("0", "1", ...) in key (cap >= 24). */
qg_status qg_torch_writer_storage(qg_torch_writer *w, const void *data, size_t n, char *key, size_t cap);
/* Builds the zip image: data.pkl, .format_version, .storage_alignment, byteorder,
 * data/<key>..., version, .data/serialization_id. */
qg_status qg_torch_writer_finish(qg_torch_writer *w, const qg_buf *pickle, qg_buf *image);
void qg_torch_writer_free(qg_torch_writer *w);

/* Saves a qg_state as a torch.save'd OrderedDict state dict (atomic write). */
qg_status qg_pt_save(const char *path, const qg_state *s);
/* The same into memory (the image a .ptz compresses). */
qg_status qg_pt_save_mem(const qg_state *s, qg_buf *image);

#endif
