#define _POSIX_C_SOURCE 200809L
#include "core/threadpool.h"

#include <pthread.h>
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

/* Thread t runs tasks [t*n/T, (t+1)*n/T): a fixed partition, hence deterministic. */
static void run_share(int t) {
  int64_t lo = pool.n_tasks * t / pool.n, hi = pool.n_tasks * (t + 1) / pool.n;
  for (int64_t i = lo; i < hi; i++) pool.fn(pool.ctx, i, t);
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
  if (pool.n == 1 || n == 1) {
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
