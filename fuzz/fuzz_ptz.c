/* libFuzzer harness: whole-file readers for torch files -- the contest .ptz (zlib or bare
 * zip) with dequantization, and .pt state dicts. Inputs are raw file bytes. */
#include <stddef.h>
#include <stdint.h>

#include "io/ptz.h"
#include "io/torchfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  qg_int8_artifact a;
  if (qg_ptz_read_mem(data, size, "fuzz.ptz", &a) == QG_OK) {
    qg_state d;
    if (qg_int8_dequantize(&a, &d) == QG_OK) qg_state_free(&d);
    qg_int8_artifact_free(&a);
  }
  qg_state s;
  if (qg_pt_load_mem(data, size, "fuzz.pt", &s) == QG_OK) qg_state_free(&s);
  return 0;
}
