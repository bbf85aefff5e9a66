/* A small persistent thread pool for data-parallel loops. Tasks are handed out in fixed
 * contiguous chunks (task i always runs on the same thread for a given pool size), so
 * results that depend only on per-task work are deterministic for a given thread count. */
#ifndef QG_CORE_THREADPOOL_H
#define QG_CORE_THREADPOOL_H

#include <stdint.h>

#include "core/status.h"

/* fn(ctx, task, thread) for task in [0, n). */
typedef void (*qg_task_fn)(void *ctx, int64_t task, int thread);

/* Number of worker threads (including the caller): QG_THREADS if set, else the number of
 * online CPUs, unless qg_threads_request came first. Fixed at first use. */
int qg_threads(void);
/* Asks for n threads (n >= 1), overriding QG_THREADS: 0 when the pool will use (or
 * already uses) n, -1 when it is already running with another count. */
int qg_threads_request(int n);
/* Runs fn over [0, n) on the pool and returns when all tasks are done. Safe to call from
 * one thread at a time (the model's ops are issued sequentially); called from inside a
 * pool task, it runs the loop on the calling thread. */
void qg_parallel_for(int64_t n, qg_task_fn fn, void *ctx);

/* A fallible task: its status, with qg_fail's message on failure. */
typedef qg_status (*qg_try_fn)(void *ctx, int64_t task);
/* Runs fn over [0, n) on the pool, each thread taking the next task in index order as it
 * frees up (put the longest first), and returns the status of the lowest-numbered task
 * that failed, with its message, or QG_OK. Every task runs, whatever fails. Results are
 * deterministic when each task's work depends only on its index. From inside a pool task
 * this runs the tasks on the calling thread. */
qg_status qg_parallel_try(int64_t n, qg_try_fn fn, void *ctx);

#endif
