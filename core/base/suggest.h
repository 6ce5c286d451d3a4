/* suggest — "did you mean": the candidate nearest to a misspelt name. */
#ifndef BATON_SUGGEST_H
#define BATON_SUGGEST_H

#include <stddef.h>

/* The candidate within a small edit distance of word (scaled to its
 * length), or NULL when none is close enough to be a likely typo. */
const char *suggest_nearest(const char *word, const char *const *cands, size_t n);
/* Levenshtein distance, case-sensitive. */
size_t suggest_distance(const char *a, const char *b);

#endif
