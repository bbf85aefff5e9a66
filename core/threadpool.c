#define _POSIX_C_SOURCE 200809L
#include "core/threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>

static struct {
  pthread_once_t once;
  int n; /* threads including the caller */
  pthread_t *th;
  pthread_mutex_t mu;
  pthread_cond_t start, done;
  uint64_t generation; /* bumped per job */
  int pending;         /* workers still running the current job */
  qg_task_fn fn;
  void *ctx;
  int64_t n_tasks;
} pool = {.once = PTHREAD_ONCE_INIT};

/* Set while this thread runs a job's tasks: a qg_parallel_for from inside a task runs
 * its loop on the calling thread (the pool has one job at a time). */
static _Thread_local int in_job;

/* Thread t runs tasks [t*n/T, (t+1)*n/T): a fixed partition, hence deterministic. */
static void run_share(int t) {
  int64_t lo = pool.n_tasks * t / pool.n, hi = pool.n_tasks * (t + 1) / pool.n;
  in_job = 1;
  for (int64_t i = lo; i < hi; i++) pool.fn(pool.ctx, i, t);
  in_job = 0;
}

static void *worker(void *arg) {
  int t = (int)(intptr_t)arg;
  uint64_t seen = 0;
  for (;;) {
    pthread_mutex_lock(&pool.mu);
    while (pool.generation == seen) pthread_cond_wait(&pool.start, &pool.mu);
    seen = pool.generation;
    pthread_mutex_unlock(&pool.mu);
    run_share(t);
    pthread_mutex_lock(&pool.mu);
    if (--pool.pending == 0) pthread_cond_signal(&pool.done);
    pthread_mutex_unlock(&pool.mu);
  }
  return NULL;
}

static int requested; /* qg_threads_request before first use; 0 = none */
static int started;

static void pool_init(void) {
  const char *env = getenv("QG_THREADS");
  long n = requested ? requested : env ? strtol(env, NULL, 10) : sysconf(_SC_NPROCESSORS_ONLN);
  if (n < 1) n = 1;
  if (n > 256) n = 256;
  pool.n = (int)n;
  started = 1;
  pthread_mutex_init(&pool.mu, NULL);
  pthread_cond_init(&pool.start, NULL);
  pthread_cond_init(&pool.done, NULL);
  pool.th = calloc((size_t)pool.n, sizeof *pool.th);
  for (int t = 1; t < pool.n; t++) {
    if (!pool.th || pthread_create(&pool.th[t], NULL, worker, (void *)(intptr_t)t) != 0) {
      pool.n = t; /* fall back to the threads we have */
      break;
    }
    pthread_detach(pool.th[t]);
  }
}

int qg_threads_request(int n) {
  /* the CLI asks before any work starts: single-threaded, so no lock is needed */
  if (started) return qg_threads() == n ? 0 : -1;
  requested = n;
  return 0;
}

int qg_threads(void) {
  pthread_once(&pool.once, pool_init);
  return pool.n;
}

void qg_parallel_for(int64_t n, qg_task_fn fn, void *ctx) {
  pthread_once(&pool.once, pool_init);
  if (n <= 0) return;
  if (pool.n == 1 || n == 1 || in_job) {
    for (int64_t i = 0; i < n; i++) fn(ctx, i, 0);
    return;
  }
  pthread_mutex_lock(&pool.mu);
  pool.fn = fn;
  pool.ctx = ctx;
  pool.n_tasks = n;
  pool.pending = pool.n - 1;
  pool.generation++;
  pthread_cond_broadcast(&pool.start);
  pthread_mutex_unlock(&pool.mu);
  run_share(0);
  pthread_mutex_lock(&pool.mu);
  while (pool.pending > 0) pthread_cond_wait(&pool.done, &pool.mu);
  pthread_mutex_unlock(&pool.mu);
}

typedef struct {
  qg_try_fn fn;
  void *ctx;
  int64_t n;
  _Atomic int64_t next;
  qg_status *st;
  char **msg;
} try_job;

static void try_worker(void *v, int64_t task, int thread) {
  (void)task, (void)thread;
  try_job *j = v;
  for (int64_t i; (i = atomic_fetch_add(&j->next, 1)) < j->n;) {
    j->st[i] = j->fn(j->ctx, i);
    if (j->st[i]) j->msg[i] = strdup(qg_last_error());
  }
}

qg_status qg_parallel_try(int64_t n, qg_try_fn fn, void *ctx) {
  if (n <= 0) return QG_OK;
  try_job j = {.fn = fn, .ctx = ctx, .n = n, .st = calloc((size_t)n, sizeof *j.st), .msg = calloc((size_t)n, sizeof *j.msg)};
  if (!j.st || !j.msg) {
    free(j.st), free(j.msg);
    return qg_fail(QG_ERR_NOMEM, "out of memory (task statuses)");
  }
  atomic_init(&j.next, 0);
  int workers = qg_threads();
  qg_parallel_for(n < workers ? n : workers, try_worker, &j);
  qg_status s = QG_OK;
  for (int64_t i = 0; i < n; i++)
    if (j.st[i] && !s) s = qg_fail(j.st[i], "%s", j.msg[i] ? j.msg[i] : "a task failed");
  for (int64_t i = 0; i < n; i++) free(j.msg[i]);
  free(j.st), free(j.msg);
  return s;
}
