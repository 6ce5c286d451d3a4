/* fuzz_inputs — what one fuzzer input does to the expression and
 * template compilers (compile in several scopes, evaluate, render,
 * compile to SQL), shared by the libFuzzer targets (tests/fuzz/) and the
 * unit test that replays their crash inputs (tests/fuzz/regressions/). */
#ifndef BATON_TEST_FUZZ_INPUTS_H
#define BATON_TEST_FUZZ_INPUTS_H

#include <stddef.h>
#include <stdint.h>

void fuzz_expr_one(const uint8_t *data, size_t size);
void fuzz_template_one(const uint8_t *data, size_t size);
void fuzz_schema_one(const uint8_t *data, size_t size);
/* The structured generator for long input: data is read as triplets (two
 * fragments, how many times the pair repeats) and the text they make (free it) is given
 * to the expression and template compilers. */
char *fuzz_chain_text(const uint8_t *data, size_t size, size_t *len);
void fuzz_chain_one(const uint8_t *data, size_t size);
/* By a regression file's name prefix ("expr-", "template-", "schema-",
 * "chain-"):
 * 0, or -1 for a name no target owns. */
int fuzz_replay(const char *name, const uint8_t *data, size_t size);

#endif
