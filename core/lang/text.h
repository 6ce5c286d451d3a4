/* expr/text — UTF-8 text for the language's string functions: character
 * counts and the letter case of ASCII, Latin-1 Supplement and Latin
 * Extended-A (simple one-to-one mappings, which never change a
 * character's UTF-8 length). */
#ifndef BATON_EXPR_TEXT_H
#define BATON_EXPR_TEXT_H

#include <stddef.h>
#include <stdint.h>

/* Characters in s: bytes that do not continue a UTF-8 sequence. */
size_t text_chars(const char *s, size_t len);
/* Write s in lower (upper = 0) or upper case to out (len bytes room);
 * returns the length written, always len. */
size_t text_case(const char *s, size_t len, char *out, int upper);
/* The code point's lower or upper case (itself when it has none). */
uint32_t text_case_cp(uint32_t cp, int upper);

#endif
