#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define QG_MSG_CAP 2048
static _Thread_local char qg_msg[QG_MSG_CAP];

qg_status qg_fail(qg_status kind, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(qg_msg, sizeof qg_msg, fmt, ap);
  va_end(ap);
  /* One line: newlines in names or pieces must not split the message. */
  for (char *p = qg_msg; *p; p++)
    if (*p == '\n' || *p == '\r') *p = ' ';
  return kind;
}

qg_status qg_fail_prefix(qg_status kind, const char *fmt, ...) {
  char prefix[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  char old[QG_MSG_CAP];
  memcpy(old, qg_msg, sizeof old);
  snprintf(qg_msg, sizeof qg_msg, "%s: %.*s", prefix, (int)(sizeof qg_msg - 1 - strlen(prefix)), old);
  for (char *p = qg_msg; *p; p++)
    if (*p == '\n' || *p == '\r') *p = ' ';
  return kind;
}

const char *qg_last_error(void) { return qg_msg; }
void qg_clear_error(void) { qg_msg[0] = 0; }

const char *qg_status_name(qg_status s) {
  switch (s) {
    case QG_OK: return "ok";
    case QG_ERR_INPUT: return "bad input";
    case QG_ERR_IO: return "i/o error";
    case QG_ERR_NOMEM: return "out of memory";
    case QG_ERR_UNSUPPORTED: return "unsupported";
    case QG_ERR_DEVICE: return "device error";
    case QG_ERR_INTERNAL: return "internal error";
  }
  return "unknown status";
}

int qg_status_exit_code(qg_status s) {
  switch (s) {
    case QG_OK: return 0;
    case QG_ERR_INPUT:
    case QG_ERR_UNSUPPORTED: return 2;
    default: return 1;
  }
}
