/* libFuzzer target: long chains and deep nesting, built from a short
 * input by the structured generator (see tests/support/fuzz_inputs.c):
 * an 'or' chain of 30,000 terms or 30,000 nested {{#if}} is two bytes. */
#include <stddef.h>
#include <stdint.h>

#include "support/fuzz_inputs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_chain_one(data, size);
    return 0;
}
