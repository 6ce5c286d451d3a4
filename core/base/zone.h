/* zone — UTC offsets of an IANA time zone ("Europe/Paris"), read from the
 * system's TZif files without touching the C library's TZ state (which
 * is process-wide and not thread-safe to switch). Quiet hours need it. */
#ifndef BATON_DISPATCH_ZONE_H
#define BATON_DISPATCH_ZONE_H

#include <stddef.h>
#include <stdint.h>

typedef struct zone zone;

/* "UTC", "Etc/UTC" or a name under /usr/share/zoneinfo ($TZDIR). NULL with
 * err filled when unknown or malformed. */
zone *zone_load(const char *name, char *err, size_t errlen);
void zone_free(zone *z);
/* Seconds east of UTC in force at UTC instant t. */
int32_t zone_offset(const zone *z, int64_t t);
/* The UTC instant of a local wall-clock time (seconds since the epoch as
 * if local were UTC); in a gap or overlap, the earlier reading wins. */
int64_t zone_to_utc(const zone *z, int64_t local);

#endif
