/* Quantization specs: an ordered list of (glob -> quantizer + options) rules over the
 * contest's state-dict names, and the plan that assigns every tensor of a checkpoint.
 *
 * Globs are shell-style with only `*` special, matching any run of characters, dots
 * included ("blocks.*.mlp.*" matches "blocks.3.mlp.fc.weight"). First match wins.
 *
 * A rule applies to every floating matrix its glob matches. Non-float, control
 * (attn_scale, mlp_scale, resid_mix, q_gain, skip_weight) and 1-D tensors stay with the
 * contest's passthrough (non-float: exact; control: fp32; other floats: fp16) unless a
 * rule names them explicitly: its pattern has no `*` in its last dot-separated component
 * ("blocks.*.attn.q_gain", "skip_weights"); "blocks.*.attn.*" or "*" do not name them.
 * Tensors no rule matches get the contest's export: float tensors of <= 65,536 elements
 * the passthrough, larger ones contest-int8. With contest_passthrough (YAML key, or
 * quantize --contest-passthrough) glob rules also leave every float tensor of <= 65,536
 * elements to the passthrough, as the contest's int8 export does.
 *
 * Inline form: rules separated by ';' or newlines, each "GLOB: METHOD [k=v ...]", e.g.
 *   "blocks.*.mlp.*: rowwise bits=5; *: rowwise bits=6"
 * YAML form (libyaml), either a mapping of rules in order
 *   blocks.*.mlp.*: rowwise bits=5
 *   "*": {quantizer: gptq, bits: 6}
 * or a mapping with `rules:` (a sequence of one-key mappings or of
 * {match: GLOB, quantizer: METHOD, <option>: <value>...}) and optionally `seed:` and
 * `contest_passthrough:`. */
#ifndef QG_QUANT_SPEC_H
#define QG_QUANT_SPEC_H

#include <stdint.h>

#include "core/tensor.h"
#include "quant/quantizer.h"

typedef struct {
  char *glob;
  char *method;
  char *options; /* as written ("bits=5 group=64") */
  qg_qconfig cfg; /* parsed and validated */
  int line;       /* 1-based line in the YAML file, or rule number for inline specs */
} qg_spec_rule;

typedef struct {
  qg_spec_rule *rules;
  int n;
  char *source; /* the YAML path, or "inline spec" */
  uint64_t seed; /* for randomised quantizers (default 0) */
  int contest_passthrough; /* glob rules also leave small float tensors (<= 65,536
                            * elements) to the contest's passthrough */
} qg_spec;

/* Named specs for the contest's common mixes, NULL-name terminated. A rule "preset: NAME"
 * (inline or YAML; no tensor is named "preset") expands to the preset's rules in its
 * place, and quantize --preset NAME is the spec of that one rule. */
typedef struct {
  const char *name, *summary;
  const char *rules;       /* inline form */
  int contest_passthrough; /* the preset also sets the spec's contest_passthrough */
} qg_spec_preset;
extern const qg_spec_preset qg_spec_presets[];
const qg_spec_preset *qg_spec_preset_find(const char *name);

void qg_spec_free(qg_spec *s);
qg_status qg_spec_parse_inline(const char *text, qg_spec *out);
qg_status qg_spec_load_yaml(const char *path, qg_spec *out);
/* The same from memory; fname names the source in messages. */
qg_status qg_spec_parse_yaml(const uint8_t *data, size_t len, const char *fname, qg_spec *out);

/* Shell-style match with `*` only (dots included). */
int qg_glob_match(const char *pat, const char *s);
/* Whether a pattern names a tensor explicitly (see above). */
int qg_spec_pattern_explicit(const char *pat);

/* How one tensor is assigned. */
typedef enum {
  QG_ASSIGN_RULE = 0,     /* by spec rule `rule` */
  QG_ASSIGN_PASSTHROUGH,  /* the contest's small/control/non-float rule */
  QG_ASSIGN_DEFAULT       /* no rule matched: contest-int8 */
} qg_assign_kind;

typedef struct {
  int index;              /* into the state */
  qg_assign_kind kind;
  int rule;               /* rule index for QG_ASSIGN_RULE, else -1 */
  const qg_qconfig *cfg;  /* the rule's config, or one of the plan's built-ins */
} qg_spec_assign;

typedef struct {
  qg_spec_assign *a; /* one per tensor of the state, in state order */
  int n;
  qg_qconfig builtin[4]; /* fp16, fp32, raw, contest-int8 (owned) */
} qg_spec_plan;

/* Assigns every tensor. Errors: a rule that ends up with no tensor (saying whether it
 * matches none or only tensors taken earlier), a quantizer that cannot take a tensor
 * (naming the tensor, the rule and why). */
qg_status qg_spec_plan_make(const qg_spec *s, const qg_state *st, qg_spec_plan *plan);
void qg_spec_plan_free(qg_spec_plan *plan);
/* Whether any rule's quantizer needs calibration Hessians. */
int qg_spec_needs_hessians(const qg_spec *s);
/* Human description of an assignment, e.g. "rule 2 (blocks.*.mlp.*)" or "contest
 * passthrough (control)". */
const char *qg_spec_assign_why(const qg_spec *s, const qg_state *st, const qg_spec_assign *a, char *buf, size_t cap);

#endif
