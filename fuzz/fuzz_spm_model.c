/* libFuzzer harness: SentencePiece .model (protobuf) parsing, then the BPB tables and a
 * few lookups on whatever parsed. Seed with the real .model. */
#include <stddef.h>
#include <stdint.h>

#include "io/spm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  qg_spm s;
  if (qg_spm_parse_model(data, size, "fuzz.model", &s) == QG_OK) {
    qg_spm_luts l;
    /* below, at and above the piece count: padding and the max() sizing */
    int sizes[3] = {0, s.n_pieces, s.n_pieces + 7};
    for (int i = 0; i < 3; i++) {
      if (qg_spm_luts_init(&l, &s, sizes[i]) != QG_OK) continue;
      uint16_t toks[4] = {0, (uint16_t)(l.size - 1), 0, (uint16_t)(l.size / 2)};
      int64_t bytes;
      (void)qg_spm_count_bytes(&l, toks, 4, &bytes);
      qg_spm_luts_free(&l);
    }
    for (int id = 0; id < s.n_pieces && id < 64; id++)
      if (qg_spm_piece_to_id(&s, s.pieces[id].piece, s.pieces[id].len) < 0) __builtin_trap();
  }
  qg_spm_free(&s);
  return 0;
}
