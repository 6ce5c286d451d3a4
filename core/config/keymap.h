/* keymap — validates a libconfig group against declared keys
 * (baton_config_key maps: the host's own keys for a kind, then the
 * plugin's) and holds the typed values, defaults applied. */
#ifndef BATON_KEYMAP_H
#define BATON_KEYMAP_H

#include <jansson.h>
#include <libconfig.h>
#include <stddef.h>
#include <stdint.h>

#include <baton/baton.h>

#include "base/diag.h"

typedef struct keymap_value {
    const baton_config_key *key;
    int present; /* set in the file, not from the default */
    char *s;     /* STRING, ENUM, PATH (resolved), TEMPLATE, and DURATION text */
    int64_t i;   /* INT, BOOL, DURATION (ms) */
    double f;    /* FLOAT (and INT) */
    char **list; /* LIST */
    size_t nlist;
    int line; /* where it was set, or the group's line */
} keymap_value;

typedef struct keymap_values {
    keymap_value *v;
    size_t n;
} keymap_values;

/* Validate group (named `where`, e.g. "channels.email") against the maps,
 * in order, skipping the keys listed in `ignore` (NULL-terminated, may be
 * NULL). Relative PATH values resolve against `dir` (or the directory of
 * the file that holds the setting, when the setting knows it). Every
 * problem goes to d; returns the number of errors added. `out` holds
 * every declared key, set or defaulted, even when errors were found. */
size_t keymap_validate(const config_setting_t *group, const char *where,
                       const baton_config_key *const *maps, size_t nmaps, const char *const *ignore,
                       const char *dir, keymap_values *out, diag *d);
void keymap_values_free(keymap_values *vals);
const keymap_value *keymap_get(const keymap_values *vals, const char *key);

/* Parse a default or a value written as text, by the key's type. */
int keymap_parse_text(const baton_config_key *k, const char *text, keymap_value *out);
const char *keymap_type_name(baton_cfg_type t);
/* The keys as `plugins --describe` prints them, as JSON: [{"name", "type",
 * "required", "default"?, "min"?, "max"?, "choices"?, "help"?}]. */
json_t *keymap_describe_json(const baton_config_key *keys);
/* A value as an error message may show it: quoted when it has at most
 * KEYMAP_SHOWN_MAX characters, else only its length (a secret put under
 * the wrong key is never echoed). Writes into out; returns out. */
#define KEYMAP_SHOWN_MAX 8
const char *keymap_shown(const char *value, char *out, size_t outlen);

/* Resolve a relative path against dir (absolute paths are kept).
 * Returns a new string. */
char *path_resolve(const char *dir, const char *path);
/* The directory of a file path, as a new string ("." when none). */
char *path_dirname(const char *path);

#endif
