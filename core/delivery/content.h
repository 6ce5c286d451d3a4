/* content — a message as the delivery log keeps it until it is final
 * (column `content`): {"parts":[[name,value],...],"row":{name:value,...}},
 * compact JSON. Dates, timestamps and durations are {"date":N}, {"ts":N},
 * {"dur":N}. What JSON cannot carry is left out as jansson would leave it:
 * a part whose name or value is not UTF-8 is dropped, so is a row field
 * whose name is not; a string that is not, or a float that is not finite,
 * is null. Internal to core/dispatch. */
#ifndef BATON_DISPATCH_CONTENT_H
#define BATON_DISPATCH_CONTENT_H

#include <stddef.h>

#include "base/record.h"

/* The JSON text (malloc'd). Written straight into one buffer: the message
 * goes through here once for every message a journey sends. */
char *content_json(size_t nparts, char *const *names, char *const *values, const record *row);

/* Parse text back: *names and *values (nparts + 1 entries, each
 * malloc'd) and *row (NULL when there is none). 0, or -1 when text is not
 * such a message (nothing allocated). */
int content_parse(const char *text, size_t *nparts, char ***names, char ***values, record **row);

#endif
