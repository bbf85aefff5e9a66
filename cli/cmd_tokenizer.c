/* quantgolf tokenizer assemble | train: writing SentencePiece BPE .model files. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/commands.h"
#include "tok/train.h"

void qg_cmd_tokenizer_help(void) {
  printf(
      "usage: quantgolf tokenizer assemble --vocab V.vocab [--normalizer-from M.model] --out X.model\n"
      "       quantgolf tokenizer train --input FILE [--input FILE ...] --vocab-size N --out X.model\n"
      "                                 [--byte-fallback | --no-byte-fallback] [--normalizer-from M.model]\n"
      "                                 [--character-coverage F] [--no-split-digits]\n\n"
      "assemble: a real SentencePiece .model from a .vocab (such as the contest's\n"
      "  fineweb_1024_bpe.vocab) with the contest's trainer settings: BPE, byte_fallback,\n"
      "  split_digits, character_coverage 0.999, pad/bos/eos/unk as the vocabulary places them\n"
      "  (0/1/2/3 in the contest's). The normalizer is identity unless --normalizer-from takes\n"
      "  the normalizer spec (precompiled charsmap and flags) of another .model. The\n"
      "  sentencepiece library loads the result and encodes exactly as quantgolf does.\n\n"
      "train: SentencePiece BPE training as spm_train --model_type=bpe does it (same pieces\n"
      "  in the same order on the same input): each input line is a sentence; the contest's\n"
      "  settings are the defaults (byte fallback on, character_coverage 0.999, split_digits,\n"
      "  pad/bos/eos/unk = 0/1/2/3, add_dummy_prefix off, identity normalization unless\n"
      "  --normalizer-from). Writes X.model and, beside it, X.vocab. Progress on stderr.\n");
}

static void progress(void *user, const char *stage, double done, double total) {
  time_t *last = user;
  time_t now = time(NULL);
  if (now == *last && done < total) return;
  *last = now;
  fprintf(stderr, "\rquantgolf tokenizer train: %s %.0f / %.0f (%.0f%%)   ", stage, done, total,
          total > 0 ? 100.0 * done / total : 100.0);
  if (done >= total) fputc('\n', stderr);
}

static int load_normalizer(const char *path, qg_spm *donor) {
  qg_status st = qg_spm_load(path, donor);
  if (!st && donor->specs_assumed) {
    qg_spm_free(donor);
    st = qg_fail(QG_ERR_INPUT, "%s: --normalizer-from needs a .model (a .vocab carries no "
                 "normalizer)", path);
  }
  return st ? qg_cli_report("tokenizer", st) : 0;
}

static int assemble(int argc, char **argv) {
  const char *vocab = NULL, *nfrom = NULL, *out = NULL;
  const qg_arg args[] = {{.name = "--vocab", .kind = QG_ARG_STR, .dst = &vocab},
                         {.name = "--normalizer-from", .kind = QG_ARG_STR, .dst = &nfrom},
                         {.name = "--out", .kind = QG_ARG_STR, .dst = &out},
                         {0}};
  const qg_args_spec spec = {.cmd = "tokenizer", .args = args, .unknown = "assemble: unexpected argument '{arg}'"};
  if (qg_cli_parse(&spec, &argc, argv)) return 2;
  if (!vocab || !out) return qg_cli_usage_error("tokenizer", "assemble needs --vocab and --out");
  qg_spm s, donor;
  memset(&donor, 0, sizeof donor);
  qg_status st = qg_spm_load(vocab, &s);
  if (st) return qg_cli_report("tokenizer", st);
  if (!s.specs_assumed) {
    qg_spm_free(&s);
    return qg_cli_report("tokenizer", qg_fail(QG_ERR_INPUT, "%s: is a .model already; assemble "
                                              "takes a .vocab", vocab));
  }
  int rc = nfrom ? load_normalizer(nfrom, &donor) : 0;
  if (rc) {
    qg_spm_free(&s);
    return rc;
  }
  st = qg_tok_assemble(&s, nfrom ? &donor.normalizer : NULL);
  if (!st) st = qg_tok_model_write(&s, out);
  if (!st)
    fprintf(stderr, "quantgolf tokenizer: %s: %d pieces (%d byte pieces), normalizer %s%s -> %s\n",
            vocab, s.n_pieces, s.n_byte_pieces, s.normalizer.name,
            s.normalizer.charsmap_len ? " (precompiled charsmap)" : "", out);
  qg_spm_free(&s);
  qg_spm_free(&donor);
  return st ? qg_cli_report("tokenizer", st) : 0;
}

static int train(int argc, char **argv) {
  qg_tok_train_opts o;
  qg_tok_train_defaults(&o);
  const char *nfrom = NULL, *out = NULL;
  const char **inputs = calloc((size_t)argc, sizeof *inputs);
  if (!inputs) return qg_cli_report("tokenizer", qg_fail(QG_ERR_NOMEM, "out of memory"));
  qg_arg_list in = {inputs, 0, argc};
  int size = 0;
  const qg_arg args[] = {
      {.name = "--input", .kind = QG_ARG_LIST, .dst = &in},
      {.name = "--vocab-size", .kind = QG_ARG_INT, .dst = &size, .lo = 1, .hi = 65536,
       .bad = "--vocab-size must be 1..65536 (uint16 shards)"},
      {.name = "--character-coverage", .kind = QG_ARG_F32, .dst = &o.character_coverage,
       .bad = "--character-coverage takes a number"},
      {.name = "--byte-fallback", .kind = QG_ARG_FLAG, .dst = &o.byte_fallback},
      {.name = "--no-byte-fallback", .kind = QG_ARG_FLAG, .dst = &o.byte_fallback, .flags = QG_ARG_CLEAR},
      {.name = "--no-split-digits", .kind = QG_ARG_FLAG, .dst = &o.split_digits, .flags = QG_ARG_CLEAR},
      {.name = "--normalizer-from", .kind = QG_ARG_STR, .dst = &nfrom},
      {.name = "--out", .kind = QG_ARG_STR, .dst = &out},
      {0}};
  const qg_args_spec spec = {.cmd = "tokenizer", .args = args, .unknown = "train: unexpected argument '{arg}'"};
  if (qg_cli_parse(&spec, &argc, argv)) {
    free(inputs);
    return 2;
  }
  int n_in = in.n, have_size = size > 0;
  if (have_size) o.vocab_size = size;
  if (!n_in || !out || !have_size) {
    free(inputs);
    return qg_cli_usage_error("tokenizer", "train needs --input, --vocab-size and --out");
  }
  qg_spm donor, model;
  memset(&donor, 0, sizeof donor);
  int rc = nfrom ? load_normalizer(nfrom, &donor) : 0;
  if (rc) {
    free(inputs);
    return rc;
  }
  if (nfrom) o.normalizer = &donor.normalizer;
  time_t last = 0;
  o.progress = progress;
  o.progress_user = &last;
  qg_status st = qg_tok_train(inputs, n_in, &o, &model);
  char *vocab_path = NULL;
  if (!st) st = qg_tok_model_write(&model, out);
  if (!st && qg_ends_with(out, ".model")) {
    size_t n = strlen(out);
    vocab_path = malloc(n + 1);
    if (vocab_path) {
      memcpy(vocab_path, out, n - 6);
      strcpy(vocab_path + n - 6, ".vocab");
      st = qg_tok_vocab_write(&model, vocab_path);
    }
  }
  if (!st)
    fprintf(stderr, "quantgolf tokenizer: trained %d pieces (%d byte pieces) -> %s%s%s\n",
            model.n_pieces, model.n_byte_pieces, out, vocab_path ? ", " : "",
            vocab_path ? vocab_path : "");
  free(vocab_path);
  free(inputs);
  qg_spm_free(&model);
  qg_spm_free(&donor);
  return st ? qg_cli_report("tokenizer", st) : 0;
}

int qg_cmd_tokenizer(int argc, char **argv) {
  if (argc < 2) return qg_cli_usage_error("tokenizer", "expected assemble or train");
  if (!strcmp(argv[1], "assemble")) return assemble(argc - 1, argv + 1);
  if (!strcmp(argv[1], "train")) return train(argc - 1, argv + 1);
  return qg_cli_usage_error("tokenizer", "unknown subcommand '%s' (assemble or train)", argv[1]);
}
