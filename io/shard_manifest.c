/* The tokenizer manifest beside prepared shards (io/shard_manifest.h). */
#include "io/shard_manifest.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/file.h"
#include "core/json.h"
#include "core/sha256.h"
#include "core/util.h"
#include "io/json_parse.h"

void qg_spm_pieces_sha256(const qg_spm *s, char hex[65]) {
  qg_sha256 c;
  qg_sha256_init(&c);
  for (int i = 0; i < s->n_pieces; i++) {
    uint8_t head[5] = {(uint8_t)s->pieces[i].type};
    qg_wr_u32le(head + 1, (uint32_t)s->pieces[i].len);
    qg_sha256_update(&c, head, sizeof head);
    qg_sha256_update(&c, s->pieces[i].piece, (size_t)s->pieces[i].len);
  }
  uint8_t d[32];
  qg_sha256_final(&c, d);
  qg_sha256_hex(d, hex);
}

qg_status qg_shard_manifest_write(const char *dir, const char *name, const char *tokenizer_path, const qg_spm *s) {
  char file_sha[65], pieces_sha[65];
  QG_TRY(qg_sha256_file(tokenizer_path, file_sha));
  qg_spm_pieces_sha256(s, pieces_sha);
  qg_buf b;
  qg_buf_init(&b);
  qg_json j;
  qg_json_init(&j, &b, 1);
  qg_json_obj_begin(&j);
  qg_json_key(&j, "format"), qg_json_str(&j, QG_SHARD_MANIFEST_FORMAT);
  qg_json_key(&j, "name"), qg_json_str(&j, name);
  qg_json_key(&j, "tokenizer"), qg_json_str(&j, tokenizer_path);
  qg_json_key(&j, "tokenizer_sha256"), qg_json_str(&j, file_sha);
  qg_json_key(&j, "pieces"), qg_json_int(&j, s->n_pieces);
  qg_json_key(&j, "pieces_sha256"), qg_json_str(&j, pieces_sha);
  qg_json_obj_end(&j);
  qg_buf_byte(&b, '\n');
  char path[4096];
  snprintf(path, sizeof path, "%s/%s_tokenizer.json", dir, name);
  qg_status st = qg_buf_status(&b);
  if (!st) st = qg_write_file_atomic(path, b.p, b.n);
  qg_buf_free(&b);
  return st;
}

/* Whether s[0..n) is "_val_" or "_train_" followed by digits and ".bin". */
static size_t split_suffix(const char *base) {
  size_t n = strlen(base);
  if (n < 5 || strcmp(base + n - 4, ".bin")) return 0;
  size_t d = n - 4;
  while (d > 0 && isdigit((unsigned char)base[d - 1])) d--;
  if (d == n - 4) return 0;
  if (d >= 5 && !strncmp(base + d - 5, "_val_", 5)) return n - (d - 5);
  if (d >= 7 && !strncmp(base + d - 7, "_train_", 7)) return n - (d - 7);
  return 0;
}

int qg_shard_manifest_path(const char *shard_path, char *out, size_t cap) {
  const char *slash = strrchr(shard_path, '/');
  const char *base = slash ? slash + 1 : shard_path;
  size_t suf = split_suffix(base);
  if (!suf || suf == strlen(base)) return 0;
  int n = snprintf(out, cap, "%.*s_tokenizer.json", (int)(strlen(shard_path) - suf), shard_path);
  return n > 0 && (size_t)n < cap;
}

/* Reads one manifest's piece count and pieces hash (and the tokenizer it names). */
static qg_status read_manifest(const char *path, int64_t *pieces, char sha[65], char *tok, size_t tok_cap) {
  uint8_t *d;
  size_t n;
  QG_TRY(qg_read_file(path, &d, &n, 1 << 20));
  qg_jdoc doc;
  const qg_jnode *root;
  qg_jopts jo = {.name = path};
  qg_status s = qg_jparse((const char *)d, n, &jo, &doc, &root);
  free(d);
  if (s) return s;
  const qg_jnode *f = qg_jobj_get(root, "format"), *p = qg_jobj_get(root, "pieces"),
                 *h = qg_jobj_get(root, "pieces_sha256"), *t = qg_jobj_get(root, "tokenizer");
  if (root->type != QG_JOBJ || !f || f->type != QG_JSTR || strcmp(f->s, QG_SHARD_MANIFEST_FORMAT) || !p ||
      p->type != QG_JNUM || !p->is_int || !h || h->type != QG_JSTR || h->len != 64)
    s = qg_fail(QG_ERR_INPUT, "%s: not a %s shard manifest (format, pieces, pieces_sha256)", path,
                QG_SHARD_MANIFEST_FORMAT);
  if (!s) {
    *pieces = p->i;
    memcpy(sha, h->s, 65);
    snprintf(tok, tok_cap, "%s", t && t->type == QG_JSTR ? t->s : "?");
  }
  qg_jdoc_free(&doc);
  return s;
}

qg_status qg_shards_check_tokenizer(const qg_shards *sh, const qg_spm *tok, const char *tok_path, int *checked) {
  if (checked) *checked = 0;
  char mine[65], last[4096] = "";
  qg_spm_pieces_sha256(tok, mine);
  for (int i = 0; i < sh->n_files; i++) {
    char mpath[4096];
    struct stat sb;
    if (!sh->files[i].map.data) continue; /* a memory shard: no folder to look in */
    if (!qg_shard_manifest_path(sh->files[i].name, mpath, sizeof mpath) || !strcmp(mpath, last)) continue;
    snprintf(last, sizeof last, "%s", mpath);
    if (stat(mpath, &sb) != 0) continue;
    int64_t pieces;
    char sha[65], their[1024];
    QG_TRY(read_manifest(mpath, &pieces, sha, their, sizeof their));
    if (checked) (*checked)++;
    if (strcmp(sha, mine))
      return qg_fail(QG_ERR_INPUT, "%s: these shards were prepared with tokenizer %s (%lld pieces, as %s records), "
                     "not %s (%d pieces%s): bytes per token and so val_bpb would be counted with the wrong pieces; "
                     "give the tokenizer they were prepared with (or --allow-tokenizer-mismatch)",
                     sh->files[i].name, their, (long long)pieces, mpath, tok_path, tok->n_pieces,
                     pieces == tok->n_pieces ? ", other pieces" : "");
  }
  return QG_OK;
}
