/* libFuzzer harness: the restricted pickle interpreter on raw bytes. */
#include <stddef.h>
#include <stdint.h>

#include "io/pickle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  qg_pickle p;
  if (qg_pickle_load(data, size, "fuzz.pkl", &p) == QG_OK) {
    (void)qg_py_dict_get(p.root, "quantized");
    qg_pickle_free(&p);
  }
  return 0;
}
