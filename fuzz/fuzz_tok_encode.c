/* libFuzzer harness: the SentencePiece encoder and decoder on arbitrary text, with a real
 * model whose charsmap has custom rules (tests/data/tok_rules.model). Encoding must never
 * fail on any bytes (invalid UTF-8 becomes U+FFFD), every id must be in range, and
 * decoding the ids must succeed. */
#include <stdio.h>
#include <stdlib.h>

#include "tok/tok.h"

static qg_tok tok;
static qg_tok_ctx *ctx;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!ctx) {
    if (qg_tok_load(&tok, QG_SOURCE_DIR "/tests/data/tok_rules.model", NULL) || qg_tok_ctx_new(&tok, &ctx)) {
      fprintf(stderr, "fuzz_tok_encode: %s\n", qg_last_error());
      abort();
    }
  }
  qg_tok_ids ids = {0};
  if (qg_tok_encode(ctx, data, size, &ids) != QG_OK) abort(); /* any text must encode */
  for (size_t i = 0; i < ids.n; i++)
    if (ids.v[i] < 0 || ids.v[i] >= tok.spm.n_pieces) abort();
  qg_buf out;
  qg_buf_init(&out);
  if (qg_tok_decode(&tok, ids.v, ids.n, &out) != QG_OK) abort();
  qg_buf_free(&out);
  qg_tok_ids_free(&ids);
  return 0;
}
