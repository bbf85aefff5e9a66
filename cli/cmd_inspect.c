/* quantgolf inspect FILE [--json]: what a file holds, for every format quantgolf reads. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/commands.h"
#include "cli/json_doc.h"
#include "io/checkpoint.h"
#include "io/ptz.h"
#include "io/qgz.h"
#include "io/shards.h"
#include "io/spm.h"
#include "quant/artifact.h"

/* The text report is gathered here and written only once the whole file has been read:
 * a failing inspect prints its one error line and nothing on stdout. */
static FILE *txt;

void qg_cmd_inspect_help(void) {
  printf(
      "usage: quantgolf inspect FILE [--json]\n\n"
      "Lists what FILE holds. The format is recognised from the content:\n"
      "  safetensors, torch .pt state dicts, contest .int8.ptz artifacts: per tensor its name,\n"
      "    dtype, shape and bytes (and for .ptz the quantization scheme); totals.\n"
      "  contest token shards (a path or a quoted glob, concatenated in sorted order):\n"
      "    files, token counts, smallest and largest token id.\n"
      "  SentencePiece .model / .vocab: pieces by type, trainer and normalizer settings, and\n"
      "    the contest's BPB lookup tables in summary.\n\n"
      "  --json   write the same as one JSON object on stdout\n");
}

/* One row of the tensor table, in text or JSON. */
static void tensor_row(qg_json *j, const char *name, qg_dtype dt, int ndim, const int64_t *shape, int64_t bytes,
                       const char *scheme) {
  char sh[128];
  qg_shape_str(ndim, shape, sh, sizeof sh);
  if (!j) {
    fprintf(txt, "%-40s %-9s %-14s %10lld  %s\n", name, qg_dtype_name(dt), sh, (long long)bytes, scheme ? scheme : "");
    return;
  }
  qg_json_obj_begin(j);
  qg_json_key(j, "name");
  qg_json_str(j, name);
  qg_json_key(j, "dtype");
  qg_json_str(j, qg_dtype_name(dt));
  qg_json_key(j, "shape");
  qg_json_arr_begin(j);
  for (int i = 0; i < ndim; i++) qg_json_int(j, shape[i]);
  qg_json_arr_end(j);
  qg_json_key(j, "bytes");
  qg_json_int(j, bytes);
  if (scheme) {
    qg_json_key(j, "scheme");
    qg_json_str(j, scheme);
  }
  qg_json_obj_end(j);
}

static void totals(qg_json *j, int n, int64_t params, int64_t bytes, long long file_bytes) {
  if (!j) {
    fprintf(txt, "tensors: %d  parameters: %lld  tensor bytes: %lld  file bytes: %lld\n", n, (long long)params,
           (long long)bytes, file_bytes);
    return;
  }
  qg_json_key(j, "tensor_count");
  qg_json_int(j, n);
  qg_json_key(j, "parameters");
  qg_json_int(j, params);
  qg_json_key(j, "tensor_bytes");
  qg_json_int(j, bytes);
  qg_json_key(j, "file_bytes");
  qg_json_int(j, file_bytes);
}

static qg_status inspect_state(const char *path, qg_json *j, long long fbytes) {
  qg_state s;
  qg_format f;
  QG_TRY(qg_checkpoint_load(path, &s, &f));
  if (j) {
    qg_json_key(j, "tensors");
    qg_json_arr_begin(j);
  } else {
    fprintf(txt, "%-40s %-9s %-14s %10s\n", "name", "dtype", "shape", "bytes");
  }
  for (int i = 0; i < s.n; i++) tensor_row(j, s.t[i].name, s.t[i].dtype, s.t[i].ndim, s.t[i].shape, (int64_t)s.t[i].nbytes, NULL);
  if (j) qg_json_arr_end(j);
  totals(j, s.n, qg_state_numel(&s), qg_state_nbytes(&s), fbytes);
  qg_state_free(&s);
  return QG_OK;
}

/* Distinct values among the codes of a section (bits <= 16), or -1 when too wide to count
 * cheaply: how many of the 2^bits levels the quantizer actually used. */
static int64_t levels_used(const qg_qsection *c) {
  if (c->kind != QG_SEC_CODES || c->bits > 16) return -1;
  size_t m = (size_t)1 << c->bits;
  uint8_t *seen = calloc(m, 1);
  if (!seen) return -1;
  int64_t n = 0;
  const uint32_t *v = c->data;
  for (int64_t i = 0; i < c->count; i++)
    if (!seen[v[i] & (m - 1)]) seen[v[i] & (m - 1)] = 1, n++;
  free(seen);
  return n;
}

/* The .qgz as stored: per tensor the quantizer and its canonical options, bits per
 * weight and bytes of its bit-packed sections, and how many code levels it uses. */
static qg_status inspect_qgz(const char *path, qg_json *j, long long fbytes) {
  qg_qgz a;
  QG_TRY(qg_qgz_read(path, &a));
  const char *layout = a.layout == QG_LAYOUT_PACKED ? "packed" : "bytes";
  if (j) {
    qg_json_key(j, "compressor"), qg_json_str(j, qg_compressor_name(a.comp));
    qg_json_key(j, "code_layout"), qg_json_str(j, layout);
    qg_json_key(j, "tensors");
    qg_json_arr_begin(j);
  } else {
    fprintf(txt, "compressor: %s, codes %s\n%-40s %-14s %-9s %7s %7s %10s  %s\n", qg_compressor_name(a.comp), layout,
            "name", "shape", "orig", "bits/w", "levels", "packed B", "method options");
  }
  int64_t params = 0, bytes = 0;
  for (int i = 0; i < a.n; i++) {
    const qg_qtensor *q = &a.t[i];
    int64_t numel = q->rows * q->cols, pb = qg_qtensor_packed_bytes(q);
    const qg_qsection *codes = qg_qtensor_find(q, "codes");
    int64_t lv = codes ? levels_used(codes) : -1;
    double bpw = numel ? 8.0 * (double)pb / (double)numel : 0;
    char sh[128], lvs[32] = "-";
    qg_shape_str(q->ndim, q->shape, sh, sizeof sh);
    if (lv >= 0) snprintf(lvs, sizeof lvs, "%lld", (long long)lv);
    if (!j) {
      fprintf(txt, "%-40s %-14s %-9s %7.3f %7s %10lld  %s %s\n", q->name, sh, qg_dtype_name(q->orig_dtype), bpw, lvs,
              (long long)pb, q->method, q->options ? q->options : "");
    } else {
      qg_json_obj_begin(j);
      qg_json_key(j, "name"), qg_json_str(j, q->name);
      qg_json_key(j, "orig_dtype"), qg_json_str(j, qg_dtype_name(q->orig_dtype));
      qg_json_key(j, "shape");
      qg_json_arr_begin(j);
      for (int d = 0; d < q->ndim; d++) qg_json_int(j, q->shape[d]);
      qg_json_arr_end(j);
      qg_json_key(j, "method"), qg_json_str(j, q->method);
      qg_json_key(j, "options"), qg_json_str(j, q->options ? q->options : "");
      qg_json_key(j, "code_bits");
      if (codes) qg_json_int(j, codes->bits);
      else qg_json_null(j);
      qg_json_key(j, "levels_used");
      if (lv >= 0) qg_json_int(j, lv);
      else qg_json_null(j);
      qg_json_key(j, "bits_per_weight"), qg_json_num(j, bpw);
      qg_json_key(j, "bytes"), qg_json_int(j, pb);
      qg_json_obj_end(j);
    }
    params += numel, bytes += pb;
  }
  if (j) qg_json_arr_end(j);
  totals(j, a.n, params, bytes, fbytes);
  qg_qgz_free(&a);
  return QG_OK;
}

/* Levels an int8 code tensor uses and its largest |q|: an int8 artifact written from
 * 6-bit codes shows |q| <= 31, which the container's "int8" label hides. */
static void int8_levels(const qg_tensor *q, int *levels, int *maxabs) {
  int seen[256] = {0};
  *levels = 0, *maxabs = 0;
  const int8_t *v = q->data;
  int64_t n = qg_tensor_numel(q);
  for (int64_t i = 0; i < n; i++) {
    int x = v[i];
    if (!seen[x + 128]) seen[x + 128] = 1, (*levels)++;
    if (abs(x) > *maxabs) *maxabs = abs(x);
  }
}

/* The .ptz as stored: codes and scales per quantized tensor, passthrough as kept. */
static qg_status inspect_ptz(const char *path, qg_json *j, long long fbytes) {
  qg_int8_artifact a;
  QG_TRY(qg_ptz_read(path, &a));
  if (j) {
    qg_json_key(j, "quant_format");
    qg_json_str(j, a.format);
    qg_json_key(j, "tensors");
    qg_json_arr_begin(j);
  } else {
    fprintf(txt, "quant format: %s\n%-40s %-9s %-14s %10s  %s\n", a.format, "name", "dtype", "shape", "bytes", "scheme");
  }
  int64_t params = 0, bytes = 0;
  for (int i = 0; i < a.quantized.n; i++) {
    const qg_tensor *q = &a.quantized.t[i], *sc = &a.scales.t[i];
    char scheme[192];
    int lv, mx;
    int8_levels(q, &lv, &mx);
    /* the codes' real width: ceil(log2(2 |q|max + 1)) bits, whatever the container holds */
    int bits = 1;
    while ((1 << bits) < 2 * mx + 1) bits++;
    snprintf(scheme, sizeof scheme, "int8 %s, %s scale%s (orig %s); %d levels used, |q| <= %d (%d-bit codes)",
             a.per_row[i] ? "per-row" : "per-tensor", qg_dtype_name(sc->dtype), a.per_row[i] ? "s" : "",
             a.orig_dtype[i], lv, mx, bits);
    int64_t b = (int64_t)(q->nbytes + sc->nbytes);
    tensor_row(j, q->name, q->dtype, q->ndim, q->shape, b, scheme);
    params += qg_tensor_numel(q);
    bytes += b;
  }
  for (int i = 0; i < a.passthrough.n; i++) {
    const qg_tensor *p = &a.passthrough.t[i];
    char scheme[128];
    if (a.pass_orig[i])
      snprintf(scheme, sizeof scheme, "passthrough (orig %s)", a.pass_orig[i]);
    else
      snprintf(scheme, sizeof scheme, "passthrough");
    tensor_row(j, p->name, p->dtype, p->ndim, p->shape, (int64_t)p->nbytes, scheme);
    params += qg_tensor_numel(p);
    bytes += (int64_t)p->nbytes;
  }
  if (j) qg_json_arr_end(j);
  totals(j, a.quantized.n + a.passthrough.n, params, bytes, fbytes);
  qg_int8_artifact_free(&a);
  return QG_OK;
}

static qg_status inspect_shards(const char *path, qg_json *j) {
  qg_shards s;
  QG_TRY(qg_shards_open(path, &s));
  int lo = 65535, hi = 0;
  if (j) {
    qg_json_key(j, "files");
    qg_json_arr_begin(j);
  }
  for (int i = 0; i < s.n_files; i++) {
    const qg_shard_file *f = &s.files[i];
    int flo = 65535, fhi = 0;
    for (int64_t k = 0; k < f->count; k++) {
      int v = f->tokens[2 * k] | (f->tokens[2 * k + 1] << 8);
      if (v < flo) flo = v;
      if (v > fhi) fhi = v;
    }
    if (flo < lo) lo = flo;
    if (fhi > hi) hi = fhi;
    if (j) {
      qg_json_obj_begin(j);
      qg_json_key(j, "path");
      qg_json_str(j, f->name);
      qg_json_key(j, "tokens");
      qg_json_int(j, f->count);
      qg_json_obj_end(j);
    } else {
      fprintf(txt, "%-60s %12lld tokens\n", f->name, (long long)f->count);
    }
  }
  if (j) {
    qg_json_arr_end(j);
    qg_json_key(j, "total_tokens");
    qg_json_int(j, s.total);
    qg_json_key(j, "min_token");
    if (s.total) qg_json_int(j, lo); else qg_json_null(j);
    qg_json_key(j, "max_token");
    if (s.total) qg_json_int(j, hi); else qg_json_null(j);
  } else {
    fprintf(txt, "files: %d  tokens: %lld", s.n_files, (long long)s.total);
    if (s.total) fprintf(txt, "  token ids: %d..%d", lo, hi);
    fprintf(txt, "\n");
  }
  qg_shards_close(&s);
  return QG_OK;
}

static qg_status inspect_spm(const char *path, qg_json *j) {
  qg_spm m;
  QG_TRY(qg_spm_load(path, &m));
  int counts[7] = {0};
  for (int i = 0; i < m.n_pieces; i++)
    if (m.pieces[i].type >= 1 && m.pieces[i].type <= 6) counts[m.pieces[i].type]++;
  qg_spm_luts l;
  qg_status s = qg_spm_luts_init(&l, &m, m.n_pieces);
  if (s) {
    qg_spm_free(&m);
    return s;
  }
  int boundary = 0, lead = 0;
  long long base = 0;
  for (int i = 0; i < l.size; i++) {
    boundary += l.is_boundary[i];
    lead += l.has_leading_space[i];
    base += l.base_bytes[i];
  }
  static const char *tn[7] = {"", "normal", "unknown", "control", "user_defined", "unused", "byte"};
  const qg_spm_trainer *t = &m.trainer;
  const qg_spm_normalizer *nz = &m.normalizer;
  if (!j) {
    fprintf(txt, "pieces: %d (", m.n_pieces);
    for (int k = 1, first = 1; k <= 6; k++)
      if (counts[k]) {
        fprintf(txt, "%s%d %s", first ? "" : ", ", counts[k], tn[k]);
        first = 0;
      }
    fprintf(txt, ")\n");
    fprintf(txt, "trainer: model_type %d, vocab_size %d, byte_fallback %d, split_digits %d, character_coverage %g\n",
           t->model_type, t->vocab_size, t->byte_fallback, t->split_digits, t->character_coverage);
    fprintf(txt, "ids: unk %d, bos %d, eos %d, pad %d\n", t->unk_id, t->bos_id, t->eos_id, t->pad_id);
    fprintf(txt, "normalizer: %s, add_dummy_prefix %d, remove_extra_whitespaces %d, charsmap %zu bytes\n",
           nz->name, nz->add_dummy_prefix, nz->remove_extra_whitespaces, nz->charsmap_len);
    if (m.specs_assumed) fprintf(txt, "note: read from a .vocab; trainer and normalizer settings are the contest's, assumed\n");
    fprintf(txt, "bpb luts: %d boundary ids, %d with a leading space, %lld base bytes in all\n", boundary, lead, base);
  } else {
    qg_json_key(j, "pieces");
    qg_json_int(j, m.n_pieces);
    qg_json_key(j, "piece_types");
    qg_json_obj_begin(j);
    for (int k = 1; k <= 6; k++) {
      qg_json_key(j, tn[k]);
      qg_json_int(j, counts[k]);
    }
    qg_json_obj_end(j);
    qg_json_key(j, "model_type");
    qg_json_int(j, t->model_type);
    qg_json_key(j, "vocab_size");
    qg_json_int(j, t->vocab_size);
    qg_json_key(j, "byte_fallback");
    qg_json_bool(j, t->byte_fallback);
    qg_json_key(j, "split_digits");
    qg_json_bool(j, t->split_digits);
    qg_json_key(j, "normalizer");
    qg_json_str(j, nz->name);
    qg_json_key(j, "add_dummy_prefix");
    qg_json_bool(j, nz->add_dummy_prefix);
    qg_json_key(j, "remove_extra_whitespaces");
    qg_json_bool(j, nz->remove_extra_whitespaces);
    qg_json_key(j, "charsmap_bytes");
    qg_json_int(j, (int64_t)nz->charsmap_len);
    qg_json_key(j, "specs_assumed");
    qg_json_bool(j, m.specs_assumed);
    qg_json_key(j, "lut_boundary_ids");
    qg_json_int(j, boundary);
    qg_json_key(j, "lut_leading_space_ids");
    qg_json_int(j, lead);
    qg_json_key(j, "lut_base_bytes_total");
    qg_json_int(j, base);
  }
  qg_spm_luts_free(&l);
  qg_spm_free(&m);
  return QG_OK;
}

int qg_cmd_inspect(int argc, char **argv) {
  const char *path = NULL;
  int json = 0;
  qg_arg_list file = {&path, 0, 1};
  const qg_arg args[] = {{.name = "--json", .kind = QG_ARG_FLAG, .dst = &json}, {0}};
  const qg_args_spec spec = {.cmd = "inspect", .args = args, .flags = QG_ARGS_DASH_WORD, .words = &file,
                             .unknown = "unknown option '{arg}'", .too_many = "one FILE only"};
  if (qg_cli_parse(&spec, &argc, argv)) return 2;
  if (!path) return qg_cli_usage_error("inspect", "missing FILE");
  /* A shard glob has no single file to sniff. */
  qg_format f;
  qg_status s;
  struct stat st;
  int is_glob = strpbrk(path, "*?[") != NULL && stat(path, &st) != 0;
  if (is_glob) {
    f = QG_FMT_SHARD;
  } else if ((s = qg_detect_file_format(path, &f))) {
    return qg_cli_report("inspect", s);
  }
  long long fbytes = is_glob ? 0 : (stat(path, &st) == 0 ? (long long)st.st_size : 0);
  qg_buf b;
  qg_json j;
  qg_cli_json_begin(&j, &b, "inspect");
  qg_json *jp = json ? &j : NULL;
  if (jp) {
    qg_json_key(jp, "file");
    qg_json_str(jp, path);
    qg_json_key(jp, "format");
    qg_json_str(jp, qg_format_name(f));
  }
  char *tbuf = NULL;
  size_t tlen = 0;
  if (!jp && !(txt = open_memstream(&tbuf, &tlen))) {
    qg_buf_free(&b);
    return qg_cli_report("inspect", qg_fail(QG_ERR_NOMEM, "out of memory"));
  }
  if (!jp) fprintf(txt, "file: %s\nformat: %s\n", path, qg_format_name(f));
  switch (f) {
    case QG_FMT_PTZ: s = inspect_ptz(path, jp, fbytes); break;
    case QG_FMT_PT: {
      /* a bare int8 artifact inside a torch zip is shown as the artifact */
      qg_int8_artifact a;
      if (qg_ptz_read(path, &a) == QG_OK) {
        qg_int8_artifact_free(&a);
        s = inspect_ptz(path, jp, fbytes);
      } else {
        s = inspect_state(path, jp, fbytes);
      }
      break;
    }
    case QG_FMT_SAFETENSORS: s = inspect_state(path, jp, fbytes); break;
    case QG_FMT_QGZ: s = inspect_qgz(path, jp, fbytes); break;
    case QG_FMT_SHARD: s = inspect_shards(path, jp); break;
    default: s = inspect_spm(path, jp); break;
  }
  if (!jp) {
    fclose(txt);
    txt = NULL;
    if (!s) fwrite(tbuf, 1, tlen, stdout);
    free(tbuf);
  }
  if (s) {
    qg_buf_free(&b);
    return qg_cli_report("inspect", s);
  }
  if (jp) qg_cli_json_end(jp, &b);
  else qg_buf_free(&b);
  return 0;
}
