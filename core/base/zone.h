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

/* The zone of that name, loaded once and kept for the process (names
 * come from data: at most ZONE_FIND_MAX distinct ones are remembered,
 * unknown ones included); NULL when unknown. Any thread. */
#define ZONE_FIND_MAX 4096
const zone *zone_find(const char *name);
/* The wall clock of zone `name` at UTC instant t, as seconds since the
 * epoch as if local were UTC: 0 with *local set, or -1 when the zone is
 * unknown. What now()/hour()/weekday()/today() with a zone read, in
 * memory and (through the SQL function baton_tz_local) in SQL. */
int zone_local(const char *name, int64_t t, int64_t *local);
/* The first UTC instant after t at which the wall clock of z reads
 * minute_of_day (0..1439); a time the clock skips (spring forward) is
 * the instant of the jump. */
int64_t zone_next_wall(const zone *z, int64_t t, int minute_of_day);

#endif
