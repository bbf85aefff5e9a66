#include "cli/json_doc.h"

#include <stdio.h>
#include <sys/stat.h>

long long qg_cli_file_bytes(const char *path) {
  struct stat sb;
  return path && stat(path, &sb) == 0 ? (long long)sb.st_size : -1;
}

void qg_cli_json_begin(qg_json *j, qg_buf *b, const char *command) {
  qg_buf_init(b);
  qg_json_init(j, b, 1);
  qg_json_obj_begin(j);
  qg_json_key(j, "schema_version"), qg_json_int(j, QG_JSON_SCHEMA_VERSION);
  qg_json_key(j, "command"), qg_json_str(j, command);
  qg_json_key(j, "quantgolf_version"), qg_json_str(j, QG_VERSION);
}

void qg_cli_json_end(qg_json *j, qg_buf *b) {
  qg_json_obj_end(j);
  qg_buf_byte(b, '\n');
  if (!b->failed) fwrite(b->p, 1, b->n, stdout);
  qg_buf_free(b);
}

void qg_cli_json_file_open(qg_json *j, const char *key, const char *path) {
  qg_json_key(j, key);
  qg_json_obj_begin(j);
  qg_json_key(j, "path"), qg_json_str(j, path);
  long long n = qg_cli_file_bytes(path);
  qg_json_key(j, "file_bytes");
  if (n >= 0) qg_json_int(j, n);
  else qg_json_null(j);
}
