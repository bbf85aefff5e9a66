/* Writing SentencePiece .model (ModelProto) and .vocab files, and assembling a .model from
 * a .vocab. Fields are written in field-number order, as protobuf serializers do, and
 * every trainer_spec field is written (spm_train's own files carry them all too). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "tok/train.h"
#include "tok/train_internal.h"

static void pb_varint(qg_buf *b, uint64_t v) {
  while (v >= 0x80) {
    qg_buf_byte(b, (uint8_t)(v | 0x80));
    v >>= 7;
  }
  qg_buf_byte(b, (uint8_t)v);
}
static void pb_tag(qg_buf *b, uint32_t field, int wire) { pb_varint(b, (uint64_t)field << 3 | (uint64_t)wire); }
static void pb_u64(qg_buf *b, uint32_t field, uint64_t v) {
  pb_tag(b, field, 0);
  pb_varint(b, v);
}
/* int32 is sign-extended to 64 bits on the wire */
static void pb_i32(qg_buf *b, uint32_t field, int32_t v) { pb_u64(b, field, (uint64_t)(int64_t)v); }
static void pb_bool(qg_buf *b, uint32_t field, int v) { pb_u64(b, field, v ? 1 : 0); }
static void pb_bytes(qg_buf *b, uint32_t field, const void *p, size_t n) {
  pb_tag(b, field, 2);
  pb_varint(b, n);
  qg_buf_append(b, p, n);
}
static void pb_str(qg_buf *b, uint32_t field, const char *s) { pb_bytes(b, field, s, strlen(s)); }
static void pb_float(qg_buf *b, uint32_t field, float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  pb_tag(b, field, 5);
  qg_buf_u32le(b, u);
}
static void pb_msg(qg_buf *b, uint32_t field, qg_buf *m) {
  pb_bytes(b, field, m->p, m->n);
  if (m->failed) b->failed = 1;
  qg_buf_free(m);
}
static const char *nz(const char *s) { return s ? s : ""; }

static void write_trainer(qg_buf *b, const qg_spm_trainer *t) {
  qg_buf m;
  qg_buf_init(&m);
  for (int i = 0; i < t->n_input; i++) pb_str(&m, 1, t->input[i]);
  pb_str(&m, 2, nz(t->model_prefix));
  pb_i32(&m, 3, t->model_type);
  pb_i32(&m, 4, t->vocab_size);
  for (int i = 0; i < t->n_accept_language; i++) pb_str(&m, 5, t->accept_language[i]);
  pb_i32(&m, 6, t->self_test_sample_size);
  pb_str(&m, 7, nz(t->input_format));
  pb_float(&m, 10, t->character_coverage);
  pb_u64(&m, 11, t->input_sentence_size);
  pb_i32(&m, 14, t->seed_sentencepiece_size);
  pb_float(&m, 15, t->shrinking_factor);
  pb_i32(&m, 16, t->num_threads);
  pb_i32(&m, 17, t->num_sub_iterations);
  pb_i32(&m, 18, t->max_sentence_length);
  pb_bool(&m, 19, t->shuffle_input_sentence);
  pb_i32(&m, 20, t->max_sentencepiece_length);
  pb_bool(&m, 21, t->split_by_unicode_script);
  pb_bool(&m, 22, t->split_by_whitespace);
  pb_bool(&m, 23, t->split_by_number);
  pb_bool(&m, 24, t->treat_whitespace_as_suffix);
  pb_bool(&m, 25, t->split_digits);
  pb_bool(&m, 26, t->allow_whitespace_only_pieces);
  for (int i = 0; i < t->n_control_symbols; i++) pb_str(&m, 30, t->control_symbols[i]);
  for (int i = 0; i < t->n_user_defined_symbols; i++) pb_str(&m, 31, t->user_defined_symbols[i]);
  pb_bool(&m, 32, t->vocabulary_output_piece_score);
  pb_bool(&m, 33, t->hard_vocab_limit);
  pb_bool(&m, 34, t->use_all_vocab);
  pb_bool(&m, 35, t->byte_fallback);
  pb_str(&m, 36, nz(t->required_chars));
  pb_i32(&m, 40, t->unk_id);
  pb_i32(&m, 41, t->bos_id);
  pb_i32(&m, 42, t->eos_id);
  pb_i32(&m, 43, t->pad_id);
  pb_str(&m, 44, t->unk_surface ? t->unk_surface : " \xE2\x81\x87 ");
  pb_str(&m, 45, t->unk_piece ? t->unk_piece : "<unk>");
  pb_str(&m, 46, t->bos_piece ? t->bos_piece : "<s>");
  pb_str(&m, 47, t->eos_piece ? t->eos_piece : "</s>");
  pb_str(&m, 48, t->pad_piece ? t->pad_piece : "<pad>");
  pb_bool(&m, 49, t->train_extremely_large_corpus);
  pb_str(&m, 53, nz(t->pretokenization_delimiter));
  pb_str(&m, 54, nz(t->seed_sentencepieces_file));
  pb_msg(b, 2, &m);
}

static void write_normalizer(qg_buf *b, uint32_t field, const qg_spm_normalizer *n) {
  qg_buf m;
  qg_buf_init(&m);
  pb_str(&m, 1, nz(n->name));
  if (n->charsmap_len) pb_bytes(&m, 2, n->charsmap, n->charsmap_len);
  pb_bool(&m, 3, n->add_dummy_prefix);
  pb_bool(&m, 4, n->remove_extra_whitespaces);
  pb_bool(&m, 5, n->escape_whitespaces);
  if (n->normalization_rule_tsv && *n->normalization_rule_tsv)
    pb_str(&m, 6, n->normalization_rule_tsv);
  pb_msg(b, field, &m);
}

qg_status qg_tok_model_serialize(const qg_spm *s, qg_buf *out) {
  for (int i = 0; i < s->n_pieces; i++) {
    const qg_spm_piece *p = &s->pieces[i];
    qg_buf m;
    qg_buf_init(&m);
    pb_bytes(&m, 1, p->piece, p->len);
    pb_float(&m, 2, p->score);
    if (p->type != QG_SPM_NORMAL) pb_i32(&m, 3, p->type);
    pb_msg(out, 1, &m);
  }
  write_trainer(out, &s->trainer);
  write_normalizer(out, 3, &s->normalizer);
  if (s->has_denormalizer) write_normalizer(out, 5, &s->denormalizer);
  if (out->failed) return qg_fail(QG_ERR_NOMEM, "out of memory serializing a model");
  return QG_OK;
}

qg_status qg_tok_model_write(const qg_spm *s, const char *path) {
  qg_buf b;
  qg_buf_init(&b);
  qg_status st = qg_tok_model_serialize(s, &b);
  if (!st) st = qg_write_file_atomic(path, b.p, b.n);
  qg_buf_free(&b);
  return st;
}

qg_status qg_tok_vocab_write(const qg_spm *s, const char *path) {
  qg_buf b;
  qg_buf_init(&b);
  for (int i = 0; i < s->n_pieces; i++) { /* as SaveVocab: piece TAB score (%g-like) */
    qg_buf_append(&b, s->pieces[i].piece, s->pieces[i].len);
    qg_buf_printf(&b, "\t%g\n", (double)s->pieces[i].score);
  }
  qg_status st = qg_buf_status(&b);
  if (!st) st = qg_write_file_atomic(path, b.p, b.n);
  qg_buf_free(&b);
  return st;
}

qg_status qg_tok_assemble(qg_spm *s, const qg_spm_normalizer *normalizer) {
  if (qg_spm_piece_to_id(s, "<unk>", 5) < 0)
    return qg_fail(QG_ERR_INPUT, "the vocabulary has no <unk> piece (SentencePiece requires one)");
  qg_spm_trainer *t = &s->trainer;
  /* qg_spm_parse_vocab already set the special ids */
  qg_spm_set_contest_trainer(s);
  t->num_threads = 16;
  s->specs_assumed = 0;
  if (normalizer) return qg_tok_copy_normalizer(&s->normalizer, normalizer);
  free(s->normalizer.name);
  s->normalizer.name = qg_strdup("identity");
  if (!s->normalizer.name) return qg_fail(QG_ERR_NOMEM, "out of memory");
  s->normalizer.add_dummy_prefix = 0;
  s->normalizer.remove_extra_whitespaces = 1;
  s->normalizer.escape_whitespaces = 1;
  s->specs_assumed = 0;
  return QG_OK;
}

/* ---- the model ------------------------------------------------------------------------------ */

qg_status qg_tok__set_str(char **dst, const char *src) {
  free(*dst);
  *dst = qg_strdup(src);
  return *dst ? QG_OK : qg_fail(QG_ERR_NOMEM, "trainer: out of memory");
}

/* The trainer spec written into the model: what was used, proto defaults elsewhere. */
static qg_status qg_tok__fill_trainer_spec(qg_spm_trainer *t, const qg_tok_train_opts *o,
                                   const char *const *files, int n_files, int n_pieces) {
  memset(t, 0, sizeof *t);
  t->input = calloc((size_t)n_files + 1, sizeof *t->input);
  if (!t->input) return qg_fail(QG_ERR_NOMEM, "trainer: out of memory");
  for (int i = 0; i < n_files; i++) {
    QG_TRY(qg_tok__set_str(&t->input[i], files[i]));
    t->n_input++;
  }
  QG_TRY(qg_tok__set_str(&t->input_format, ""));
  QG_TRY(qg_tok__set_str(&t->model_prefix, ""));
  t->model_type = QG_SPM_BPE;
  t->vocab_size = n_pieces; /* hard_vocab_limit off: the size reached */
  t->character_coverage = o->character_coverage;
  t->shuffle_input_sentence = 1;
  t->seed_sentencepiece_size = 1000000;
  t->shrinking_factor = 0.75f;
  t->max_sentence_length = o->max_sentence_length;
  t->num_threads = 16;
  t->num_sub_iterations = 2;
  t->max_sentencepiece_length = o->max_sentencepiece_length;
  t->split_by_unicode_script = o->split_by_unicode_script;
  t->split_by_number = o->split_by_number;
  t->split_by_whitespace = o->split_by_whitespace;
  t->split_digits = o->split_digits;
  QG_TRY(qg_tok__set_str(&t->pretokenization_delimiter, ""));
  QG_TRY(qg_tok__set_str(&t->required_chars, ""));
  t->byte_fallback = o->byte_fallback;
  t->vocabulary_output_piece_score = 1;
  t->hard_vocab_limit = 0;
  t->unk_id = o->unk_id, t->bos_id = o->bos_id, t->eos_id = o->eos_id, t->pad_id = o->pad_id;
  QG_TRY(qg_tok__set_str(&t->unk_piece, "<unk>"));
  QG_TRY(qg_tok__set_str(&t->bos_piece, "<s>"));
  QG_TRY(qg_tok__set_str(&t->eos_piece, "</s>"));
  QG_TRY(qg_tok__set_str(&t->pad_piece, "<pad>"));
  QG_TRY(qg_tok__set_str(&t->unk_surface, " \xE2\x81\x87 "));
  QG_TRY(qg_tok__set_str(&t->seed_sentencepieces_file, ""));
  return QG_OK;
}

qg_status qg_tok__identity_normalizer(qg_spm_normalizer *n) {
  memset(n, 0, sizeof *n);
  QG_TRY(qg_tok__set_str(&n->name, "identity"));
  QG_TRY(qg_tok__set_str(&n->normalization_rule_tsv, ""));
  n->add_dummy_prefix = 0; /* the contest's flags */
  n->remove_extra_whitespaces = 1;
  n->escape_whitespaces = 1;
  return QG_OK;
}

/* Meta pieces at their ids (InitMetaPieces): unk, bos, eos, pad, then the byte pieces in
 * the lowest free ids. names[id] = NULL where a learned piece goes. */
qg_status qg_tok__meta_layout(const qg_tok_train_opts *o, char (*names)[8], int *types, int n) {
  const int ids[4] = {o->unk_id, o->bos_id, o->eos_id, o->pad_id};
  const char *nm[4] = {"<unk>", "<s>", "</s>", "<pad>"};
  for (int i = 0; i < n; i++) names[i][0] = 0;
  if (o->unk_id < 0) return qg_fail(QG_ERR_INPUT, "trainer: unk_id must be set");
  for (int k = 0; k < 4; k++) {
    if (ids[k] < 0) continue;
    if (ids[k] >= n || names[ids[k]][0])
      return qg_fail(QG_ERR_INPUT, "trainer: id %d for %s is taken or not below vocab_size %d",
                     ids[k], nm[k], n);
    snprintf(names[ids[k]], 8, "%s", nm[k]);
    types[ids[k]] = k == 0 ? QG_SPM_UNKNOWN : QG_SPM_CONTROL;
  }
  if (o->byte_fallback)
    for (int b = 0, id = 0; b < 256; b++) {
      while (id < n && names[id][0]) id++;
      if (id >= n) return qg_fail(QG_ERR_INPUT, "trainer: vocab_size %d leaves no room for the "
                                  "256 byte pieces", n);
      snprintf(names[id], 8, "<0x%02X>", b);
      types[id] = QG_SPM_BYTE;
    }
  return QG_OK;
}

qg_status qg_tok__build_model(const qg_tok_train_opts *o, const char *const *files, int n_files,
                             char (*names)[8], const int *types, int n_meta_slots,
                             const qg_buf *pool, const uint32_t *p_off, const uint32_t *p_len,
                             size_t n_final, qg_spm *out) {
  qg_spm m;
  memset(&m, 0, sizeof m);
  size_t total = 0, fid = 0;
  qg_status st = QG_OK;
  m.pieces = calloc((size_t)n_meta_slots + n_final + 1, sizeof *m.pieces);
  if (!m.pieces) return qg_fail(QG_ERR_NOMEM, "trainer: out of memory");
  /* TrainerInterface::Serialize: ids in order, meta where placed, learned pieces between */
  for (int id = 0; id < n_meta_slots && !st; id++) {
    qg_spm_piece *p = &m.pieces[total];
    if (names[id][0]) {
      p->piece = qg_strdup(names[id]);
      p->len = strlen(names[id]);
      p->type = types[id];
      p->score = 0;
    } else if (fid < n_final) {
      p->piece = qg_strndup((const char *)pool->p + p_off[fid], p_len[fid]);
      p->len = p_len[fid];
      p->type = QG_SPM_NORMAL;
      p->score = -(float)fid;
      fid++;
    } else {
      continue;
    }
    if (!p->piece) st = qg_fail(QG_ERR_NOMEM, "trainer: out of memory");
    if ((size_t)id != total && names[id][0])
      st = qg_fail(QG_ERR_INPUT, "trainer: too few pieces learned to place %s at id %d (%zu "
                   "pieces)", names[id], id, total);
    total++;
    m.n_pieces = (int)total;
  }
  if (!st) st = qg_tok__fill_trainer_spec(&m.trainer, o, files, n_files, (int)total);
  if (!st) st = o->normalizer ? qg_tok_copy_normalizer(&m.normalizer, o->normalizer)
                              : qg_tok__identity_normalizer(&m.normalizer);
  if (!st) {
    qg_spm_normalizer *nn = &m.normalizer;
    if (!nn->name && !(nn->name = qg_strdup(""))) st = qg_fail(QG_ERR_NOMEM, "out of memory");
  }
  qg_buf b;
  qg_buf_init(&b);
  if (!st) st = qg_tok_model_serialize(&m, &b);
  /* read back through the .model reader: its checks, its defaults, its piece index */
  if (!st) st = qg_spm_parse_model(b.p, b.n, "trained model", out);
  qg_buf_free(&b);
  qg_spm_free(&m);
  return st;
}

