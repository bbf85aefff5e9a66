/* Data-parallel training (train/dp.h) through the CLI: `mpirun -np 1|2|4 quantgolf train`
 * at one global batch gives the single-process run's weights and optimizer state bit for
 * bit (every tensor of train_state.safetensors compared with memcmp); a 2-rank run stopped
 * half way and resumed on 1 rank (and a 1-rank run resumed on 4) ends where the
 * uninterrupted run does; each step line's communication bytes are the algorithm's; a
 * rank killed mid-step ends the job in bounded time with a line from the survivor and an
 * intact checkpoint; `train --nproc 2` is `mpirun -np 2 train`; a world size that does not
 * divide --grad-accum, ranks with different configurations and a backend this build or
 * machine lacks each get one clear line and a non-zero exit. Skips visibly without MPI in
 * the build. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "comm/comm.h"
#include "core/sha256.h"
#include "io/safetensors.h"
#include "io/shards.h"
#include "tests/testlib.h"

#ifndef QG_MPIEXEC
#define QG_MPIEXEC ""
#endif

static char *g_dir;
static char g_base[8192];

#define REQUIRE_MPI()                                                                            \
  do {                                                                                           \
    if (!strstr(qg_comm_available(), "mpi") || !*QG_MPIEXEC) {                                   \
      print_message("SKIP: this build has no MPI (install libopenmpi-dev and rebuild)\n");     \
      skip();                                                                                    \
    }                                                                                            \
  } while (0)

/* Runs `<pre> [mpiexec <mpiopts> -np N] quantgolf <args>` in a shell (pre: environment
 * settings, a wrapper); np 0: no launcher. Returns the exit code; stderr into err, stdout into out
 * when out is not NULL. */
static int run_env(const char *pre, const char *mpiopts, int np, const char *args, char *out, size_t out_cap, char *err,
                   size_t cap) {
  char cmd[40000], errf[4200], outf[4200];
  snprintf(errf, sizeof errf, "%s/stderr.txt", g_dir);
  snprintf(outf, sizeof outf, "%s/stdout.txt", g_dir);
  if (np > 0)
    snprintf(cmd, sizeof cmd, "%s %s %s -np %d %s %s > '%s' 2> '%s'", pre, QG_MPIEXEC, mpiopts, np, QG_CLI_PATH, args,
             outf, errf);
  else
    snprintf(cmd, sizeof cmd, "%s %s %s > '%s' 2> '%s'", pre, QG_CLI_PATH, args, outf, errf);
  int st = system(cmd);
  qg_test_slurp(errf, err, cap);
  if (out) qg_test_slurp(outf, out, out_cap);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int run_out(int np, const char *args, char *out, size_t out_cap, char *err, size_t cap) {
  return run_env("", "", np, args, out, out_cap, err, cap);
}

static int run(int np, const char *args, char *err, size_t cap) { return run_out(np, args, NULL, 0, err, cap); }

static void train(int np, const char *out, const char *extra) {
  char args[12000], err[16384];
  snprintf(args, sizeof args, "%s --out '%s/%s' %s", g_base, g_dir, out, extra);
  int rc = run(np, args, err, sizeof err);
  if (rc != 0) fail_msg("np %d %s: exit %d\n%s", np, extra, rc, err);
}

/* Every tensor of the two training states, byte for byte, and the step and data position. */
static void same_state(const char *a, const char *b) {
  char pa[4200], pb[4200];
  snprintf(pa, sizeof pa, "%s/%s/train_state.safetensors", g_dir, a);
  snprintf(pb, sizeof pb, "%s/%s/train_state.safetensors", g_dir, b);
  qg_state x, y;
  assert_int_equal(qg_safetensors_read(pa, &x), QG_OK);
  assert_int_equal(qg_safetensors_read(pb, &y), QG_OK);
  assert_int_equal(x.n, y.n);
  for (int i = 0; i < x.n; i++) {
    const qg_tensor *u = &x.t[i], *v = qg_state_find_c(&y, x.t[i].name);
    if (!v) fail_msg("%s: '%s' missing", pb, u->name);
    size_t n = u->nbytes;
    assert_int_equal(n, v->nbytes);
    if (memcmp(u->data, v->data, n)) fail_msg("%s vs %s: tensor '%s' differs", a, b, u->name);
  }
  const char *keys[] = {"step", "adam_step", "data_pos", "config"};
  for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
    assert_string_equal(qg_state_get_meta(&x, keys[k]), qg_state_get_meta(&y, keys[k]));
  qg_state_free(&x), qg_state_free(&y);
}

/* The parameter count of a trained model, from its file (not from the trainer's log). */
static int64_t params_of(const char *dir) {
  qg_state x;
  assert_int_equal(qg_safetensors_read(qg_test_path(g_dir, dir), &x), QG_OK);
  int64_t n = 0;
  for (int i = 0; i < x.n; i++) n += (int64_t)(x.t[i].nbytes / 4);
  qg_state_free(&x);
  return n;
}

/* Every step line of a W-rank run's train.log carries the step's communication, and the
 * bytes are what the algorithm must move (train/dp.h): per micro-batch round one
 * reduce-scatter of every gradient (P floats sent), then the all-gather of the step's
 * grad_accum losses (fp64) and of the updated weights (P floats); busbw is nccl-tests'
 * (W-1)/W of those bytes over the printed time, within the printing's rounding. */
static void check_step_comm(const char *dir, int W, int64_t P, int grad_accum, int iterations) {
  static char log[1 << 16];
  char lp[4200];
  snprintf(lp, sizeof lp, "%s/%s/train.log", g_dir, dir);
  qg_test_slurp(lp, log, sizeof log);
  long long want_rs = (long long)(grad_accum / W) * P * 4, want_ag = P * 4 + (long long)grad_accum * 8;
  int steps = 0;
  for (const char *l = log; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
    const char *r = strstr(l, " ranks:"), *nl = strchr(l, '\n'), *tl = strstr(l, " train_loss:");
    if (strncmp(l, "step:", 5) || !tl || (nl && tl > nl)) continue; /* training steps only */
    if (!r || (nl && r > nl)) fail_msg("%s: a step line without its communication: %.*s", dir, (int)(nl ? nl - l : 80), l);
    int w = 0;
    double ms = -1, bw = -1;
    long long rs = -1, ag = -1;
    if (sscanf(r, " ranks:%d comm:%lfms reduce_scatter:%lldB all_gather:%lldB busbw:%lfGB/s", &w, &ms, &rs, &ag, &bw) != 5)
      fail_msg("%s: cannot read the communication of: %.*s", dir, (int)(nl ? nl - l : 80), l);
    assert_int_equal(w, W);
    if (rs != want_rs || ag != want_ag)
      fail_msg("%s: step moved reduce_scatter:%lld all_gather:%lld bytes, expected %lld and %lld (P=%lld)", dir, rs, ag,
               want_rs, want_ag, (long long)P);
    double bus = (double)(rs + ag) * (W - 1) / W;
    double hi = ms > 0.05 ? bus / ((ms - 0.05) * 1e-3) / 1e9 + 5e-4 : 1e300;
    double lo = bus / ((ms + 0.05) * 1e-3) / 1e9 - 5e-4;
    if (!(ms >= 0 && bw >= lo && bw <= hi))
      fail_msg("%s: busbw %.3f GB/s does not follow from %lld bytes in %.1f ms", dir, bw, rs + ag, ms);
    steps++;
  }
  assert_int_equal(steps, iterations);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The uninterrupted single-process run of g_base, once. */
static void reference_run(void) {
  if (!qg_test_exists(qg_test_path(g_dir, "one/train_state.safetensors"))) train(0, "one", "");
}

static void test_bitwise_any_world(void **st) {
  (void)st;
  REQUIRE_MPI();
  train(0, "one", "");
  train(1, "np1", "");
  train(2, "np2", "");
  train(4, "np4", "");
  same_state("one", "np1");
  same_state("one", "np2");
  same_state("one", "np4");
  /* the logs say what the collectives moved each step */
  int64_t P = params_of("one/final_model.safetensors");
  check_step_comm("np2", 2, P, 4, 6);
  check_step_comm("np4", 4, P, 4, 6);
  /* with QAT (fake quantization on every rank, the clip mask on the owners) */
  train(0, "qone", "--qat 'blocks.*: rowwise bits=4' --qat-ste clip");
  train(2, "qnp2", "--qat 'blocks.*: rowwise bits=4' --qat-ste clip");
  same_state("qone", "qnp2");
}

/* The GPU's data-parallel path (train/dp.h, qg_dp_dev_*: contiguous blocks, the whole
 * optimizer on every rank), run on the CPU by the test-only QG_TEST_DP_REPLICATED=1: one
 * process on the self backend and 2 and 4 ranks under mpirun give the default path's
 * single-process weights and optimizer state bit for bit, with QAT too. */
static void test_replicated_path(void **st) {
  (void)st;
  REQUIRE_MPI();
  reference_run();
  const int nps[] = {0, 2, 4};
  const char *dirs[] = {"rep1", "rep2", "rep4"};
  for (int k = 0; k < 3; k++) {
    char args[12000], err[16384];
    snprintf(args, sizeof args, "%s --out '%s/%s'", g_base, g_dir, dirs[k]);
    int rc = run_env("QG_TEST_DP_REPLICATED=1", "", nps[k], args, NULL, 0, err, sizeof err);
    if (rc) fail_msg("np %d: exit %d\n%s", nps[k], rc, err);
    same_state("one", dirs[k]);
  }
  char args[12000], err[16384];
  if (!qg_test_exists(qg_test_path(g_dir, "qone/train_state.safetensors")))
    train(0, "qone", "--qat 'blocks.*: rowwise bits=4' --qat-ste clip");
  snprintf(args, sizeof args, "%s --out '%s/qrep2' --qat 'blocks.*: rowwise bits=4' --qat-ste clip", g_base, g_dir);
  assert_int_equal(run_env("QG_TEST_DP_REPLICATED=1", "", 2, args, NULL, 0, err, sizeof err), 0);
  same_state("qone", "qrep2");
}

static void test_resume_other_world(void **st) {
  (void)st;
  REQUIRE_MPI();
  train(0, "full", "");
  train(2, "r21", "--stop-at 3");
  train(0, "r21", "--resume");
  same_state("full", "r21");
  train(0, "r14", "--stop-at 2");
  train(4, "r14", "--resume");
  same_state("full", "r14");
}

/* A rank that dies in the middle of a step (QG_TEST_DIE_AT_STEP, test-only): the job ends
 * with a non-zero exit in bounded time (`timeout` guards against a hang), a surviving rank
 * says in one line where it was, and the last checkpoint written before the death is whole:
 * it holds step 2, nothing half-written lies beside it, and resumed on one rank it ends
 * bit for bit where the uninterrupted run does. Twice: OpenMPI's launcher ending the
 * survivor (the default), and with --enable-recovery, where nothing ends it but its own
 * watchdog (QG_COMM_TIMEOUT). */
static void test_dying_rank(void **st) {
  (void)st;
  REQUIRE_MPI();
  reference_run();
  const char *modes[] = {"", "--enable-recovery"};
  const char *dirs[] = {"die", "die_wd"};
  for (int m = 0; m < 2; m++) {
    char args[12000], pre[256], err[16384];
    snprintf(args, sizeof args, "%s --out '%s/%s' --save-every 2", g_base, g_dir, dirs[m]);
    snprintf(pre, sizeof pre, "QG_TEST_DIE_AT_STEP=4 QG_TEST_DIE_RANK=1 QG_COMM_TIMEOUT=5 timeout -k 10 120");
    double t0 = now_s();
    int rc = run_env(pre, modes[m], 2, args, NULL, 0, err, sizeof err);
    double dt = now_s() - t0;
    print_message("dying rank%s: exit %d after %.1f s\n", m ? " (recovery: the watchdog)" : "", rc, dt);
    /* 124: `timeout` ended a hang. Under --enable-recovery OpenMPI's mpirun exits 0 whatever
     * its ranks did (`mpirun --enable-recovery -np 2 sh -c 'exit 3'` is 0), so there the
     * survivor's line below is the proof */
    if (rc == 124 || (m == 0 && rc == 0) || dt > 100) fail_msg("exit %d after %.1f s:\n%s", rc, dt, err);
    const char *line = strstr(err, "quantgolf train: rank 0 of 2: ");
    if (!line) fail_msg("no line from the surviving rank:\n%s", err);
    char first[400];
    snprintf(first, sizeof first, "%.*s", (int)strcspn(line, "\n"), line);
    print_message("  survivor: %s\n", first);
    if (m == 0 && !strstr(first, "ended by the launcher (SIGTERM) while waiting in reduce-scatter"))
      fail_msg("stderr:\n%s", err);
    if (m == 1 && !strstr(line, "reduce-scatter did not complete within 5 s")) fail_msg("stderr:\n%s", err);
    /* the checkpoint of step 2 (the last before step 4), and only the run's own files */
    char path[4200];
    snprintf(path, sizeof path, "%s/%s/train_state.safetensors", g_dir, dirs[m]);
    qg_state x;
    assert_int_equal(qg_safetensors_read(path, &x), QG_OK);
    assert_string_equal(qg_state_get_meta(&x, "step"), "2");
    qg_state_free(&x);
    snprintf(path, sizeof path, "%s/%s", g_dir, dirs[m]);
    assert_int_equal(qg_test_count_entries(path), 3); /* train.log, train_state, final_model */
    train(0, dirs[m], "--resume");
    same_state("one", dirs[m]);
  }
}

/* kld (and eval) across ranks: the JSON's every figure and the per-token dump are the
 * single-rank run's, byte for byte; 16 batches of 8 windows over 2 and 3 ranks (uneven
 * rounds), contest windows and sliding ones. */
static char *cut_seconds(char *json) {
  char *p = strstr(json, "\"seconds\"");
  if (p) {
    char *e = p + strcspn(p, ",}");
    memmove(p, e, strlen(e) + 1);
  }
  return json;
}

static void test_kld_any_world(void **st) {
  (void)st;
  REQUIRE_MPI();
  train(0, "kbase", "");
  train(0, "kqat", "--qat 'blocks.*: rowwise bits=3'");
  const char *modes[] = {"--seq-len 16 --batch 8", "--seq-len 16 --stride 4 --batch 5"};
  for (int m = 0; m < 2; m++) {
    static char out1[65536], outn[65536], err[16384], d1[65536], dn[65536];
    char args[12000];
    for (int np = 0; np <= 3; np++) {
      if (np == 1) continue;
      snprintf(args, sizeof args,
               "kld --base '%s/kbase/final_model.safetensors' --model '%s/kqat/final_model.safetensors' --val "
               "'%s/val.bin' --tokenizer '%s/tests/data/tok_rules.model' --device cpu --threads 1 %s --json "
               "--dump-token-kld '%s/dump%d.bin'",
               g_dir, g_dir, g_dir, QG_SOURCE_DIR, modes[m], g_dir, np);
      char *o = np == 0 ? out1 : outn;
      int rc = run_out(np, args, o, sizeof out1, err, sizeof err);
      if (rc) fail_msg("kld np %d: exit %d\n%s", np, rc, err);
      cut_seconds(o);
      FILE *f = fopen(qg_test_path(g_dir, np == 0 ? "dump0.bin" : np == 2 ? "dump2.bin" : "dump3.bin"), "rb");
      assert_non_null(f);
      size_t n = fread(np == 0 ? d1 : dn, 1, sizeof d1, f);
      fclose(f);
      static size_t n1;
      if (np == 0) {
        n1 = n;
        assert_true(strstr(out1, "\"kld\"") != NULL);
      } else {
        assert_string_equal(outn, out1);
        assert_int_equal(n, n1);
        assert_memory_equal(dn, d1, n);
      }
    }
  }
  /* eval: the same figures */
  static char e1[8192], e2[8192], err[16384];
  char args[12000];
  snprintf(args, sizeof args,
           "eval --model '%s/kqat/final_model.safetensors' --val '%s/val.bin' --tokenizer "
           "'%s/tests/data/tok_rules.model' --device cpu --threads 1 --seq-len 16 --batch 4 --json",
           g_dir, g_dir, QG_SOURCE_DIR);
  assert_int_equal(run_out(0, args, e1, sizeof e1, err, sizeof err), 0);
  assert_int_equal(run_out(2, args, e2, sizeof e2, err, sizeof err), 0);
  assert_string_equal(cut_seconds(e2), cut_seconds(e1));
}

/* quantize --calib across ranks: the saved Hessians and the artifact are the
 * single-rank run's, byte for byte (4 batches, 4 + 4 + 4 + 1 sequences: two rounds on 2 and on 3 ranks, where ranks
 * without a batch in the last round add zeros). */
static int same_file(const char *a, const char *b) {
  char ha[65], hb[65];
  if (qg_sha256_file(a, ha) || qg_sha256_file(b, hb)) return 0;
  return !strcmp(ha, hb);
}

static void test_calibration_any_world(void **st) {
  (void)st;
  REQUIRE_MPI();
  train(0, "cbase", "");
  uint16_t *tok = malloc(sizeof(uint16_t) * 60000);
  uint64_t r = 3;
  for (int i = 0; i < 60000; i++) tok[i] = (uint16_t)(qg_test_rand(&r) % 600);
  assert_int_equal(qg_shard_write(qg_test_path(g_dir, "calib.bin"), tok, 60000), QG_OK);
  free(tok);
  char args[12000], err[16384], h0[4200], a0[4200];
  for (int np = 0; np <= 3; np++) {
    if (np == 1) continue;
    snprintf(args, sizeof args,
             "quantize --model '%s/cbase/final_model.safetensors' --spec 'blocks.*: gptq bits=4' --calib "
             "'%s/calib.bin' --calib-seqs 13 --calib-len 2048 --threads 1 --save-hessians '%s/h%d.safetensors' "
             "--out '%s/q%d.qgz'",
             g_dir, g_dir, g_dir, np, g_dir, np);
    int rc = run(np, args, err, sizeof err);
    if (rc) fail_msg("quantize np %d: exit %d\n%s", np, rc, err);
    char h[4200], a[4200];
    snprintf(h, sizeof h, "%s/h%d.safetensors", g_dir, np);
    snprintf(a, sizeof a, "%s/q%d.qgz", g_dir, np);
    if (np == 0) {
      snprintf(h0, sizeof h0, "%s", h), snprintf(a0, sizeof a0, "%s", a);
      continue;
    }
    if (!same_file(h0, h)) fail_msg("np %d: the Hessian file differs from the single-rank one", np);
    if (!same_file(a0, a)) fail_msg("np %d: the artifact differs from the single-rank one", np);
  }
}

/* --nproc N: quantgolf starts the same command under `mpirun -np N` itself. Run with a
 * PATH holding the launcher and none of the test's OpenMPI settings (the launcher sets what
 * root and oversubscription need): the weights are those of typing mpirun, bit for bit;
 * the job's exit status passes through (3 ranks, 4 micro-batches: 2); eval gives the
 * one-rank figures with --nproc 2 and 1; a bad N, no launcher on PATH and --nproc under
 * mpirun are one line and exit 2, with no output directory made. */
static void test_nproc(void **st) {
  (void)st;
  REQUIRE_MPI();
  char bindir[4200], pre[9000], args[12000], err[16384];
  snprintf(bindir, sizeof bindir, "%s", QG_MPIEXEC);
  char *slash = strrchr(bindir, '/');
  if (slash) *slash = 0;
  snprintf(pre, sizeof pre,
           "env -u OMPI_ALLOW_RUN_AS_ROOT -u OMPI_ALLOW_RUN_AS_ROOT_CONFIRM -u OMPI_MCA_rmaps_base_oversubscribe "
           "PATH='%s:/usr/bin:/bin'",
           slash ? bindir : "/usr/bin");
  if (!qg_test_exists(qg_test_path(g_dir, "np2/train_state.safetensors"))) train(2, "np2", "");
  snprintf(args, sizeof args, "%s --out '%s/nproc2' --nproc 2", g_base, g_dir);
  int rc = run_env(pre, "", 0, args, NULL, 0, err, sizeof err);
  if (rc) fail_msg("train --nproc 2: exit %d\n%s", rc, err);
  if (!strstr(err, "data parallel: 2 ranks")) fail_msg("stderr:\n%s", err);
  same_state("np2", "nproc2");
  /* the job's exit status */
  snprintf(args, sizeof args, "%s --out '%s/nproc3' --nproc 3", g_base, g_dir);
  assert_int_equal(run_env(pre, "", 0, args, NULL, 0, err, sizeof err), 2);
  if (!strstr(err, "not a multiple of the world size 3")) fail_msg("stderr:\n%s", err);
  /* eval: the one-rank figures */
  static char e0[8192], e1[8192], e2[8192];
  char ev[8000];
  snprintf(ev, sizeof ev,
           "eval --model '%s/np2/final_model.safetensors' --val '%s/val.bin' --tokenizer "
           "'%s/tests/data/tok_rules.model' --device cpu --threads 1 --seq-len 16 --batch 4 --json",
           g_dir, g_dir, QG_SOURCE_DIR);
  assert_int_equal(run_out(0, ev, e0, sizeof e0, err, sizeof err), 0);
  snprintf(args, sizeof args, "%s --nproc 2", ev);
  if ((rc = run_env(pre, "", 0, args, e2, sizeof e2, err, sizeof err))) fail_msg("eval --nproc 2: exit %d\n%s", rc, err);
  snprintf(args, sizeof args, "%s --nproc 1", ev);
  assert_int_equal(run_env(pre, "", 0, args, e1, sizeof e1, err, sizeof err), 0);
  assert_string_equal(cut_seconds(e2), cut_seconds(e0));
  assert_string_equal(cut_seconds(e1), e0);
  /* errors */
  snprintf(args, sizeof args, "%s --out '%s/n0' --nproc 0", g_base, g_dir);
  assert_int_equal(run_env(pre, "", 0, args, NULL, 0, err, sizeof err), 2);
  if (!strstr(err, "--nproc 0: expected a number of ranks")) fail_msg("stderr:\n%s", err);
  snprintf(args, sizeof args, "%s --out '%s/n1' --nproc 2", g_base, g_dir);
  assert_int_equal(run_env("PATH=/nonexistent", "", 0, args, NULL, 0, err, sizeof err), 2);
  if (!strstr(err, "no mpirun or mpiexec on PATH")) fail_msg("stderr:\n%s", err);
  assert_int_equal(run(1, args, err, sizeof err), 2);
  if (!strstr(err, "under an MPI launcher")) fail_msg("stderr:\n%s", err);
  assert_int_equal(qg_test_exists(qg_test_path(g_dir, "n0")) || qg_test_exists(qg_test_path(g_dir, "n1")), 0);
}

static void test_errors(void **st) {
  (void)st;
  REQUIRE_MPI();
  char args[20000], err[16384];
  /* 3 ranks do not divide 4 micro-batches */
  snprintf(args, sizeof args, "%s --out '%s/e3'", g_base, g_dir);
  int rc = run(3, args, err, sizeof err);
  assert_int_equal(rc, 2);
  if (!strstr(err, "--grad-accum 4 is not a multiple of the world size 3")) fail_msg("stderr:\n%s", err);
  /* one line from the job, not one per rank */
  const char *p = strstr(err, "not a multiple");
  assert_null(strstr(p + 1, "not a multiple"));
  /* ranks that disagree: MPMD launch, rank 1 with another seed */
  snprintf(args, sizeof args, "%s --out '%s/e4' --seed 1 : -np 1 %s %s --out '%s/e4' --seed 2", g_base, g_dir,
           QG_CLI_PATH, g_base, g_dir);
  rc = run(1, args, err, sizeof err);
  assert_int_not_equal(rc, 0);
  if (!strstr(err, "differs on rank 1 of 2")) fail_msg("stderr:\n%s", err);
  /* a backend this machine cannot run */
  snprintf(args, sizeof args, "%s --out '%s/e5' --comm nccl", g_base, g_dir);
  rc = run(0, args, err, sizeof err);
  assert_int_equal(rc, 2);
  if (!strstr(err, "nccl")) fail_msg("stderr:\n%s", err);
  assert_int_equal(qg_test_exists(qg_test_path(g_dir, "e5")), 0);
}

/* Without a launcher, --comm mpi in a build without MPI (or self under one) is refused. */
static void test_comm_option(void **st) {
  (void)st;
  char args[12000], err[16384];
  snprintf(args, sizeof args, "%s --out '%s/c1' --comm tcp", g_base, g_dir);
  assert_int_equal(run(0, args, err, sizeof err), 2);
  if (!strstr(err, "unknown backend")) fail_msg("stderr:\n%s", err);
  if (!strstr(qg_comm_available(), "mpi")) {
    snprintf(args, sizeof args, "%s --out '%s/c2' --comm mpi", g_base, g_dir);
    assert_int_equal(run(0, args, err, sizeof err), 2);
    if (!strstr(err, "libopenmpi-dev")) fail_msg("stderr:\n%s", err);
    snprintf(args, sizeof args, "%s --out '%s/c3' --nproc 2", g_base, g_dir);
    assert_int_equal(run(0, args, err, sizeof err), 2);
    if (!strstr(err, "--nproc 2: this build has no MPI")) fail_msg("stderr:\n%s", err);
  }
}

int main(void) {
  g_dir = qg_test_tmpdir();
  uint16_t *tok = malloc(sizeof(uint16_t) * 6000);
  uint64_t r = 11;
  for (int i = 0; i < 6000; i++) tok[i] = (uint16_t)(qg_test_rand(&r) % 600); /* tok_rules.model: 600 pieces */
  if (qg_shard_write(qg_test_path(g_dir, "train.bin"), tok, 4000) ||
      qg_shard_write(qg_test_path(g_dir, "val.bin"), tok + 4000, 2000))
    return 1;
  free(tok);
  /* 4 micro-batches of 2 sequences; a warmup step and a warmdown; one thread per rank */
  snprintf(g_base, sizeof g_base,
           "train --train '%s/train.bin' --val '%s/val.bin' --tokenizer '%s/tests/data/tok_rules.model' "
           "--layers 2 --dim 32 --heads 2 --kv-heads 1 --seq-len 16 --batch-tokens 128 --grad-accum 4 "
           "--iterations 6 --warmup-steps 1 --warmdown 3 --threads 1 --val-max-tokens 200 --export none",
           g_dir, g_dir, QG_SOURCE_DIR);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bitwise_any_world),
      cmocka_unit_test(test_replicated_path),
      cmocka_unit_test(test_resume_other_world),
      cmocka_unit_test(test_kld_any_world),
      cmocka_unit_test(test_calibration_any_world),
      cmocka_unit_test(test_dying_rank),
      cmocka_unit_test(test_nproc),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_comm_option),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  qg_test_rmdir(g_dir);
  return rc;
}
