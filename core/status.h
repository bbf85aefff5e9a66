/* Status codes and the one error-message channel of the library.
 *
 * Fallible functions return a qg_status. At the point of failure they call
 * qg_fail(kind, fmt, ...), which stores a one-line message in a thread-local buffer and
 * returns kind, so `return qg_fail(QG_ERR_INPUT, "%s: offset %zu: bad magic", path, off);`
 * is the whole idiom. Callers higher up may add context with qg_fail_prefix(). Only cli/
 * reads the message (qg_last_error) and prints it. */
#ifndef QG_CORE_STATUS_H
#define QG_CORE_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  QG_OK = 0,
  QG_ERR_INPUT,       /* malformed or inconsistent input data, bad options */
  QG_ERR_IO,          /* open/read/write/rename failed */
  QG_ERR_NOMEM,       /* allocation failed or a size is beyond limits */
  QG_ERR_UNSUPPORTED, /* well-formed but not handled (dtype, opcode, version) */
  QG_ERR_DEVICE,      /* GPU / driver failure */
  QG_ERR_INTERNAL     /* a bug: an invariant did not hold */
} qg_status;

#if defined(__GNUC__)
#define QG_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define QG_PRINTF(a, b)
#endif

/* Records the message (replacing any earlier one) and returns kind. */
qg_status qg_fail(qg_status kind, const char *fmt, ...) QG_PRINTF(2, 3);
/* Prepends "<context>: " to the current message; returns kind unchanged. */
qg_status qg_fail_prefix(qg_status kind, const char *fmt, ...) QG_PRINTF(2, 3);
/* The current message ("" when none). Valid until the next qg_fail on this thread. */
const char *qg_last_error(void);
void qg_clear_error(void);
const char *qg_status_name(qg_status s);
/* The CLI's exit code for a status: 2 for bad input/unsupported input, 1 otherwise. */
int qg_status_exit_code(qg_status s);

/* Propagate a failing status unchanged. */
#define QG_TRY(expr)                     \
  do {                                   \
    qg_status qg_try_s_ = (expr);        \
    if (qg_try_s_ != QG_OK) return qg_try_s_; \
  } while (0)

#ifdef __cplusplus
}
#endif

#endif
