/* The tokenizer manifest beside prepared shards. A shard holds token ids only; the bytes
 * per token that val_bpb divides by come from whichever tokenizer the evaluator is given,
 * so a different tokenizer silently changes val_bpb (M's 2.2950 becomes 1.8972 with a
 * non-contest .model). `prepare` therefore writes DIR/{name}_tokenizer.json:
 *   {"format": "quantgolf-shards-v1", "name": NAME, "tokenizer": PATH,
 *    "tokenizer_sha256": SHA-256 of that file, "pieces": N, "pieces_sha256": HEX}
 * and whoever opens the shards (eval, kld, train, the experiment runner) checks the
 * tokenizer it was given against it. The check compares the *pieces* (pieces_sha256, see
 * qg_spm_pieces_sha256): the .model and .vocab of one tokenizer give the same byte counts
 * and pass; any change to a piece or its type fails. Shards without a manifest (the
 * contest's own downloads) are not checked. */
#ifndef QG_IO_SHARD_MANIFEST_H
#define QG_IO_SHARD_MANIFEST_H

#include <stddef.h>

#include "io/shards.h"
#include "io/spm.h"

#define QG_SHARD_MANIFEST_FORMAT "quantgolf-shards-v1"

/* SHA-256 over every piece in id order: its type as one byte, its length as 4 bytes
 * little-endian, its bytes. Exactly what the byte-count tables depend on (and the ids). */
void qg_spm_pieces_sha256(const qg_spm *s, char hex[65]);
/* Writes DIR/{name}_tokenizer.json for the tokenizer at path (atomically). */
qg_status qg_shard_manifest_write(const char *dir, const char *name, const char *tokenizer_path, const qg_spm *s);
/* The manifest that belongs to a shard file: DIR/{name}_tokenizer.json when its file name
 * is {name}_val_DIGITS.bin or {name}_train_DIGITS.bin; 0 (nothing written) otherwise. */
int qg_shard_manifest_path(const char *shard_path, char *out, size_t cap);
/* For each distinct manifest beside the files of sh that exists: the pieces of tok must
 * be the ones the shards were prepared with. A mismatch is QG_ERR_INPUT naming the
 * shards, both tokenizers and their piece counts; *checked (may be NULL) counts the
 * manifests compared. A manifest that cannot be parsed is QG_ERR_INPUT as well. */
qg_status qg_shards_check_tokenizer(const qg_shards *sh, const qg_spm *tok, const char *tok_path, int *checked);

#endif
