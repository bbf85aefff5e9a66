/* quantgolf quantize: a checkpoint through a spec into a real artifact (.qgz, or the
 * contest's .int8.ptz), with per-tensor figures and the byte totals against the cap. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/commands.h"
#include "cli/json_doc.h"
#include "comm/comm.h"
#include "core/progress.h"
#include "core/util.h"
#include "io/qgz_loader.h"
#include "io/qgz_rans.h"
#include "quant/backend.h"
#include "quant/job.h"

#define CAP_BYTES 16000000LL
#define SELF_CALIB_MAX_LEN 4096

void qg_cmd_quantize_help(void) {
  printf("usage: quantgolf quantize --model M (--spec 'GLOB: METHOD k=v; ...' | --spec-file F.yaml |\n"
         "                          --preset NAME)\n"
         "                          --out A.qgz|A.int8.ptz [--compress rans|brotli|zstd|xz|zlib|none|best]\n"
         "                          [--compare-compressors]\n"
         "                          [--layout auto|packed|bytes] [--no-row-order] [--seed N] [--json]\n"
         "                          [--code-bytes N|auto | --code FILE...] [--contest-passthrough]\n"
         "                          [--dry-run] [--threads N] [--save-hessians F | --load-hessians F]\n\n"
         "Quantizes every tensor of checkpoint M as the spec says (first matching rule wins; a\n"
         "rule takes every floating matrix it matches; non-float, control and 1-D tensors keep\n"
         "the contest's passthrough unless a rule names them; tensors no rule matches get the\n"
         "contest's export: fp16 up to 65,536 weights, contest-int8 above) and writes the\n"
         "artifact atomically. .qgz: self-describing; by default rans (format 3: codes entropy-coded\n"
         "per stream, each stream falling back to brotli-11 where that is smaller; the smallest in\n"
         "every measured case); brotli writes format 1 as brotli-11; best tries them all and keeps\n"
         "the smallest; codes bit-packed or one byte per code, whichever compresses smaller.\n"
         ".int8.ptz: the contest's container (rowwise <= 8 bits with per-row scales only).\n"
         "--contest-passthrough: glob rules also leave float tensors of <= 65,536 weights to the\n"
         "passthrough, as the contest's int8 export does.\n\n"
         "Quantizers: ");
  for (int i = 0; qg_quantizers[i]; i++) printf("%s%s", i ? ", " : "", qg_quantizers[i]->name);
  printf(".\nEvery option, its range, default and meaning, and the presets: quantgolf quantizers.\n"
         "Example: --spec 'blocks.*.mlp.*: rowwise bits=5; *: rowwise bits=6 clip=search'\n"
         "         --preset int6   (= 'tok_emb.weight: rowwise bits=8; *: rowwise bits=6')\n"
         "--compress none writes the .qgz uncompressed. --no-row-order: rans does not try coding\n"
         "a code matrix's rows in another order (the weights are the same either way).\n\n"
         "Prints per tensor: method, bits/weight, packed bytes (bit-packed sections before\n"
         "compression), weight MSE, relative Hessian-weighted error ('-' without calibration),\n"
         "order-0 entropy of the codes; totals: artifact bytes, raw payload (with\n"
         "--compare-compressors its size under each compressor), the order-0 entropy of the\n"
         "codes plus side data (an estimate, not a bound: zstd/brotli may beat it), code\n"
         "bytes and the total against the 16,000,000-byte cap. --json prints the same as JSON.\n"
         "--code-bytes auto counts the bytes of python/qgz_load.py, the loader an entrant ships.\n"
         "\nCalibration (GPTQ's Hessians H = 2/n sum x x^T at every linear's input, one forward\n"
         "pass per batch; the tied embedding gets the output head's):\n"
         "  --calib GLOB       token shards (training shards, not the evaluation ones): --calib-seqs\n"
         "                     sequences of --calib-len tokens at seeded random non-overlapping\n"
         "                     positions after --calib-skip tokens\n"
         "  --calib self       sequences sampled from the model itself from BOS (the contest's \"AR\n"
         "                     self-generated\" calibration) at --calib-temp; cost grows as len^2\n"
         "  --calib-seqs N (128)  --calib-len L (1024; 128 for self)  --calib-seed S (1234)\n"
         "  --calib-temp T (1.0)  --calib-skip N (0)  --mlp-power P (2)\n"
         "  --force            allow --calib self with --calib-len above 4096\n"
         "  --comm self|mpi|auto  under mpirun: calibration batches split over the ranks (the same\n"
         "                     Hessians as one rank); rank 0 quantizes and writes\n"
         "  --nproc N          N ranks on this machine: the same command under `mpirun -np N`\n"
         "  --save-hessians F  also save the Hessians to F (safetensors, fp64, with the SHA-256 of\n"
         "                     the model file and of the calibration tokens)\n"
         "  --load-hessians F  use F's Hessians instead of calibrating; refused when F was collected\n"
         "                     on another model file, or (with --calib too) on other tokens\n"
         "\n--dry-run: the plan only: per tensor the method, bits/weight and exact packed bytes\n"
         "(before compression); no artifact, no calibration, --out optional.\n"
         "--threads N: CPU threads (default: QG_THREADS, else every online CPU).\n"
         "A quantized source (.int8.ptz, .qgz) is dequantized and requantized; a note says so.\n"
         "\n--device cpu|cuda|auto (auto): where calibration and quantization run. On cuda the\n"
         "Hessians are accumulated on the GPU (fp64) and rowwise, lloydmax, e8 and gptq over\n"
         "those grids run there (rowwise codes identical to the CPU's); other methods stay on\n"
         "the CPU. auto: cuda when a GPU is present.\n");
}

typedef struct {
  const char *model, *spec, *spec_file, *preset, *out, *compress, *layout, *calib, *device, *save_h, *load_h;
  qg_arg_list code;
  int json, contest_passthrough, compare, force, dry_run, no_row_order;
  int64_t code_bytes, seed;
  int code_auto; /* --code-bytes auto: python/qgz_load.py's bytes */
  int64_t calib_seqs, calib_len, calib_seed, calib_skip;
  double calib_temp, mlp_power;
} qargs;

/* --code-bytes N, or auto: the bytes of the loader an entrant ships (python/qgz_load.py) */
static int code_bytes_arg(const char *v, void *dst, char *err, size_t cap) {
  (void)err, (void)cap;
  qargs *a = dst;
  if (!strcmp(v, "auto")) {
    a->code_bytes = qg_qgz_loader_bytes(), a->code_auto = 1;
    return 0;
  }
  char *end;
  long long x = strtoll(v, &end, 10);
  if (!*v || *end || x < 0) return 1;
  a->code_bytes = x;
  return 0;
}

static int parse_args(int *argc, char **argv, qargs *a) {
  memset(a, 0, sizeof *a);
  a->compress = NULL, a->layout = "auto", a->code_bytes = -1, a->device = "auto";
  a->calib_seqs = 128, a->calib_len = 0, a->calib_seed = 1234, a->calib_temp = 1.0;
#define STR(nm, field) {.name = nm, .kind = QG_ARG_STR, .dst = &a->field}
#define NUM(nm, field)                                                                         \
  {.name = nm, .kind = QG_ARG_NUM, .dst = &a->field, .min = 0, .max = 16, .flags = QG_ARG_OPEN_MIN, \
   .bad = "{opt} {val}: expected a number in (0, 16]"}
#define INT(nm, field, l, h) \
  {.name = nm, .kind = QG_ARG_I64, .dst = &a->field, .lo = l, .hi = h, .bad = "{opt} {val}: expected a positive integer"}
#define COUNT(nm, field) \
  {.name = nm, .kind = QG_ARG_I64, .dst = &a->field, .lo = 0, .hi = INT64_MAX, .bad = "{opt} {val}: expected a non-negative integer"}
#define FLAG(nm, field) {.name = nm, .kind = QG_ARG_FLAG, .dst = &a->field}
  const qg_arg args[] = {
      STR("--model", model), STR("--spec", spec), STR("--spec-file", spec_file), STR("--preset", preset),
      STR("--out", out), STR("--compress", compress), STR("--layout", layout), STR("--calib", calib),
      STR("--device", device), STR("--save-hessians", save_h), STR("--load-hessians", load_h),
      FLAG("--dry-run", dry_run),
      NUM("--calib-temp", calib_temp), NUM("--mlp-power", mlp_power),
      INT("--calib-seqs", calib_seqs, 1, 1000000), INT("--calib-len", calib_len, 1, 1000000),
      INT("--calib-seed", calib_seed, 0, INT64_MAX), INT("--calib-skip", calib_skip, 0, INT64_MAX),
      FLAG("--json", json), FLAG("--contest-passthrough", contest_passthrough), FLAG("--compare-compressors", compare),
      FLAG("--force", force), FLAG("--no-row-order", no_row_order),
      {.name = "--code-bytes", .kind = QG_ARG_FN, .dst = a, .fn = code_bytes_arg,
       .bad = "{opt} {val}: expected a non-negative integer or auto"},
      COUNT("--seed", seed),
      {.name = "--code", .kind = QG_ARG_MULTI, .dst = &a->code, .missing = "--code needs at least one FILE"},
      {.kind = QG_ARG_TABLE, .table = qg_cli_threads_args},
      {0}};
#undef STR
#undef NUM
#undef INT
#undef COUNT
#undef FLAG
  const qg_args_spec spec = {.cmd = "quantize", .args = args, .flags = QG_ARGS_GLOB_HINT,
                             .unknown = "unknown argument '{arg}'", .missing = "{opt} needs a value"};
  int rc = qg_cli_parse(&spec, argc, argv);
  if (rc) return rc;
  if (!a->model) return qg_cli_usage_error("quantize", "--model is required");
  if (!a->out && !a->dry_run) return qg_cli_usage_error("quantize", "--out is required (or --dry-run)");
  if (a->save_h && !a->calib) return qg_cli_usage_error("quantize", "--save-hessians needs --calib (the Hessians it saves)");
  if (a->save_h && a->load_h) return qg_cli_usage_error("quantize", "give --save-hessians or --load-hessians, not both");
  if (!!a->spec + !!a->spec_file + !!a->preset != 1)
    return qg_cli_usage_error("quantize", "give exactly one of --spec, --spec-file and --preset");
  if (a->code_bytes >= 0 && a->code.n) return qg_cli_usage_error("quantize", "give --code-bytes or --code, not both");
  /* the artifact's format follows the name: another extension would hide a .qgz under it */
  if (a->out && !qg_ends_with(a->out, ".qgz") && !qg_ends_with(a->out, ".ptz"))
    return qg_cli_usage_error("quantize", "--out %s: the artifact name must end in .qgz or .ptz", a->out);
  /* self-generation costs grow as len^2 (4096 tokens already take minutes on a CPU) */
  if (a->calib && !strcmp(a->calib, "self") && a->calib_len > SELF_CALIB_MAX_LEN && !a->force)
    return qg_cli_usage_error("quantize", "--calib-len %lld: self-generated calibration is limited to %d tokens "
                              "(cost grows as len^2); add --force to run it anyway", (long long)a->calib_len, SELF_CALIB_MAX_LEN);
  return 0;
}

typedef struct {
  qg_progress pr;
  const char *calib;
  int compare, dry_run;
} job_view;

/* The job's stages as the CLI shows them: the calibration line, the tensor progress. */
static void on_job(void *ctx, qg_qjob_stage stage, int i, int n, const char *name, const qg_qjob_result *r) {
  (void)name;
  job_view *v = ctx;
  if (stage == QG_QJOB_CALIBRATED)
    fprintf(stderr, "quantize: calibration from %s: %d sequences x %d tokens, %d Hessians, %.1f s\n", v->calib,
            r->calib_seqs, r->calib_len, r->hessians, r->calib_seconds);
  else if (stage == QG_QJOB_TENSOR && i == 0)
    qg_progress_start(&v->pr, "quantize", "tensors", n);
  if (stage == QG_QJOB_TENSOR) qg_progress_update(&v->pr, i);
  else if (stage == QG_QJOB_QUANTIZED && v->pr.label) qg_progress_finish(&v->pr, n);
  if (stage == QG_QJOB_QUANTIZED)
    fprintf(stderr, "quantize: %d tensors %s\n", n, v->dry_run ? "planned (dry run)" : "quantized; compressing and writing");
  else if (stage == QG_QJOB_WRITTEN)
    fprintf(stderr, "quantize: %s written, %lld bytes (%s)%s\n", name, (long long)r->artifact_bytes, r->compressor,
            v->compare ? "; measuring the other compressors" : "");
}

static long long file_size(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 ? (long long)st.st_size : -1;
}

/* "rowwise bits=6" from a tensor's method and its canonical options. */
static void method_bits(const qg_qtensor *q, char *m, size_t cap) {
  const char *bits = strstr(q->options, "bits=");
  snprintf(m, cap, "%s%s%.*s", q->method, bits ? " " : "", bits ? (int)strcspn(bits, " ") : 0, bits ? bits : "");
}

/* --dry-run: the assignment and exact packed sizes, no artifact (compressed size needs
 * the compressor, so it is not estimated). */
static void print_plan(const qargs *a, const qg_qjob_result *jr) {
  const qg_qmodel *qm = &jr->qm;
  if (a->json) {
    qg_buf b;
    qg_json j;
    qg_cli_json_begin(&j, &b, "quantize");
    qg_cli_json_file_open(&j, "model", a->model);
    qg_json_obj_end(&j);
    qg_json_key(&j, "dry_run"), qg_json_bool(&j, 1);
    qg_json_key(&j, "tensors");
    qg_json_arr_begin(&j);
    for (int i = 0; i < qm->n; i++) {
      const qg_qresult *r = &qm->t[i];
      qg_json_obj_begin(&j);
      qg_json_key(&j, "name"), qg_json_str(&j, r->q.name);
      qg_json_key(&j, "method"), qg_json_str(&j, r->q.method);
      qg_json_key(&j, "options"), qg_json_str(&j, r->q.options);
      qg_json_key(&j, "assigned_by"), qg_json_str(&j, r->why);
      qg_json_key(&j, "numel"), qg_json_int(&j, r->numel);
      qg_json_key(&j, "bytes"), qg_json_int(&j, r->packed_bytes);
      qg_json_key(&j, "bits_per_weight"), qg_json_num(&j, r->bits_per_weight);
      qg_json_obj_end(&j);
    }
    qg_json_arr_end(&j);
    qg_json_key(&j, "totals");
    qg_json_obj_begin(&j);
    qg_json_key(&j, "tensor_count"), qg_json_int(&j, qm->n);
    qg_json_key(&j, "parameters"), qg_json_int(&j, jr->params);
    qg_json_key(&j, "packed_bytes"), qg_json_int(&j, jr->packed_bytes);
    qg_json_obj_end(&j);
    qg_cli_json_end(&j, &b);
    return;
  }
  printf("%-32s %-12s %6s %10s  %s\n", "tensor", "method", "bits/w", "packed B", "assigned by");
  for (int i = 0; i < qm->n; i++) {
    const qg_qresult *r = &qm->t[i];
    char m[64];
    method_bits(&r->q, m, sizeof m);
    printf("%-32s %-12s %6.3f %10lld  %s\n", r->q.name, m, r->bits_per_weight, (long long)r->packed_bytes, r->why);
  }
  printf("\ndry run: tensors %d, params %lld, packed %lld bytes (%.3f bits/weight) before compression; "
         "no artifact written\n", qm->n, (long long)jr->params, (long long)jr->packed_bytes,
         jr->params ? 8.0 * (double)jr->packed_bytes / (double)jr->params : 0);
}

int qg_cmd_quantize(int argc, char **argv) {
  double t_start = qg_now();
  qargs a;
  /* --comm: calibration's batches split over ranks (the same Hessians); rank 0 writes */
  qg_comm *comm = NULL;
  int rc = qg_cli_take_comm("quantize", &argc, argv, &comm);
  if (rc) return rc;
  rc = parse_args(&argc, argv, &a);
  if (rc) return rc;
  const qg_quant_backend *qb; /* a device that is not there fails before any work */
  qg_status ds = qg_quant_backend_by_device(a.device, &qb);
  if (ds) return qg_cli_report("quantize", ds);
  qg_compressor comp = QG_COMP_DEFAULT;
  int best = a.compress && !strcmp(a.compress, "best");
  qg_status s = best || !a.compress ? QG_OK : qg_compressor_from_name(a.compress, &comp);
  if (s) return qg_cli_report("quantize", s);
  qg_code_layout layout = !strcmp(a.layout, "packed") ? QG_LAYOUT_PACKED
                          : !strcmp(a.layout, "bytes") ? QG_LAYOUT_BYTES
                          : !strcmp(a.layout, "auto")  ? QG_LAYOUT_AUTO
                                                       : (qg_code_layout)99;
  if ((int)layout == 99) return qg_cli_usage_error("quantize", "--layout %s: expected auto, packed or bytes", a.layout);
  int ptz = a.out && qg_ends_with(a.out, ".ptz");
  if (ptz && a.compress && strcmp(a.compress, "zlib"))
    return qg_cli_usage_error("quantize", "a .int8.ptz is always zlib-compressed (the contest's container)");
  long long code_bytes = a.code_bytes >= 0 ? a.code_bytes : 0;
  for (int i = 0; i < a.code.n; i++) {
    long long n = file_size(a.code.v[i]);
    if (n < 0) return qg_cli_report("quantize", qg_fail(QG_ERR_INPUT, "--code %s: cannot stat", a.code.v[i]));
    code_bytes += n;
  }

  qg_spec spec;
  char preset_rule[160];
  if (a.preset) { /* the spec of one rule "preset: NAME", which names the valid ones when unknown */
    snprintf(preset_rule, sizeof preset_rule, "preset: %.100s", a.preset);
    a.spec = preset_rule;
  }
  s = a.spec ? qg_spec_parse_inline(a.spec, &spec) : qg_spec_load_yaml(a.spec_file, &spec);
  if (s) return qg_cli_report("quantize", s);
  if (a.seed) spec.seed = (uint64_t)a.seed;
  if (a.contest_passthrough) spec.contest_passthrough = 1;
  job_view view = {.calib = a.load_h ? a.load_h : a.calib, .compare = a.compare, .dry_run = a.dry_run};
  qg_qgz_rans_set_row_orders(!a.no_row_order);
  qg_qjob_opts jo = {.model = a.model, .spec = &spec, .out = a.out, .compressor = ptz ? QG_COMP_ZLIB : comp,
                     .best_compressor = best && !ptz, .layout = layout, .compare_compressors = a.compare, .calib = a.calib, .calib_seqs = (int)a.calib_seqs,
                     .calib_len = (int)a.calib_len, .calib_seed = (uint64_t)a.calib_seed, .calib_skip = a.calib_skip,
                     .calib_temp = a.calib_temp, .mlp_power = (float)a.mlp_power, .device = a.device,
                     .dry_run = a.dry_run, .save_hessians = a.save_h, .load_hessians = a.load_h,
                     .comm = comm, .cb = on_job, .cb_ctx = &view};
  qg_qjob_result jr;
  s = qg_quantize_job(&jo, &jr);
  if (s) {
    qg_spec_free(&spec);
    return qg_cli_comm_report("quantize", comm, s, 0);
  }
  if (jr.helper_rank) { /* calibrated with the others; rank 0 reports */
    qg_qjob_result_free(&jr);
    qg_spec_free(&spec);
    qg_cli_comm_close();
    return 0;
  }
  if (jr.dry_run) {
    print_plan(&a, &jr);
    qg_qjob_result_free(&jr);
    qg_spec_free(&spec);
    return 0;
  }
  const qg_qmodel qm = jr.qm;
  int by_rule = 0, by_pass = 0, by_default = 0;
  for (int i = 0; i < qm.n; i++) {
    const char *w = qm.t[i].why;
    if (!strncmp(w, "rule ", 5)) by_rule++;
    else if (!strncmp(w, "default", 7)) by_default++;
    else by_pass++;
  }
  if (by_pass || by_default)
    fprintf(stderr, "quantize: %d tensors: %d by rules, %d passthrough, %d default (contest-int8)\n", qm.n, by_rule,
            by_pass, by_default);
  const size_t raw_n = jr.raw_bytes, *sizes = jr.compressed;
  const qg_qgz_info info = jr.info;
  long long artifact = jr.artifact_bytes, numel = jr.params, packed = jr.packed_bytes;
  double ent = jr.entropy_bytes, calib_seconds = jr.calib_seconds;
  a.calib_len = jr.calib_len;
  long long total = artifact + code_bytes;
  const char *layout_name = ptz ? "int8 (contest container)" : info.layout == QG_LAYOUT_PACKED ? "packed" : "bytes";
  if (a.json) {
    qg_buf b;
    qg_json j;
    qg_cli_json_begin(&j, &b, "quantize");
    qg_cli_json_file_open(&j, "model", a.model);
    qg_json_key(&j, "format"), qg_json_str(&j, jr.source_format ? jr.source_format : "state");
    /* a model whose weights were already quantized (requantizing saves few bytes) */
    qg_json_key(&j, "quantized"), qg_json_bool(&j, jr.source_quantized);
    qg_json_obj_end(&j);
    qg_json_key(&j, "spec"), qg_json_str(&j, a.spec ? a.spec : a.spec_file);
    qg_json_key(&j, "seed"), qg_json_int(&j, (int64_t)spec.seed);
    qg_cli_json_file_open(&j, "artifact", a.out);
    qg_json_obj_end(&j);
    qg_json_key(&j, "compressor"), qg_json_str(&j, jr.compressor);
    qg_json_key(&j, "code_layout"), qg_json_str(&j, layout_name);
    qg_json_key(&j, "device"), qg_json_str(&j, jr.quantize_device);
    qg_json_key(&j, "calibration");
    if (jr.calibrated) {
      qg_json_obj_begin(&j);
      qg_json_key(&j, "source"), qg_json_str(&j, a.calib ? a.calib : a.load_h);
      qg_json_key(&j, "sequences"), qg_json_int(&j, jr.calib_seqs);
      qg_json_key(&j, "length"), qg_json_int(&j, a.calib_len);
      qg_json_key(&j, "seed"), qg_json_int(&j, a.calib_seed);
      if (a.calib && !strcmp(a.calib, "self")) qg_json_key(&j, "temperature"), qg_json_num(&j, a.calib_temp);
      else qg_json_key(&j, "skip_tokens"), qg_json_int(&j, a.calib_skip);
      qg_json_key(&j, "seconds"), qg_json_num(&j, calib_seconds);
      qg_json_key(&j, "tokens_sha256"), qg_json_str(&j, jr.tokens_sha256);
      qg_json_key(&j, "hessians_file");
      if (a.save_h || a.load_h) qg_json_str(&j, a.save_h ? a.save_h : a.load_h);
      else qg_json_null(&j);
      qg_json_key(&j, "hessians_loaded"), qg_json_bool(&j, jr.hessians_loaded);
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
    qg_json_key(&j, "tensor_count"), qg_json_int(&j, qm.n);
    qg_json_key(&j, "parameters"), qg_json_int(&j, numel);
    qg_json_key(&j, "packed_bytes"), qg_json_int(&j, packed);
    qg_json_key(&j, "artifact_bytes"), qg_json_int(&j, artifact);
    qg_json_key(&j, "raw_bytes"), qg_json_int(&j, (int64_t)raw_n);
    /* the other compressors' sizes are measured only when asked (null otherwise) */
    static const struct { const char *key; qg_compressor c; } alt[] = {
        {"zstd_bytes", QG_COMP_ZSTD}, {"brotli_bytes", QG_COMP_BROTLI}, {"xz_bytes", QG_COMP_XZ},
        {"zlib_bytes", QG_COMP_ZLIB}};
    qg_json_key(&j, "compressors_compared"), qg_json_bool(&j, a.compare);
    for (size_t k = 0; k < sizeof alt / sizeof alt[0]; k++) {
      qg_json_key(&j, alt[k].key);
      if (a.compare) qg_json_int(&j, (int64_t)sizes[alt[k].c]);
      else qg_json_null(&j);
    }
    if (!ptz) {
      qg_json_key(&j, "packed_layout_bytes"), qg_json_int(&j, (int64_t)info.packed_compressed);
      qg_json_key(&j, "bytewise_layout_bytes"), qg_json_int(&j, (int64_t)info.bytes_compressed);
      if (info.comp == QG_COMP_RANS) {
        qg_json_key(&j, "rans_meta_bytes"), qg_json_int(&j, (int64_t)info.meta_compressed);
        qg_json_key(&j, "rans_scale_raw_bytes"), qg_json_int(&j, (int64_t)info.scale_raw);
        qg_json_key(&j, "rans_code_bytes"), qg_json_int(&j, (int64_t)info.code_payload);
        qg_json_key(&j, "rans_table_bytes"), qg_json_int(&j, (int64_t)info.code_tables);
        qg_json_key(&j, "rans_stream_header_bytes"), qg_json_int(&j, (int64_t)info.code_stream_headers);
        qg_json_key(&j, "rans_streams_own"), qg_json_int(&j, info.streams_own);
        qg_json_key(&j, "rans_streams_shared"), qg_json_int(&j, info.streams_shared);
        qg_json_key(&j, "rans_streams_brotli"), qg_json_int(&j, info.streams_brotli);
        qg_json_key(&j, "rans_streams_context"), qg_json_int(&j, info.streams_ctx);
        qg_json_key(&j, "rans_streams_wide"), qg_json_int(&j, info.streams_wide);
        qg_json_key(&j, "rans_streams_row_ordered"), qg_json_int(&j, info.streams_permuted);
        qg_json_key(&j, "rans_streams_transposed"), qg_json_int(&j, info.streams_transposed);
        qg_json_key(&j, "rans_sections_inline"), qg_json_int(&j, info.streams_inline);
      }
    }
    qg_json_key(&j, "entropy_bytes"), qg_json_int(&j, (int64_t)ceil(ent));
    qg_json_key(&j, "code_bytes"), qg_json_int(&j, code_bytes);
    qg_json_key(&j, "code_bytes_auto"), qg_json_bool(&j, a.code_auto);
    qg_json_key(&j, "total_bytes"), qg_json_int(&j, total);
    qg_json_key(&j, "cap_bytes"), qg_json_int(&j, CAP_BYTES);
    qg_json_key(&j, "fits"), qg_json_bool(&j, total <= CAP_BYTES);
    qg_json_obj_end(&j);
    qg_json_key(&j, "seconds"), qg_json_num(&j, qg_now() - t_start);
    qg_cli_json_end(&j, &b);
  } else {
    /* bytes are the tensor's bit-packed sections before general compression: per-tensor
     * shares of the compressed file are not defined */
    printf("%-32s %-12s %6s %10s %11s %9s %7s  %s\n", "tensor", "method", "bits/w", "packed B", "mse", "herr", "H0 b/w",
           "assigned by");
    for (int i = 0; i < qm.n; i++) {
      const qg_qresult *r = &qm.t[i];
      char m[64];
      method_bits(&r->q, m, sizeof m);
      char herr[16] = "-"; /* no Hessian (uncalibrated), not a failed measurement */
      if (!isnan(r->herr)) snprintf(herr, sizeof herr, "%.3g", r->herr);
      printf("%-32s %-12s %6.3f %10lld %11.4e %9s %7.3f  %s%s%s\n", r->q.name, m, r->bits_per_weight,
             (long long)r->packed_bytes, r->mse, herr, r->numel ? r->entropy_bits / (double)r->numel : 0, r->why,
             r->q.note ? "; " : "", r->q.note ? r->q.note : "");
    }
    printf("\ntensors %d, params %lld, packed %lld bytes (%.3f bits/weight)\n", qm.n, numel, packed,
           numel ? 8.0 * (double)packed / (double)numel : 0);
    printf("artifact  %12lld bytes  %s (%s, codes %s)\n", artifact, a.out, jr.compressor,
           layout_name);
    if (!ptz && layout == QG_LAYOUT_AUTO)
      printf("layouts   packed %zu vs one byte per code %zu bytes compressed: kept %s\n", info.packed_compressed,
             info.bytes_compressed, layout_name);
    printf("raw       %12zu bytes\n", raw_n);
    if (!ptz && info.comp == QG_COMP_RANS)
      printf("rans      meta %zu (scales %zu raw) + codes %zu + tables %zu + stream headers %zu + header %d; "
             "streams: %d own table, %d shared (%d tables), %d context, %d wide, %d brotli, %d transposed; "
             "%d row-ordered; %d inline\n",
             info.meta_compressed, info.scale_raw, info.code_payload, info.code_tables, info.code_stream_headers,
             QG_QGZ_HEADER, info.streams_own, info.streams_shared, info.shared_tables, info.streams_ctx,
             info.streams_wide, info.streams_brotli, info.streams_transposed, info.streams_permuted, info.streams_inline);
    if (a.compare)
      printf("zstd-22   %12zu\nbrotli-11 %12zu\nxz-9e     %12zu\nzlib-9    %12zu\n", sizes[QG_COMP_ZSTD],
             sizes[QG_COMP_BROTLI], sizes[QG_COMP_XZ], sizes[QG_COMP_ZLIB]);
    /* an order-0 figure, not a bound: a compressor that models context beats it */
    printf("order-0   %12lld bytes (order-0 entropy of the codes + side data at packed size)\n"
           "code      %12lld bytes\n",
           (long long)ceil(ent), code_bytes);
    printf("total     %12lld bytes of %lld cap: %s by %lld\n", total, CAP_BYTES, total <= CAP_BYTES ? "fits" : "OVER",
           llabs(CAP_BYTES - total));
  }
  /* after the figures, once: the usual surprise when a shrunk artifact barely shrinks */
  if (jr.source_quantized)
    fprintf(stderr, "quantize: note: %s is already a quantized artifact (%s): its weights are dequantized codes, so "
            "requantizing adds error on top of the first rounding, and fewer bits save little when its codes use few "
            "levels (inspect it to see them); quantize the float checkpoint when you have it\n", a.model,
            jr.source_format);
  qg_qjob_result_free(&jr);
  qg_spec_free(&spec);
  return 0;
}
