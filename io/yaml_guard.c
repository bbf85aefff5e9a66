#include "io/yaml_guard.h"

#include <yaml.h>

qg_status qg_yaml_check_depth(const uint8_t *data, size_t len, const char *fname, int max_depth) {
  yaml_parser_t p;
  if (!yaml_parser_initialize(&p)) return qg_fail(QG_ERR_NOMEM, "out of memory (YAML parser)");
  yaml_parser_set_input_string(&p, data, len);
  qg_status st = QG_OK;
  int depth = 0;
  for (;;) {
    yaml_event_t e;
    if (!yaml_parser_parse(&p, &e)) break; /* the loader says what is malformed */
    yaml_event_type_t t = e.type;
    if (t == YAML_MAPPING_START_EVENT || t == YAML_SEQUENCE_START_EVENT) {
      if (++depth > max_depth)
        st = qg_fail(QG_ERR_INPUT, "%s: line %d: YAML nested deeper than %d levels", fname,
                     (int)e.start_mark.line + 1, max_depth);
    } else if (t == YAML_MAPPING_END_EVENT || t == YAML_SEQUENCE_END_EVENT) {
      depth--;
    }
    yaml_event_delete(&e);
    if (st || t == YAML_STREAM_END_EVENT) break;
  }
  yaml_parser_delete(&p);
  return st;
}
