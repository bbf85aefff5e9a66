/* A small persistent thread pool for data-parallel loops. Tasks are handed out in fixed
 * contiguous chunks (task i always runs on the same thread for a given pool size), so
 * results that depend only on per-task work are deterministic for a given thread count. */
#ifndef QG_CORE_THREADPOOL_H
#define QG_CORE_THREADPOOL_H

#include <stdint.h>

/* fn(ctx, task, thread) for task in [0, n). */
typedef void (*qg_task_fn)(void *ctx, int64_t task, int thread);

/* Number of worker threads (including the caller): QG_THREADS if set, else the number of
 * online CPUs, unless qg_threads_request came first. Fixed at first use. */
int qg_threads(void);
/* Asks for n threads (n >= 1), overriding QG_THREADS: 0 when the pool will use (or
 * already uses) n, -1 when it is already running with another count. */
int qg_threads_request(int n);
/* Runs fn over [0, n) on the pool and returns when all tasks are done. Safe to call from
 * one thread at a time (the model's ops are issued sequentially). */
void qg_parallel_for(int64_t n, qg_task_fn fn, void *ctx);

#endif
