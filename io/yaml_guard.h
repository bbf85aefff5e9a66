/* A cheap pre-scan of YAML input before libyaml builds a document from it. */
#ifndef QG_IO_YAML_GUARD_H
#define QG_IO_YAML_GUARD_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* Deepest nesting of mappings and sequences any quantgolf YAML file needs is a handful;
 * a document nested deeper is refused. */
#define QG_YAML_MAX_DEPTH 64

/* Streams the parser's events and fails (QG_ERR_INPUT, naming fname and the line) as soon
 * as collections nest deeper than max_depth: libyaml's document loader takes seconds to
 * build (and then reject) a 100,000-deep document, the event scan stops at the first
 * level too many. Malformed YAML passes here and is reported by the loader. */
qg_status qg_yaml_check_depth(const uint8_t *data, size_t len, const char *fname, int max_depth);

#endif
