/* Training options from a YAML file: a flat mapping of option names to scalar values,
 * read with libyaml into (key, value, line) triples. What the keys mean is the CLI's
 * business (cli/cmd_train.c applies them through the same setter as the command line);
 * this file only guarantees the shape: one document, a mapping, scalar keys and values,
 * no key twice. */
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "core/file.h"
#include "core/util.h"
#include "io/yaml_guard.h"
#include "train/train.h"

void qg_train_kvs_free(qg_train_kvs *k) {
  for (int i = 0; i < k->n; i++) free(k->kv[i].key), free(k->kv[i].value);
  free(k->kv);
  memset(k, 0, sizeof *k);
}

static qg_status add(qg_train_kvs *k, const char *key, const char *value, int line) {
  qg_train_kv *kv = realloc(k->kv, sizeof *kv * (size_t)(k->n + 1));
  if (!kv) return qg_fail(QG_ERR_NOMEM, "out of memory");
  k->kv = kv;
  kv[k->n].key = qg_strdup(key);
  kv[k->n].value = qg_strdup(value);
  kv[k->n].line = line;
  k->n++;
  if (!kv[k->n - 1].key || !kv[k->n - 1].value) return qg_fail(QG_ERR_NOMEM, "out of memory");
  return QG_OK;
}

static qg_status parse_doc(yaml_document_t *doc, const char *path, qg_train_kvs *out) {
  yaml_node_t *root = yaml_document_get_root_node(doc);
  if (!root) return QG_OK; /* an empty file sets nothing */
  if (root->type != YAML_MAPPING_NODE)
    return qg_fail(QG_ERR_INPUT, "%s: line %d: expected a mapping of option names to values (e.g. 'layers: 9')", path,
                   (int)root->start_mark.line + 1);
  for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
    yaml_node_t *kn = yaml_document_get_node(doc, p->key), *vn = yaml_document_get_node(doc, p->value);
    int line = (int)kn->start_mark.line + 1;
    if (kn->type != YAML_SCALAR_NODE) return qg_fail(QG_ERR_INPUT, "%s: line %d: an option name must be a plain word", path, line);
    const char *key = (const char *)kn->data.scalar.value;
    if (vn->type != YAML_SCALAR_NODE)
      return qg_fail(QG_ERR_INPUT, "%s: line %d: '%s' must have a single value, not a %s", path, line, key,
                     vn->type == YAML_MAPPING_NODE ? "mapping" : "list");
    const char *val = (const char *)vn->data.scalar.value;
    /* "key:" with nothing after it parses as an empty plain scalar: refuse it rather than
     * guess between "unset" and "empty string" */
    if (!*val && vn->data.scalar.style == YAML_PLAIN_SCALAR_STYLE)
      return qg_fail(QG_ERR_INPUT, "%s: line %d: '%s' has no value", path, line, key);
    for (int i = 0; i < out->n; i++)
      if (!strcmp(out->kv[i].key, key))
        return qg_fail(QG_ERR_INPUT, "%s: line %d: '%s' is given twice (first on line %d)", path, line, key,
                       out->kv[i].line);
    QG_TRY(add(out, key, val, line));
  }
  return QG_OK;
}

qg_status qg_train_kvs_load(const char *path, qg_train_kvs *out) {
  memset(out, 0, sizeof *out);
  uint8_t *data;
  size_t len;
  QG_TRY(qg_read_file(path, &data, &len, 1 << 20));
  qg_status ds = qg_yaml_check_depth(data, len, path, QG_YAML_MAX_DEPTH);
  if (ds) {
    free(data);
    return ds;
  }
  yaml_parser_t parser;
  yaml_document_t doc;
  if (!yaml_parser_initialize(&parser)) {
    free(data);
    return qg_fail(QG_ERR_NOMEM, "out of memory (YAML parser)");
  }
  yaml_parser_set_input_string(&parser, data, len);
  qg_status s = QG_OK;
  if (!yaml_parser_load(&parser, &doc)) {
    s = qg_fail(QG_ERR_INPUT, "%s: line %d column %d: malformed YAML: %s", path, (int)parser.problem_mark.line + 1,
                (int)parser.problem_mark.column + 1, parser.problem ? parser.problem : "parse error");
  } else {
    s = parse_doc(&doc, path, out);
    yaml_document_delete(&doc);
    /* a second document would be silently ignored by the loop above: refuse it */
    if (!s) {
      yaml_document_t more;
      if (!yaml_parser_load(&parser, &more)) {
        s = qg_fail(QG_ERR_INPUT, "%s: malformed YAML after the first document: %s", path,
                    parser.problem ? parser.problem : "parse error");
      } else {
        if (yaml_document_get_root_node(&more))
          s = qg_fail(QG_ERR_INPUT, "%s: more than one YAML document; the options must be one mapping", path);
        yaml_document_delete(&more);
      }
    }
  }
  yaml_parser_delete(&parser);
  free(data);
  if (s) qg_train_kvs_free(out);
  return s;
}
