/* SentencePiece normalization (see tok.h, step 1), written after normalizer.cc and
 * darts-clone's commonPrefixSearch, whose quirks it keeps: at most 32 trie results are
 * looked at, the normalized string is read up to its NUL, a match whose value points
 * outside the string pool counts as no match (sentencepiece >= 0.2.1 does the same). */
#include <stdlib.h>
#include <string.h>

#include "tok/tok.h"

#define TRIE_MAX_RESULTS 32 /* Normalizer::kMaxTrieResultsSize */

int qg_tok_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp) {
  if (n == 0) return 0;
  uint32_t c;
  if (s[0] < 0x80) {
    *cp = s[0];
    return 1;
  }
  /* As string_util::DecodeUTF8: the lead byte decides the length; trail bytes must be
   * 10xxxxxx; overlong forms, surrogates and > U+10FFFF are invalid. */
  if (n >= 2 && (s[0] & 0xE0) == 0xC0) {
    c = ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F);
    if ((s[1] & 0xC0) == 0x80 && c >= 0x80) {
      *cp = c;
      return 2;
    }
  } else if (n >= 3 && (s[0] & 0xF0) == 0xE0) {
    c = ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    if ((s[1] & 0xC0) == 0x80 && (s[2] & 0xC0) == 0x80 && c >= 0x800 &&
        (c < 0xD800 || c >= 0xE000)) {
      *cp = c;
      return 3;
    }
  } else if (n >= 4 && (s[0] & 0xF8) == 0xF0) {
    c = ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
        ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
    if ((s[1] & 0xC0) == 0x80 && (s[2] & 0xC0) == 0x80 && (s[3] & 0xC0) == 0x80 &&
        c >= 0x10000 && c <= 0x10FFFF) {
      *cp = c;
      return 4;
    }
  }
  return 0;
}

size_t qg_tok_utf8_encode(uint32_t c, uint8_t o[4]) {
  if (c < 0x80) {
    o[0] = (uint8_t)c;
    return 1;
  }
  if (c < 0x800) {
    o[0] = (uint8_t)(0xC0 | (c >> 6));
    o[1] = (uint8_t)(0x80 | (c & 0x3F));
    return 2;
  }
  if (c < 0x10000) {
    o[0] = (uint8_t)(0xE0 | (c >> 12));
    o[1] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
    o[2] = (uint8_t)(0x80 | (c & 0x3F));
    return 3;
  }
  o[0] = (uint8_t)(0xF0 | (c >> 18));
  o[1] = (uint8_t)(0x80 | ((c >> 12) & 0x3F));
  o[2] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
  o[3] = (uint8_t)(0x80 | (c & 0x3F));
  return 4;
}

/* ---- darts-clone units ---------------------------------------------------------------- */
static inline int unit_has_leaf(uint32_t u) { return (u >> 8) & 1; }
static inline uint32_t unit_value(uint32_t u) { return u & 0x7FFFFFFFu; }
static inline uint32_t unit_label(uint32_t u) { return u & (0x80000000u | 0xFFu); }
static inline uint32_t unit_offset(uint32_t u) { return (u >> 10) << ((u & (1u << 9)) >> 6); }

/* Longest charsmap key that prefixes s[0..n): its length (0 = none) and value. Mirrors
 * commonPrefixSearch with 32 result slots; an index past the array ends the walk, as a
 * label mismatch would (the library trusts the array; we do not). */
static size_t trie_longest(const qg_tok *t, const uint8_t *s, size_t n, uint32_t *value) {
  const uint32_t *a = t->trie;
  size_t units = t->trie_units, found = 0, best = 0;
  size_t pos = unit_offset(a[0]);
  for (size_t i = 0; i < n; i++) {
    pos ^= s[i];
    if (pos >= units) break;
    uint32_t u = a[pos];
    if (unit_label(u) != s[i]) break;
    pos ^= unit_offset(u);
    if (unit_has_leaf(u)) {
      if (found < TRIE_MAX_RESULTS && pos < units && (best == 0 || i + 1 > best)) {
        best = i + 1;
        *value = unit_value(a[pos]);
      }
      found++;
    }
  }
  return best;
}

/* NormalizePrefix: the replacement for the longest rule at s, and the bytes it consumes. */
static void normalize_prefix(const qg_tok *t, const uint8_t *s, size_t n, const uint8_t **rep,
                             size_t *rep_len, size_t *consumed) {
  if (t->n_ud) { /* user-defined pieces pass through untouched */
    size_t ud = qg_tok_user_match(t, s, n);
    if (ud) {
      *rep = s;
      *rep_len = *consumed = ud;
      return;
    }
  }
  if (t->trie && t->first_byte_has_rule[s[0]]) {
    uint32_t v = 0;
    size_t len = trie_longest(t, s, n, &v);
    if (len > 0 && v < t->norm_pool_len) {
      const char *p = t->norm_pool + v;
      *rep = (const uint8_t *)p;
      *rep_len = strnlen(p, t->norm_pool_len - v);
      *consumed = len;
      return;
    }
  }
  uint32_t cp;
  int l = qg_tok_utf8_decode(s, n, &cp);
  if (l == 0) { /* malformed: U+FFFD for one byte */
    *rep = (const uint8_t *)"\xEF\xBF\xBD";
    *rep_len = 3;
    *consumed = 1;
  } else {
    *rep = s;
    *rep_len = (size_t)l;
    *consumed = (size_t)l;
  }
}

qg_status qg_tok_normalize(const qg_tok *t, const uint8_t *in, size_t n, qg_buf *out) {
  const char *ws = t->escape_ws ? QG_TOK_SPACE : " ";
  size_t ws_len = t->escape_ws ? 3 : 1;
  const uint8_t *rep;
  size_t rl, used;
  if (t->remove_extra_ws) { /* leading spaces (after normalization) go */
    while (n > 0) {
      normalize_prefix(t, in, n, &rep, &rl, &used);
      if (!(rl == 1 && rep[0] == ' ')) break;
      in += used;
      n -= used;
    }
  }
  if (n == 0) return qg_buf_status(out);
  size_t start = out->n;
  if (!t->ws_suffix && t->add_dummy_prefix) qg_buf_append(out, ws, ws_len);
  int prev_space = t->remove_extra_ws;
  while (n > 0) {
    /* ASCII without a rule: the common case, copied as is */
    if (in[0] < 0x80 && in[0] != ' ' && !t->n_ud && !(t->trie && t->first_byte_has_rule[in[0]])) {
      size_t k = 1;
      while (k < n && in[k] < 0x80 && in[k] != ' ' && !(t->trie && t->first_byte_has_rule[in[k]]))
        k++;
      qg_buf_append(out, in, k);
      in += k;
      n -= k;
      prev_space = 0;
      continue;
    }
    normalize_prefix(t, in, n, &rep, &rl, &used);
    if (prev_space)
      while (rl > 0 && rep[0] == ' ') rep++, rl--;
    if (rl > 0) {
      for (size_t i = 0; i < rl; i++) {
        if (rep[i] == ' ') qg_buf_append(out, ws, ws_len);
        else qg_buf_byte(out, rep[i]);
      }
      prev_space = rep[rl - 1] == ' ';
    }
    in += used;
    n -= used;
    if (!t->remove_extra_ws) prev_space = 0;
  }
  if (t->remove_extra_ws) /* trailing spaces go */
    while (out->n - start >= ws_len && memcmp(out->p + out->n - ws_len, ws, ws_len) == 0)
      out->n -= ws_len;
  if (t->ws_suffix && t->add_dummy_prefix) qg_buf_append(out, ws, ws_len);
  return qg_buf_status(out);
}
