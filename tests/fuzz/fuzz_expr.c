/* libFuzzer target: the expr compiler (see tests/support/fuzz_inputs.c). */
#include <stddef.h>
#include <stdint.h>

#include "support/fuzz_inputs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_expr_one(data, size);
    return 0;
}
