/* libFuzzer harness: a .model from untrusted bytes through the whole tokenizer setup --
 * protobuf, piece checks, the precompiled charsmap's double-array trie -- then encoding a
 * fixed text with it. Anything may be rejected; nothing may crash or read out of bounds. */
#include <string.h>

#include "tok/tok.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  qg_spm spm;
  if (qg_spm_parse_model(data, size, "fuzz.model", &spm) != QG_OK) return 0;
  qg_tok tok;
  if (qg_tok_init(&tok, &spm) != QG_OK) {
    qg_spm_free(&spm); /* init took ownership and zeroed it; freeing is a no-op */
    return 0;
  }
  qg_tok_ctx *ctx;
  if (qg_tok_ctx_new(&tok, &ctx) == QG_OK) {
    static const char text[] = "Hello  world\xef\xbc\xa1\xe2\x85\xa0 12345 \xff\xfe caf\xc3\xa9 \t\n end";
    qg_tok_ids ids = {0};
    if (qg_tok_encode(ctx, (const uint8_t *)text, sizeof text - 1, &ids) == QG_OK) {
      qg_buf out;
      qg_buf_init(&out);
      (void)qg_tok_decode(&tok, ids.v, ids.n, &out);
      qg_buf_free(&out);
    }
    qg_tok_ids_free(&ids);
    qg_tok_ctx_free(ctx);
  }
  qg_tok_free(&tok);
  return 0;
}
