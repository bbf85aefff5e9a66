/* A small strict JSON parser (RFC 8259) into a read-only tree, for file headers such as
 * safetensors'. Strict means: the whole input must be one value (whitespace around it is
 * allowed), strings must be valid UTF-8 with no raw control characters, escapes are the
 * RFC set (\uXXXX surrogates must pair up), numbers follow the RFC grammar, and nesting is
 * limited so hostile input cannot exhaust the stack. Duplicate object keys are kept (the
 * RFC allows them); callers that care use qg_jobj_duplicate().
 *
 * The tree lives in an arena owned by a qg_jdoc, freed at once with qg_jdoc_free(). */
#ifndef QG_IO_JSON_PARSE_H
#define QG_IO_JSON_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef enum { QG_JNULL = 0, QG_JBOOL, QG_JNUM, QG_JSTR, QG_JARR, QG_JOBJ } qg_jtype;

typedef struct qg_jnode qg_jnode;
struct qg_jnode {
  qg_jtype type;
  int is_int;      /* QG_JNUM: a literal without fraction/exponent that fits int64 */
  int64_t i;       /* QG_JNUM when is_int: the value; QG_JBOOL: 0 or 1 */
  const char *s;   /* QG_JSTR: decoded UTF-8, NUL-terminated (may hold NULs: see len) */
  size_t len;      /* QG_JSTR: bytes in s; QG_JARR/QG_JOBJ: number of children */
  const char *key; /* for members of an object: the decoded key, else NULL */
  size_t key_len;
  size_t offset;     /* where the value starts in the input, plus opts.base_offset */
  size_t key_offset; /* where the key starts (object members only) */
  qg_jnode *child;   /* QG_JARR/QG_JOBJ: first element or member, in input order */
  qg_jnode *next;    /* next sibling */
};

typedef struct {
  void *node_chunks, *str_chunks; /* arena blocks (private) */
  size_t n_nodes;
} qg_jdoc;

typedef struct {
  const char *name;   /* prefixes every message, e.g. the file path (NULL: "json") */
  size_t base_offset; /* added to reported offsets, e.g. 8 for a safetensors header */
  int max_depth;      /* arrays/objects nested deeper fail; 0 = 64, capped at 512 */
  size_t max_nodes;   /* values in total; more fail with QG_ERR_NOMEM; 0 = 1<<22 */
} qg_jopts;

/* Parses text[0..len). On success *root points into doc; on failure doc is empty and the
 * message reads "<name>: offset <n>: <what was expected, what was found>". */
qg_status qg_jparse(const char *text, size_t len, const qg_jopts *opts, qg_jdoc *doc,
                    const qg_jnode **root);
void qg_jdoc_free(qg_jdoc *doc);

/* First member of obj with the given key (keys compared as byte strings), or NULL. */
const qg_jnode *qg_jobj_get(const qg_jnode *obj, const char *key);
/* Sets *dup to the earliest member (in input order) whose key already appeared in obj, or
 * NULL when all keys are distinct. O(n log n); fails only when out of memory. */
qg_status qg_jobj_duplicate(const qg_jnode *obj, const qg_jnode **dup);
/* "null", "boolean", "number", "string", "array", "object". */
const char *qg_jtype_name(qg_jtype t);

/* Length of the longest valid UTF-8 prefix of s[0..n) (n when all of it is valid).
 * Rejects overlong forms, surrogates and code points above U+10FFFF. */
size_t qg_utf8_valid_prefix(const uint8_t *s, size_t n);

#endif
