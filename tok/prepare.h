/* Corpus preparation: documents to contest token shards, as the contest's
 * data/download_hf_docs_and_tokenize.py lays them out.
 *
 * Input files are plain text (documents separated by one or more blank lines; a
 * document's inner line breaks are kept) or JSONL (name ending in .jsonl or .json: one
 * object per line whose "text" string is the document). Each document becomes BOS + its
 * tokens. The first val_docs documents go to {name}_val_000000.bin, ..., the rest to
 * {name}_train_000000.bin, ...; each shard holds shard_tokens tokens except the last of
 * its split (a document may continue in the next shard).
 *
 * Nothing is visible until the end: shards are written under temporary names and renamed
 * only when every document was encoded, so a failure leaves no shard behind. */
#ifndef QG_TOK_PREPARE_H
#define QG_TOK_PREPARE_H

#include <stdint.h>

#include "tok/tok.h"

typedef struct {
  const char *out_dir;
  const char *name;     /* default "fineweb" */
  int64_t val_docs;     /* default 50,000 (the contest's) */
  int64_t shard_tokens; /* default 100,000,000 (the contest's) */
  int threads;          /* encoder threads, default 2 */
  /* called from the calling thread after each batch (may be NULL) */
  void (*progress)(void *user, int64_t docs, int64_t bytes_done, int64_t bytes_total);
  void *progress_user;
} qg_tok_prepare_opts;

typedef struct {
  int64_t docs, tokens, text_bytes; /* tokens include one BOS per document */
  int shards;
} qg_tok_split_stats;

typedef struct {
  qg_tok_split_stats val, train;
} qg_tok_prepare_stats;

void qg_tok_prepare_defaults(qg_tok_prepare_opts *o);
qg_status qg_tok_prepare(const qg_tok *t, const char *const *inputs, int n_inputs,
                         const qg_tok_prepare_opts *o, qg_tok_prepare_stats *stats);

#endif
