/* Pieces of the trainer shared between tok/train.c (the algorithm) and tok/model_write.c
 * (turning its result into a model). Not a public interface. */
#ifndef QG_TOK_TRAIN_INTERNAL_H
#define QG_TOK_TRAIN_INTERNAL_H

#include "tok/train.h"

qg_status qg_tok__set_str(char **dst, const char *src);
/* identity normalization with the contest's flags (add_dummy_prefix off) */
qg_status qg_tok__identity_normalizer(qg_spm_normalizer *n);
/* Meta pieces at their ids: names[id] ("" where a learned piece goes) and types[id]. */
qg_status qg_tok__meta_layout(const qg_tok_train_opts *o, char (*names)[8], int *types, int n);
/* The model: meta pieces and the n_final learned pieces (pool[off..off+len)) in id order,
 * the trainer spec used, the normalizer; serialized and read back into *out. */
qg_status qg_tok__build_model(const qg_tok_train_opts *o, const char *const *files, int n_files,
                              char (*names)[8], const int *types, int n_meta_slots,
                              const qg_buf *pool, const uint32_t *p_off, const uint32_t *p_len,
                              size_t n_final, qg_spm *out);
#endif
