/* cfgfile — the files users and the console both edit (campaign and
 * journey files, baton.cfg): read with a version (a hash of the bytes), a
 * save that is refused when the file changed since that version was read
 * (a hand edit racing the console: nothing is lost), the version it
 * replaces kept under <data_dir>/versions/<kind>/<name>/ and restorable,
 * and the one text edit the console makes to baton.cfg (a channel's
 * `enabled`), which keeps every comment and the layout. */
#ifndef BATON_CFGFILE_H
#define BATON_CFGFILE_H

#include <jansson.h>
#include <stddef.h>

#define CFGFILE_VERSION_LEN 17 /* 16 hex digits and the NUL */
/* The most a file the console reads or writes may hold. */
#define CFGFILE_MAX (4u << 20)

/* The version of these bytes: 16 hex digits. */
void cfgfile_version(const char *text, size_t n, char out[CFGFILE_VERSION_LEN]);

/* Read path whole (at most CFGFILE_MAX bytes) into *text (NUL-terminated,
 * free with free) and its version. 0, or -1 with err. */
int cfgfile_read(const char *path, char **text, size_t *n, char ver[CFGFILE_VERSION_LEN], char *err,
                 size_t errlen);

typedef struct cfgfile_saved {
    char version[CFGFILE_VERSION_LEN]; /* of the new text */
    char previous[64];                 /* id of the version kept ("" when the file was new) */
    char *current;                     /* on conflict: the file's text now (free) */
    char current_version[CFGFILE_VERSION_LEN];
} cfgfile_saved;

/* Replace path with text when its version is still base (NULL: whatever
 * it holds), keeping the bytes it replaces as a version of kind/name in
 * data_dir. Written to a temporary file beside it, fsynced, renamed.
 * Returns 0 saved, 1 conflict (out->current is the file now), -1 error. */
int cfgfile_save(const char *path, const char *data_dir, const char *kind, const char *name,
                 const char *text, size_t n, const char *base, cfgfile_saved *out, char *err,
                 size_t errlen);

/* The kept versions of kind/name, newest first:
 * {"versions": [{"id", "saved_at", "size"}]}. */
json_t *cfgfile_versions(const char *data_dir, const char *kind, const char *name);
/* The text of one kept version (id as listed). 0, or -1 with err. */
int cfgfile_version_text(const char *data_dir, const char *kind, const char *name, const char *id,
                         char **text, size_t *n, char *err, size_t errlen);

/* In the text of a main configuration, set channels.<channel>.enabled
 * (replacing the value written or adding the setting after the group's
 * '{'), touching nothing else. *out is a new string. 0, or -1 with err
 * (no such channel, a text libconfig does not parse). */
int cfgtext_set_channel_enabled(const char *text, const char *channel, int enabled, char **out,
                                char *err, size_t errlen);

/* Write text to a new file beside path that no configuration scan picks
 * up (".<base>.check-XXXXXX", same folder, so relative paths resolve the
 * same), for checking it as if it were path. *tmp is its name (free, and
 * unlink when done). 0, or -1 with err. */
int cfgfile_scratch(const char *path, const char *text, size_t n, char **tmp, char *err,
                    size_t errlen);

#endif
