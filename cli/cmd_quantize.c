/* quantgolf quantize: a checkpoint through a spec into a real artifact (.qgz, or the
 * contest's .int8.ptz), with per-tensor figures and the byte totals against the cap. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/commands.h"
#include "core/progress.h"
#include "model/gpt.h"
#include "quant/calibrate.h"
#include "core/json.h"
#include "core/progress.h"
#include "core/util.h"
#include "io/checkpoint.h"
#include "io/ptz.h"
#include "io/qgz.h"
#include "kernels/cuda_quant_bridge.h"
#include "quant/pipeline.h"

#define CAP_BYTES 16000000LL

void qg_cmd_quantize_help(void) {
  printf("usage: quantgolf quantize --model M (--spec 'GLOB: METHOD k=v; ...' | --spec-file F.yaml)\n"
         "                          --out A.qgz|A.int8.ptz [--compress zstd|brotli|xz|zlib]\n"
         "                          [--layout auto|packed|bytes] [--seed N] [--json]\n"
         "                          [--code-bytes N | --code FILE...]\n\n"
         "Quantizes every tensor of checkpoint M as the spec says (first matching rule wins;\n"
         "small and control tensors follow the contest's passthrough rules unless a rule names\n"
         "them; large tensors no rule matches get the contest's int8 export) and writes the\n"
         "artifact atomically. .qgz: self-describing, compressed with zstd -22 by default; codes\n"
         "bit-packed or one byte per code, whichever compresses smaller (--layout auto).\n"
         ".int8.ptz: the contest's container (rowwise <= 8 bits with per-row scales only).\n\n"
         "Quantizers: ");
  for (int i = 0; qg_quantizers[i]; i++) printf("%s%s", i ? ", " : "", qg_quantizers[i]->name);
  printf(".\nExample: --spec 'blocks.*.mlp.*: rowwise bits=5; *: rowwise bits=6 clip=search'\n\n"
         "Prints per tensor: method, bits/weight, packed bytes, weight MSE, relative\n"
         "Hessian-weighted error (with calibration), order-0 entropy of the codes; totals:\n"
         "artifact bytes, raw payload, its size under each compressor, the entropy bound, code\n"
         "bytes and the total against the 16,000,000-byte cap. --json prints the same as JSON.\n"
         "\nCalibration (GPTQ's Hessians H = 2/n sum x x^T at every linear's input, one forward\n"
         "pass per batch; the tied embedding gets the output head's):\n"
         "  --calib GLOB       token shards (training shards, not the evaluation ones): --calib-seqs\n"
         "                     sequences of --calib-len tokens at seeded random non-overlapping\n"
         "                     positions after --calib-skip tokens\n"
         "  --calib self       sequences sampled from the model itself from BOS (the contest's \"AR\n"
         "                     self-generated\" calibration) at --calib-temp; cost grows as len^2\n"
         "  --calib-seqs N (128)  --calib-len L (1024; 128 for self)  --calib-seed S (1234)\n"
         "  --calib-temp T (1.0)  --calib-skip N (0)  --mlp-power P (2)\n"
         "\n--device cpu|cuda|auto (auto): where calibration and quantization run. On cuda the\n"
         "Hessians are accumulated on the GPU (fp64) and rowwise, lloydmax, e8 and gptq over\n"
         "those grids run there (rowwise codes identical to the CPU's); other methods stay on\n"
         "the CPU. auto: cuda when a GPU is present.\n");
}

typedef struct {
  const char *model, *spec, *spec_file, *out, *compress, *layout, *calib, *device;
  char **code;
  int n_code, json;
  long long code_bytes, seed;
  long long calib_seqs, calib_len, calib_seed, calib_skip;
  double calib_temp, mlp_power;
} qargs;

static int parse_args(int argc, char **argv, qargs *a) {
  memset(a, 0, sizeof *a);
  a->compress = "zstd", a->layout = "auto", a->code_bytes = -1, a->device = "auto";
  a->calib_seqs = 128, a->calib_len = 0, a->calib_seed = 1234, a->calib_temp = 1.0;
  for (int i = 1; i < argc; i++) {
    const char *o = argv[i];
    int has = i + 1 < argc;
#define VAL(field)                                                                       \
  do {                                                                                   \
    if (!has) return qg_cli_usage_error("quantize", "%s needs a value", o);              \
    field = argv[++i];                                                                   \
  } while (0)
    if (!strcmp(o, "--model")) VAL(a->model);
    else if (!strcmp(o, "--spec")) VAL(a->spec);
    else if (!strcmp(o, "--spec-file")) VAL(a->spec_file);
    else if (!strcmp(o, "--out")) VAL(a->out);
    else if (!strcmp(o, "--compress")) VAL(a->compress);
    else if (!strcmp(o, "--layout")) VAL(a->layout);
    else if (!strcmp(o, "--calib")) VAL(a->calib);
    else if (!strcmp(o, "--device")) VAL(a->device);
    else if (!strcmp(o, "--calib-temp") || !strcmp(o, "--mlp-power")) {
      const char *v;
      VAL(v);
      char *end;
      double x = strtod(v, &end);
      if (!*v || *end || !(x > 0 && x <= 16)) return qg_cli_usage_error("quantize", "%s %s: expected a number in (0, 16]", o, v);
      if (!strcmp(o, "--calib-temp")) a->calib_temp = x;
      else a->mlp_power = x;
    } else if (!strcmp(o, "--calib-seqs") || !strcmp(o, "--calib-len") || !strcmp(o, "--calib-seed") ||
               !strcmp(o, "--calib-skip")) {
      const char *v;
      VAL(v);
      char *end;
      long long x = strtoll(v, &end, 10);
      if (!*v || *end || x < 0 || (strcmp(o, "--calib-seed") && strcmp(o, "--calib-skip") && (x < 1 || x > 1000000)))
        return qg_cli_usage_error("quantize", "%s %s: expected a positive integer", o, v);
      if (!strcmp(o, "--calib-seqs")) a->calib_seqs = x;
      else if (!strcmp(o, "--calib-len")) a->calib_len = x;
      else if (!strcmp(o, "--calib-seed")) a->calib_seed = x;
      else a->calib_skip = x;
    }
    else if (!strcmp(o, "--json")) a->json = 1;
    else if (!strcmp(o, "--code-bytes") || !strcmp(o, "--seed")) {
      const char *v;
      VAL(v);
      char *end;
      long long x = strtoll(v, &end, 10);
      if (!*v || *end || x < 0) return qg_cli_usage_error("quantize", "%s %s: expected a non-negative integer", o, v);
      if (!strcmp(o, "--seed")) a->seed = x;
      else a->code_bytes = x;
    } else if (!strcmp(o, "--code")) {
      if (!has) return qg_cli_usage_error("quantize", "--code needs at least one FILE");
      a->code = argv + i + 1;
      while (i + 1 < argc && strncmp(argv[i + 1], "--", 2)) i++, a->n_code++;
    } else {
      return qg_cli_usage_error("quantize", "unknown argument '%s'", o);
    }
#undef VAL
  }
  if (!a->model) return qg_cli_usage_error("quantize", "--model is required");
  if (!a->out) return qg_cli_usage_error("quantize", "--out is required");
  if (!a->spec == !a->spec_file) return qg_cli_usage_error("quantize", "give exactly one of --spec and --spec-file");
  if (a->code_bytes >= 0 && a->n_code) return qg_cli_usage_error("quantize", "give --code-bytes or --code, not both");
  return 0;
}

static void on_progress(void *ctx, int i, int n, const char *name) {
  (void)name;
  qg_progress_update(ctx, i);
  (void)n;
}

static long long file_size(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 ? (long long)st.st_size : -1;
}

/* Order-0 entropy bound: code entropy plus every non-code section at its packed size. */
static double entropy_bytes(const qg_qtensor *q, double code_entropy_bits) {
  double b = code_entropy_bits / 8.0;
  for (int i = 0; i < q->nsec; i++)
    if (!(q->sec[i].kind == QG_SEC_CODES && !strcmp(q->sec[i].name, "codes")))
      b += (double)qg_qsection_packed_bytes(&q->sec[i]);
  return b;
}

/* Builds the model from the float state, picks calibration sequences (shards or sampled
 * from the model itself) and collects every linear layer's input Hessian. */
static qg_status calibrate(qargs *a, const qg_state *st, qg_hessian_map *map) {
  const qg_ops *ops;
  QG_TRY(qg_ops_by_name(a->device, &ops));
  int self = !strcmp(a->calib, "self");
  if (!a->calib_len) a->calib_len = self ? 128 : 1024;
  qg_gpt m;
  qg_gpt_options go = {.mlp_power = (float)a->mlp_power};
  qg_status gs = qg_gpt_init(&m, st, &go, ops);
  if (gs) return qg_fail_prefix(gs, "--calib needs a contest GPT checkpoint");
  int n = (int)a->calib_seqs, len = (int)a->calib_len;
  int32_t *seqs = malloc(sizeof *seqs * (size_t)n * (size_t)len);
  qg_status s = seqs ? QG_OK : qg_fail(QG_ERR_NOMEM, "out of memory for calibration tokens");
  if (!s && self) {
    s = qg_calib_generate(&m, n, len, (float)a->calib_temp, (uint64_t)a->calib_seed, 1, seqs);
  } else if (!s) {
    qg_shards sh;
    if (!(s = qg_shards_open(a->calib, &sh))) {
      if (!(s = qg_shards_check_vocab(&sh, m.cfg.vocab)))
        s = qg_calib_from_shards(&sh, n, len, (uint64_t)a->calib_seed, a->calib_skip, seqs);
      qg_shards_close(&sh);
    }
  }
  if (!s && !strncmp(ops->name, "cuda", 4)) s = qg_cuq_calib_hessians(&m, seqs, n, len, 0, map, NULL);
  else if (!s) s = qg_calib_hessians(&m, seqs, n, len, 0, map);
  free(seqs);
  qg_gpt_free(&m);
  return s;
}

/* --device for the quantizer step: 1 for the GPU path, 0 for the CPU. "cuda" without a
 * usable GPU is an error (never a silent CPU run); "auto" takes the GPU when there is one. */
static qg_status quant_device(const char *device, int *cuda) {
  *cuda = 0;
  if (!strcmp(device, "cpu")) return QG_OK;
  if (!strcmp(device, "auto")) {
    *cuda = qg_cuq_available();
    return QG_OK;
  }
  if (strcmp(device, "cuda")) return qg_fail(QG_ERR_INPUT, "unknown device '%s' (expected cpu, cuda or auto)", device);
  const qg_ops *ops; /* the same reason calibration would give when there is no GPU */
  QG_TRY(qg_ops_cuda(&ops));
  if (!qg_cuq_available()) return qg_fail(QG_ERR_DEVICE, "--device cuda: no usable CUDA GPU for the quantizers");
  *cuda = 1;
  return QG_OK;
}

int qg_cmd_quantize(int argc, char **argv) {
  qargs a;
  int rc = parse_args(argc, argv, &a);
  if (rc) return rc;
  int on_cuda;
  qg_status ds = quant_device(a.device, &on_cuda);
  if (ds) return qg_cli_report("quantize", ds);
  qg_compressor comp;
  qg_status s = qg_compressor_from_name(a.compress, &comp);
  if (s) return qg_cli_report("quantize", s);
  qg_code_layout layout = !strcmp(a.layout, "packed") ? QG_LAYOUT_PACKED
                          : !strcmp(a.layout, "bytes") ? QG_LAYOUT_BYTES
                          : !strcmp(a.layout, "auto")  ? QG_LAYOUT_AUTO
                                                       : (qg_code_layout)99;
  if ((int)layout == 99) return qg_cli_usage_error("quantize", "--layout %s: expected auto, packed or bytes", a.layout);
  int ptz = qg_ends_with(a.out, ".ptz");
  if (ptz && comp != QG_COMP_ZSTD && strcmp(a.compress, "zlib"))
    return qg_cli_usage_error("quantize", "a .int8.ptz is always zlib-compressed (the contest's container)");
  long long code_bytes = a.code_bytes >= 0 ? a.code_bytes : 0;
  for (int i = 0; i < a.n_code; i++) {
    long long n = file_size(a.code[i]);
    if (n < 0) return qg_cli_report("quantize", qg_fail(QG_ERR_INPUT, "--code %s: cannot stat", a.code[i]));
    code_bytes += n;
  }

  qg_spec spec;
  s = a.spec ? qg_spec_parse_inline(a.spec, &spec) : qg_spec_load_yaml(a.spec_file, &spec);
  if (s) return qg_cli_report("quantize", s);
  if (a.seed) spec.seed = (uint64_t)a.seed;
  qg_state st;
  qg_format fmt;
  if ((s = qg_checkpoint_load(a.model, &st, &fmt))) {
    qg_spec_free(&spec);
    return qg_cli_report("quantize", s);
  }
  qg_hessian_map hmap;
  qg_hessian_map_init(&hmap);
  double calib_seconds = 0;
  if (a.calib) {
    double t0 = qg_now();
    s = calibrate(&a, &st, &hmap);
    calib_seconds = qg_now() - t0;
    if (s) {
      qg_hessian_map_free(&hmap);
      qg_state_free(&st);
      qg_spec_free(&spec);
      return qg_cli_report("quantize", s);
    }
    fprintf(stderr, "quantize: calibration from %s: %lld sequences x %lld tokens, %d Hessians, %.1f s\n",
            a.calib, a.calib_seqs, a.calib_len, hmap.n, calib_seconds);
  }
  qg_progress pr;
  qg_progress_start(&pr, "quantize", "tensors", st.n);
  qg_quantize_opts qo = {.hessians = a.calib ? &hmap : NULL, .progress = on_progress, .progress_ctx = &pr,
                         .quantize = on_cuda ? qg_cuq_quantize_hook : NULL};
  qg_qmodel qm;
  s = qg_quantize_model(&st, &spec, &qo, &qm);
  qg_progress_finish(&pr, st.n);
  qg_state_free(&st);
  qg_hessian_map_free(&hmap);
  if (s) {
    qg_spec_free(&spec);
    return qg_cli_report("quantize", s);
  }
  const qg_qtensor **qp = malloc(sizeof *qp * (size_t)(qm.n ? qm.n : 1));
  uint8_t *raw = NULL;
  size_t raw_n = 0, sizes[QG_COMP_COUNT] = {0};
  qg_qgz_info info = {0};
  if (!qp) s = qg_fail(QG_ERR_NOMEM, "out of memory");
  for (int i = 0; !s && i < qm.n; i++) qp[i] = &qm.t[i].q;
  if (!s && ptz) {
    qg_int8_artifact ia;
    if (!(s = qg_qtensors_to_int8(qp, qm.n, &ia))) {
      uint8_t *blob;
      size_t blen;
      if (!(s = qg_ptz_encode(&ia, &blob, &blen, &raw, &raw_n))) {
        s = qg_write_file_atomic(a.out, blob, blen);
        free(blob);
      }
      qg_int8_artifact_free(&ia);
    }
  } else if (!s) {
    if (!(s = qg_qgz_write(a.out, qp, qm.n, comp, layout, &info))) {
      qg_buf b;
      qg_buf_init(&b);
      if (!(s = qg_qgz_payload(qp, qm.n, info.layout, &b))) raw = b.p, raw_n = b.n;
      else qg_buf_free(&b);
    }
  }
  /* the same payload under every compressor, for comparison */
  for (int c = QG_COMP_ZSTD; !s && c < QG_COMP_COUNT; c++) {
    uint8_t *z;
    if (!(s = qg_compress((qg_compressor)c, raw ? raw : (const uint8_t *)"", raw_n, &z, &sizes[c]))) free(z);
  }
  if (s) {
    free(qp), free(raw);
    qg_qmodel_free(&qm);
    qg_spec_free(&spec);
    return qg_cli_report("quantize", s);
  }
  long long artifact = file_size(a.out), numel = 0, packed = 0;
  double ent = 0;
  for (int i = 0; i < qm.n; i++) {
    numel += qm.t[i].numel, packed += qm.t[i].packed_bytes;
    ent += entropy_bytes(&qm.t[i].q, qm.t[i].entropy_bits);
  }
  long long total = artifact + code_bytes;
  const char *layout_name = ptz ? "int8 (contest container)" : info.layout == QG_LAYOUT_PACKED ? "packed" : "bytes";
  if (a.json) {
    qg_buf b;
    qg_buf_init(&b);
    qg_json j;
    qg_json_init(&j, &b, 1);
    qg_json_obj_begin(&j);
    qg_json_key(&j, "model"), qg_json_str(&j, a.model);
    qg_json_key(&j, "spec"), qg_json_str(&j, a.spec ? a.spec : a.spec_file);
    qg_json_key(&j, "out"), qg_json_str(&j, a.out);
    qg_json_key(&j, "compressor"), qg_json_str(&j, ptz ? "zlib-9" : qg_compressor_name(comp));
    qg_json_key(&j, "code_layout"), qg_json_str(&j, layout_name);
    qg_json_key(&j, "quantize_device"), qg_json_str(&j, on_cuda ? "cuda" : "cpu");
    qg_json_key(&j, "calibration");
    if (a.calib) {
      qg_json_obj_begin(&j);
      qg_json_key(&j, "source"), qg_json_str(&j, a.calib);
      qg_json_key(&j, "sequences"), qg_json_int(&j, a.calib_seqs);
      qg_json_key(&j, "length"), qg_json_int(&j, a.calib_len);
      qg_json_key(&j, "seed"), qg_json_int(&j, a.calib_seed);
      if (!strcmp(a.calib, "self")) qg_json_key(&j, "temperature"), qg_json_num(&j, a.calib_temp);
      else qg_json_key(&j, "skip_tokens"), qg_json_int(&j, a.calib_skip);
      qg_json_key(&j, "seconds"), qg_json_num(&j, calib_seconds);
      qg_json_obj_end(&j);
    } else {
      qg_json_null(&j);
    }
    qg_json_key(&j, "tensors");
    qg_json_arr_begin(&j);
    for (int i = 0; i < qm.n; i++) {
      const qg_qresult *r = &qm.t[i];
      qg_json_obj_begin(&j);
      qg_json_key(&j, "name"), qg_json_str(&j, r->q.name);
      qg_json_key(&j, "method"), qg_json_str(&j, r->q.method);
      qg_json_key(&j, "options"), qg_json_str(&j, r->q.options);
      qg_json_key(&j, "assigned_by"), qg_json_str(&j, r->why);
      qg_json_key(&j, "shape");
      qg_json_arr_begin(&j);
      for (int d = 0; d < r->q.ndim; d++) qg_json_int(&j, r->q.shape[d]);
      qg_json_arr_end(&j);
      qg_json_key(&j, "numel"), qg_json_int(&j, r->numel);
      qg_json_key(&j, "bytes"), qg_json_int(&j, r->packed_bytes);
      qg_json_key(&j, "bits_per_weight"), qg_json_num(&j, r->bits_per_weight);
      qg_json_key(&j, "mse"), qg_json_num(&j, r->mse);
      qg_json_key(&j, "hessian_rel_err"), qg_json_num(&j, r->herr);
      qg_json_key(&j, "entropy_bits_per_weight"), qg_json_num(&j, r->numel ? r->entropy_bits / (double)r->numel : 0);
      qg_json_key(&j, "seconds"), qg_json_num(&j, r->seconds);
      qg_json_key(&j, "note");
      if (r->q.note) qg_json_str(&j, r->q.note);
      else qg_json_null(&j);
      qg_json_obj_end(&j);
    }
    qg_json_arr_end(&j);
    qg_json_key(&j, "totals");
    qg_json_obj_begin(&j);
    qg_json_key(&j, "tensors"), qg_json_int(&j, qm.n);
    qg_json_key(&j, "params"), qg_json_int(&j, numel);
    qg_json_key(&j, "packed_bytes"), qg_json_int(&j, packed);
    qg_json_key(&j, "artifact_bytes"), qg_json_int(&j, artifact);
    qg_json_key(&j, "raw_bytes"), qg_json_int(&j, (int64_t)raw_n);
    qg_json_key(&j, "zstd_bytes"), qg_json_int(&j, (int64_t)sizes[QG_COMP_ZSTD]);
    qg_json_key(&j, "brotli_bytes"), qg_json_int(&j, (int64_t)sizes[QG_COMP_BROTLI]);
    qg_json_key(&j, "xz_bytes"), qg_json_int(&j, (int64_t)sizes[QG_COMP_XZ]);
    qg_json_key(&j, "zlib_bytes"), qg_json_int(&j, (int64_t)sizes[QG_COMP_ZLIB]);
    if (!ptz) {
      qg_json_key(&j, "packed_layout_bytes"), qg_json_int(&j, (int64_t)info.packed_compressed);
      qg_json_key(&j, "bytewise_layout_bytes"), qg_json_int(&j, (int64_t)info.bytes_compressed);
    }
    qg_json_key(&j, "entropy_bytes"), qg_json_int(&j, (int64_t)ceil(ent));
    qg_json_key(&j, "code_bytes"), qg_json_int(&j, code_bytes);
    qg_json_key(&j, "total_bytes"), qg_json_int(&j, total);
    qg_json_key(&j, "cap_bytes"), qg_json_int(&j, CAP_BYTES);
    qg_json_key(&j, "fits"), qg_json_bool(&j, total <= CAP_BYTES);
    qg_json_obj_end(&j);
    qg_json_obj_end(&j);
    qg_buf_byte(&b, '\n');
    if (!b.failed) fwrite(b.p, 1, b.n, stdout);
    qg_buf_free(&b);
  } else {
    printf("%-32s %-12s %6s %10s %11s %9s %7s  %s\n", "tensor", "method", "bits/w", "bytes", "mse", "herr", "H0 b/w",
           "assigned by");
    for (int i = 0; i < qm.n; i++) {
      const qg_qresult *r = &qm.t[i];
      char m[64];
      const char *bits = strstr(r->q.options, "bits=");
      snprintf(m, sizeof m, "%s%s%.*s", r->q.method, bits ? " " : "", bits ? (int)strcspn(bits, " ") : 0,
               bits ? bits : "");
      printf("%-32s %-12s %6.3f %10lld %11.4e %9.3g %7.3f  %s%s%s\n", r->q.name, m, r->bits_per_weight,
             (long long)r->packed_bytes, r->mse, r->herr, r->numel ? r->entropy_bits / (double)r->numel : 0, r->why,
             r->q.note ? "; " : "", r->q.note ? r->q.note : "");
    }
    printf("\ntensors %d, params %lld, packed %lld bytes (%.3f bits/weight)\n", qm.n, numel, packed,
           numel ? 8.0 * (double)packed / (double)numel : 0);
    printf("artifact  %12lld bytes  %s (%s, codes %s)\n", artifact, a.out, ptz ? "zlib-9" : qg_compressor_name(comp),
           layout_name);
    if (!ptz && layout == QG_LAYOUT_AUTO)
      printf("layouts   packed %zu vs one byte per code %zu bytes compressed: kept %s\n", info.packed_compressed,
             info.bytes_compressed, layout_name);
    printf("raw       %12zu bytes\nzstd-22   %12zu\nbrotli-11 %12zu\nxz-9e     %12zu\nzlib-9    %12zu\n", raw_n,
           sizes[QG_COMP_ZSTD], sizes[QG_COMP_BROTLI], sizes[QG_COMP_XZ], sizes[QG_COMP_ZLIB]);
    printf("entropy   %12lld bytes (order-0 bound on codes + side data)\ncode      %12lld bytes\n",
           (long long)ceil(ent), code_bytes);
    printf("total     %12lld bytes of %lld cap: %s by %lld\n", total, CAP_BYTES, total <= CAP_BYTES ? "fits" : "OVER",
           llabs(CAP_BYTES - total));
  }
  free(qp), free(raw);
  qg_qmodel_free(&qm);
  qg_spec_free(&spec);
  return 0;
}
