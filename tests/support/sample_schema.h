/* sample_schema — the sample CRM schema of conf/schema.cfg as text, for
 * tests that compile expressions and templates against it. */
#ifndef BATON_TEST_SAMPLE_SCHEMA_H
#define BATON_TEST_SAMPLE_SCHEMA_H

extern const char sample_schema_text[];

#endif
