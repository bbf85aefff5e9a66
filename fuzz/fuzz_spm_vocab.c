/* libFuzzer harness: SentencePiece .vocab (piece<TAB>score text) parsing, then the BPB
 * tables and lookups on whatever parsed. Seed with the real .vocab files. */
#include <stddef.h>
#include <stdint.h>

#include "io/spm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  qg_spm s;
  if (qg_spm_parse_vocab(data, size, "fuzz.vocab", &s) == QG_OK) {
    qg_spm_luts l;
    if (qg_spm_luts_init(&l, &s, s.n_pieces + 3) == QG_OK) {
      uint16_t toks[3] = {(uint16_t)(l.size - 1), 0, (uint16_t)(l.size / 2)};
      int64_t bytes;
      (void)qg_spm_count_bytes(&l, toks, 3, &bytes);
      qg_spm_luts_free(&l);
    }
    /* every piece must find its own id (reserved pieces win over normal twins) */
    for (int id = 0; id < s.n_pieces && id < 64; id++)
      if (qg_spm_piece_to_id(&s, s.pieces[id].piece, s.pieces[id].len) < 0) __builtin_trap();
    if (s.specs_assumed != 1) __builtin_trap();
  }
  qg_spm_free(&s);
  return 0;
}
