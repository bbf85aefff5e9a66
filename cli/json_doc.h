/* The one JSON vocabulary of every command's --json output: each document opens with the
 * same envelope (schema_version, command, quantgolf_version) and names a thing the same
 * way in every command (README "JSON output" lists every key with its type). */
#ifndef QG_CLI_JSON_DOC_H
#define QG_CLI_JSON_DOC_H

#include "core/json.h"

/* Raised when a key changes meaning or type, or one is removed; adding keys keeps it. */
#define QG_JSON_SCHEMA_VERSION 1

/* Starts the document object in b (pretty-printed) with the envelope of `command`. */
void qg_cli_json_begin(qg_json *j, qg_buf *b, const char *command);
/* Closes the document and writes it with a newline on stdout (nothing if b failed). */
void qg_cli_json_end(qg_json *j, qg_buf *b);
/* "key": {"path": path, "file_bytes": N ...} with the object left open for the caller's
 * fields (close it with qg_json_obj_end); file_bytes is null when path cannot be stat'ed. */
void qg_cli_json_file_open(qg_json *j, const char *key, const char *path);
/* The size of a file on disk, -1 when it cannot be stat'ed. */
long long qg_cli_file_bytes(const char *path);

#endif
