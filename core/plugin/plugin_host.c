#include "plugin/plugin_host.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/record.h"
#include "base/suggest.h"

/* Under AddressSanitizer a plugin is never unloaded: LeakSanitizer then
 * names its frames, and the libraries it pulled in (libpq, OpenSSL) keep
 * their process-wide allocations reachable instead of reported as lost
 * at dlclose. A release build unloads, so a reload can take a new build. */
#if defined(__SANITIZE_ADDRESS__)
#define DLOPEN_KEEP RTLD_NODELETE
#else
#define DLOPEN_KEEP 0
#endif

/* ------------------------------------------------------------------ */
/* Finding and loading                                                 */
/* ------------------------------------------------------------------ */

void plugin_default_path(char ***dirs, size_t *n)
{
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    *dirs = NULL;
    *n = 0;
    if (len <= 0)
        return;
    exe[len] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash)
        return;
    *slash = '\0';
    *dirs = xcalloc(3, sizeof **dirs);
    (*dirs)[(*n)++] = xasprintf("%s/plugins", exe);
    (*dirs)[(*n)++] = xasprintf("%s/../lib/baton/plugins", exe);
}

int plugin_abi_check(unsigned major, unsigned minor, char *err, size_t errlen)
{
    if (major != BATON_ABI_MAJOR) {
        snprintf(err, errlen,
                 "built for baton ABI %u.%u, but this host speaks ABI %d.%d; rebuild it against "
                 "baton-sdk %d.x",
                 major, minor, BATON_ABI_MAJOR, BATON_ABI_MINOR, BATON_ABI_MAJOR);
        return -1;
    }
    if (minor > BATON_ABI_MINOR) {
        snprintf(err, errlen,
                 "built for baton ABI %u.%u, newer than this host's ABI %d.%d; upgrade baton or "
                 "rebuild the plugin against baton-sdk %d.%d",
                 major, minor, BATON_ABI_MAJOR, BATON_ABI_MINOR, BATON_ABI_MAJOR, BATON_ABI_MINOR);
        return -1;
    }
    return 0;
}

static const char *kind_name(baton_kind k)
{
    return conf_kind_name(k);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The smallest ops struct a 1.x plugin of each kind may declare: up to
 * its last mandatory member. */
static size_t min_ops_size(baton_kind k)
{
    switch (k) {
    case BATON_KIND_CHANNEL: return offsetof(baton_channel_ops, batch_end);
    case BATON_KIND_ACTION: return offsetof(baton_action_ops, reserved);
    case BATON_KIND_SOURCE: return offsetof(baton_source_ops, columns);
    case BATON_KIND_EVENT: return sizeof(uint32_t);
    default: return 0;
    }
}

static size_t ops_capacity(baton_kind k)
{
    switch (k) {
    case BATON_KIND_CHANNEL: return sizeof(baton_channel_ops);
    case BATON_KIND_ACTION: return sizeof(baton_action_ops);
    case BATON_KIND_SOURCE: return sizeof(baton_source_ops);
    case BATON_KIND_EVENT: return sizeof(baton_event_ops);
    default: return 0;
    }
}

/* Copy the plugin's ops and activity types into p, each zero-padded to
 * the host's size; NULL, or what is wrong. */
static const char *copy_kind_structs(plugin *p, const baton_plugin *d, char *why, size_t whylen)
{
    if (p->desc.kind == BATON_KIND_ACTIVITY) {
        const baton_activity_type *t = d->activities;
        if (!t)
            return NULL;
        uint32_t step = t->size;
        if (step < offsetof(baton_activity_type, reserved)) {
            snprintf(why, whylen,
                     "activity types declare a size of %u bytes, too small for ABI 1.x",
                     (unsigned)step);
            return why;
        }
        size_t n = 0;
        for (const char *at = (const char *)t; ((const baton_activity_type *)at)->name; at += step)
            n++;
        p->types = xcalloc(n + 1, sizeof *p->types);
        for (size_t i = 0; i < n; i++) {
            const char *src = (const char *)t + i * step;
            memcpy(&p->types[i], src, step < sizeof *p->types ? step : sizeof *p->types);
        }
        p->desc.activities = p->types;
        return NULL;
    }
    const uint32_t *ops = d->ops;
    if (!ops)
        return NULL; /* missing_callback() names it */
    if (*ops < min_ops_size(p->desc.kind)) {
        snprintf(why, whylen,
                 "%s ops declare a size of %u bytes, too small for ABI 1.x (at least %zu)",
                 conf_kind_name(p->desc.kind), (unsigned)*ops, min_ops_size(p->desc.kind));
        return why;
    }
    size_t cap = ops_capacity(p->desc.kind);
    memcpy(&p->ops, ops, *ops < cap ? *ops : cap);
    p->desc.ops = &p->ops;
    return NULL;
}

/* A plugin author's mistakes in its key map are refused at load, naming
 * the plugin, rather than surfacing as errors in the user's file. */
static const char *check_keys(const baton_config_key *keys, baton_kind kind, const char *owner,
                              char *why, size_t whylen)
{
    for (const baton_config_key *k = keys; k && k->name; k++) {
        if (k->type < BATON_CFG_STRING || k->type > BATON_CFG_TEMPLATE) {
            snprintf(why, whylen, "%sconfig key '%s' has an unknown type %d", owner, k->name,
                     (int)k->type);
            return why;
        }
        if (k->type == BATON_CFG_ENUM && (!k->choices || !k->choices[0])) {
            snprintf(why, whylen, "%sconfig key '%s' is an enum with no choices", owner, k->name);
            return why;
        }
        for (const baton_config_key *o = keys; o != k; o++)
            if (strcmp(o->name, k->name) == 0) {
                snprintf(why, whylen, "%sconfig key '%s' is declared twice", owner, k->name);
                return why;
            }
        if (kind != BATON_KIND_ACTIVITY)
            for (const baton_config_key *h = plugin_host_keys(kind); h->name; h++)
                if (strcmp(h->name, k->name) == 0 && h->type != k->type) {
                    snprintf(why, whylen,
                             "%sconfig key '%s' is declared as %s, but baton reads it as %s for "
                             "every %s",
                             owner, k->name, keymap_type_name(k->type), keymap_type_name(h->type),
                             conf_kind_name(kind));
                    return why;
                }
        if (k->default_value) {
            keymap_value v = {0};
            int bad = keymap_parse_text(k, k->default_value, &v);
            free(v.s);
            for (size_t i = 0; i < v.nlist; i++)
                free(v.list[i]);
            free(v.list);
            if (bad) {
                snprintf(why, whylen, "%sconfig key '%s' has a default (\"%s\") that is not a %s",
                         owner, k->name, k->default_value, keymap_type_name(k->type));
                return why;
            }
        }
    }
    return NULL;
}

/* The callbacks every plugin of a kind must have. */
static const char *missing_callback(const baton_plugin *d)
{
    if (!d->init)
        return "init";
    if (!d->destroy)
        return "destroy";
    switch (d->kind) {
    case BATON_KIND_CHANNEL: {
        const baton_channel_ops *o = d->ops;
        if (!o)
            return "ops (baton_channel_ops)";
        if (!o->format)
            return "ops.format";
        if (!o->deliver)
            return "ops.deliver";
        break;
    }
    case BATON_KIND_ACTION: {
        const baton_action_ops *o = d->ops;
        if (!o)
            return "ops (baton_action_ops)";
        if (!o->invoke)
            return "ops.invoke";
        break;
    }
    case BATON_KIND_SOURCE: {
        const baton_source_ops *o = d->ops;
        if (!o)
            return "ops (baton_source_ops)";
        if (!o->exec && !o->lookup)
            return "ops.exec or ops.lookup";
        break;
    }
    case BATON_KIND_EVENT:
        if (!d->start)
            return "start";
        if (!d->stop)
            return "stop";
        break;
    case BATON_KIND_ACTIVITY:
        if (!d->activities || !d->activities[0].name)
            return "activities";
        for (const baton_activity_type *t = d->activities; t->name; t++)
            if (!t->run)
                return "activities[].run";
        break;
    }
    return NULL;
}

/* The folder part of path ("." when it has none), in out. */
static void dir_of(const char *path, char *out, size_t outlen)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(out, outlen, ".");
    else if (slash == path)
        snprintf(out, outlen, "/");
    else
        snprintf(out, outlen, "%.*s", (int)(slash - path), path);
}

static int world_writable(const char *path, const char *what, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(err, errlen, "%s: cannot check the %s: %s", path, what, strerror(errno));
        return 1;
    }
    if (!(st.st_mode & S_IWOTH))
        return 0;
    snprintf(err, errlen,
             "%s: the %s is world-writable (mode %04o): anyone on this machine could put their"
             " own code in baton; refusing to load it (chmod o-w)",
             path, what, (unsigned)(st.st_mode & 07777));
    return 1;
}

/* Loading a plugin runs its code as baton: refuse a file anyone could
 * have replaced (world-writable, or in a world-writable folder) and a
 * symlink that leads out of the plugin path (a link to a library in its
 * own folder, libx.so -> libx.so.1, is fine). */
int plugin_file_safe(const plugin_registry *reg, const char *path, char *err, size_t errlen)
{
    char real[PATH_MAX], dir[PATH_MAX];
    struct stat lst;
    if (lstat(path, &lst) != 0 || !realpath(path, real)) {
        snprintf(err, errlen, "%s: cannot open plugin: %s", path, strerror(errno));
        return -1;
    }
    if (S_ISLNK(lst.st_mode)) {
        char linkdir[PATH_MAX], realdir[PATH_MAX], target[PATH_MAX];
        dir_of(path, linkdir, sizeof linkdir);
        dir_of(real, target, sizeof target);
        int inside = realpath(linkdir, realdir) && strcmp(realdir, target) == 0;
        for (size_t i = 0; !inside && i < reg->npath; i++)
            inside = realpath(reg->path[i], realdir) && strcmp(realdir, target) == 0;
        if (!inside) {
            snprintf(err, errlen,
                     "%s: a symlink to %s, which is not in the plugin path; refusing to load it"
                     " (put the file itself in a plugin_path folder)",
                     path, real);
            return -1;
        }
    }
    dir_of(real, dir, sizeof dir);
    if (world_writable(real, "plugin file", err, errlen) ||
        world_writable(dir, "plugin's folder", err, errlen))
        return -1;
    if (strcmp(real, path) != 0) { /* the folder it was found in, too */
        dir_of(path, dir, sizeof dir);
        if (world_writable(dir, "plugin's folder", err, errlen))
            return -1;
    }
    return 0;
}

static int resolve(const plugin_registry *reg, const char *name, char *path, size_t pathlen,
                   char *err, size_t errlen)
{
    struct stat st;
    if (strchr(name, '/')) {
        snprintf(path, pathlen, "%s", name);
        if (stat(path, &st) != 0) {
            snprintf(err, errlen, "%s: cannot open plugin: %s", path, strerror(errno));
            return -1;
        }
        goto found;
    }
    for (size_t i = 0; i < reg->npath; i++) {
        snprintf(path, pathlen, "%s/%s.so", reg->path[i], name);
        if (stat(path, &st) == 0)
            goto found;
    }
    /* not found: say where we looked, and suggest a near name */
    buf where;
    buf_init(&where);
    const char *cands[128];
    char *owned[128];
    size_t nc = 0;
    for (size_t i = 0; i < reg->npath; i++) {
        buf_addf(&where, "%s%s", i ? ", " : "", reg->path[i]);
        DIR *dir = opendir(reg->path[i]);
        struct dirent *e;
        while (dir && (e = readdir(dir)) && nc < 128) {
            size_t l = strlen(e->d_name);
            if (l > 3 && strcmp(e->d_name + l - 3, ".so") == 0) {
                owned[nc] = xstrndup(e->d_name, l - 3);
                cands[nc] = owned[nc];
                nc++;
            }
        }
        if (dir)
            closedir(dir);
    }
    const char *near = suggest_nearest(name, cands, nc);
    snprintf(err, errlen, "plugin '%s' not found (looked for %s.so in: %s)%s%s%s", name, name,
             where.data ? where.data : "no folder", near ? "; did you mean '" : "",
             near ? near : "", near ? "'?" : "");
    for (size_t i = 0; i < nc; i++)
        free(owned[i]);
    buf_free(&where);
    return -1;
found:
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file; refusing to load it", path);
        return -1;
    }
    return plugin_file_safe(reg, path, err, errlen);
}

static char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *b = slash ? slash + 1 : path;
    size_t l = strlen(b);
    if (l > 3 && strcmp(b + l - 3, ".so") == 0)
        l -= 3;
    return xstrndup(b, l);
}

plugin *plugin_load(plugin_registry *reg, const char *name, char *err, size_t errlen)
{
    char *want = base_name(name);
    for (plugin *p = reg->head; p; p = p->next)
        if (strcmp(p->name, want) == 0 && (!strchr(name, '/') || strcmp(p->path, name) == 0)) {
            free(want);
            return p;
        }
    char path[PATH_MAX];
    if (resolve(reg, name, path, sizeof path, err, errlen)) {
        free(want);
        return NULL;
    }
    void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL | DLOPEN_KEEP);
    if (!dl) {
        snprintf(err, errlen, "%s: cannot load: %s", path, dlerror());
        free(want);
        return NULL;
    }
    baton_plugin_entry_fn entry;
    *(void **)&entry = dlsym(dl, BATON_ENTRY_SYMBOL);
    const baton_plugin *d = entry ? entry() : NULL;
    char why[400];
    if (!entry) {
        snprintf(err, errlen, "%s: not a baton plugin (no %s symbol)", path, BATON_ENTRY_SYMBOL);
        goto fail;
    }
    if (!d) {
        snprintf(err, errlen, "%s: %s() returned no descriptor", path, BATON_ENTRY_SYMBOL);
        goto fail;
    }
    /* size first: the ABI members sit right after it in every version */
    if (d->size < offsetof(baton_plugin, ops)) {
        snprintf(err, errlen, "%s: descriptor of %u bytes is too small to be a baton plugin", path,
                 (unsigned)d->size);
        goto fail;
    }
    if (plugin_abi_check(d->abi_major, d->abi_minor, why, sizeof why)) {
        snprintf(err, errlen, "%s: %s", path, why);
        goto fail;
    }
    plugin *p = xcalloc(1, sizeof *p);
    memcpy(&p->desc, d, d->size < sizeof p->desc ? d->size : sizeof p->desc);
    p->desc.size = (uint32_t)sizeof p->desc;
    if (!p->desc.name || !p->desc.version) {
        snprintf(err, errlen, "%s: descriptor has no %s", path, p->desc.name ? "version" : "name");
        free(p);
        goto fail;
    }
    if (p->desc.kind < BATON_KIND_ACTIVITY || p->desc.kind > BATON_KIND_EVENT) {
        snprintf(err, errlen, "%s: unknown plugin kind %d", path, (int)p->desc.kind);
        free(p);
        goto fail;
    }
    const char *bad = copy_kind_structs(p, d, why, sizeof why);
    if (bad) {
        snprintf(err, errlen, "%s: %s", path, bad);
        free(p->types);
        free(p);
        goto fail;
    }
    const char *miss = missing_callback(&p->desc);
    if (miss) {
        snprintf(err, errlen, "%s: missing callback '%s', required of %s plugins", path, miss,
                 kind_name(p->desc.kind));
        free(p->types);
        free(p);
        goto fail;
    }
    bad = check_keys(p->desc.config, p->desc.kind, "", why, sizeof why);
    for (const baton_activity_type *t = p->desc.activities; !bad && t && t->name; t++) {
        char owner[160];
        snprintf(owner, sizeof owner, "activity type %s: ", t->name);
        bad = check_keys(t->keys, BATON_KIND_ACTIVITY, owner, why, sizeof why);
    }
    if (bad) {
        snprintf(err, errlen, "%s: %s", path, bad);
        free(p->types);
        free(p);
        goto fail;
    }
    p->name = want;
    p->path = xstrdup(path);
    p->dl = dl;
    p->next = reg->head;
    reg->head = p;
    return p;
fail:
    dlclose(dl);
    free(want);
    return NULL;
}

void plugin_registry_free(plugin_registry *reg)
{
    plugin **pp = &reg->head;
    while (*pp) {
        plugin *p = *pp;
        if (p->running || p->live) {
            /* Redis learned it: code still running in a plugin must keep
             * its text mapped. Leak the handle rather than crash. */
            log_warn("not unloading %s: %zu instance(s) still alive", p->path, p->live);
            pp = &p->next;
            continue;
        }
        *pp = p->next;
        dlclose(p->dl);
        free(p->types);
        free(p->name);
        free(p->path);
        free(p);
    }
}

void plugin_registry_scan(const plugin_registry *reg,
                          void (*fn)(void *ud, const char *name, const char *path), void *ud)
{
    char **seen = NULL;
    size_t nseen = 0;
    for (size_t i = 0; i < reg->npath; i++) {
        DIR *dir = opendir(reg->path[i]);
        if (!dir)
            continue;
        struct dirent *e;
        char **names = NULL;
        size_t nn = 0;
        while ((e = readdir(dir))) {
            size_t l = strlen(e->d_name);
            if (l <= 3 || strcmp(e->d_name + l - 3, ".so") != 0)
                continue;
            names = xrealloc(names, (nn + 1) * sizeof *names);
            names[nn++] = xstrndup(e->d_name, l - 3);
        }
        closedir(dir);
        if (nn)
            qsort(names, nn, sizeof *names, cmp_str);
        for (size_t j = 0; j < nn; j++) {
            int dup = 0;
            for (size_t k = 0; k < nseen; k++)
                dup |= strcmp(seen[k], names[j]) == 0;
            if (dup) {
                free(names[j]);
                continue;
            }
            char *path = xasprintf("%s/%s.so", reg->path[i], names[j]);
            fn(ud, names[j], path);
            free(path);
            seen = xrealloc(seen, (nseen + 1) * sizeof *seen);
            seen[nseen++] = names[j];
        }
        free(names);
    }
    for (size_t k = 0; k < nseen; k++)
        free(seen[k]);
    free(seen);
}

/* ------------------------------------------------------------------ */
/* Host-owned keys                                                     */
/* ------------------------------------------------------------------ */

static const baton_config_key plugin_key[] = {{.name = "plugin",
                                               .type = BATON_CFG_STRING,
                                               .required = 1,
                                               .help = "the plugin that runs this entry"},
                                              {0}};
static const baton_config_key source_keys[] = {
    {.name = "plugin",
     .type = BATON_CFG_STRING,
     .required = 1,
     .help = "the plugin that runs this entry"},
    {.name = "schema",
     .type = BATON_CFG_PATH,
     .help = "the schema file describing its entities (docs/schema.md); campaigns and the "
             "profiles source need one"},
    {.name = "writable",
     .type = BATON_CFG_BOOL,
     .default_value = "false",
     .help = "true: journeys' update_profile nodes may write the profiles in this source"},
    {0}};
static const baton_config_key channel_keys[] = {
    {.name = "plugin",
     .type = BATON_CFG_STRING,
     .required = 1,
     .help = "the plugin that runs this entry"},
    {.name = "enabled",
     .type = BATON_CFG_BOOL,
     .default_value = "true",
     .help = "false: loaded by no one; sends on it are refused or skipped"},
    {.name = "rate",
     .type = BATON_CFG_FLOAT,
     .default_value = "0",
     .has_range = 1,
     .min = 0,
     .max = 1e7,
     .help = "messages per second at most (0: no limit)"},
    {.name = "connections",
     .type = BATON_CFG_INT,
     .default_value = "1",
     .has_range = 1,
     .min = 1,
     .max = 256,
     .help = "delivery workers, each with its own connection"},
    {.name = "batch",
     .type = BATON_CFG_INT,
     .default_value = "100",
     .has_range = 1,
     .min = 1,
     .max = 10000,
     .help = "messages handed to one deliver() call at most"},
    {.name = "retries",
     .type = BATON_CFG_INT,
     .default_value = "10000",
     .has_range = 1,
     .min = 0,
     .max = 1000000,
     .help = "attempts after the first at most, for transient failures (the default leaves it "
             "to retry_for)"},
    {.name = "retry_backoff",
     .type = BATON_CFG_DURATION,
     .default_value = "1s",
     .help = "first retry delay; doubles each attempt, with jitter, up to max_backoff"},
    {.name = "retry_for",
     .type = BATON_CFG_DURATION,
     .default_value = "4h",
     .has_range = 1,
     .min = 0,
     .max = 5 * 86400,
     .help = "how long a message is retried after transient failures, from its first attempt "
             "(0: retries alone decides); then it fails with the provider's last words"},
    {.name = "max_backoff",
     .type = BATON_CFG_DURATION,
     .default_value = "15m",
     .has_range = 1,
     .min = 0.001,
     .max = 86400,
     .help = "the longest wait between two attempts of a message"},
    {.name = "queue",
     .type = BATON_CFG_INT,
     .default_value = "10000",
     .has_range = 1,
     .min = 1,
     .max = 10000000,
     .help = "messages waiting for a worker at most (backpressure)"},
    {.name = "resend_uncertain",
     .type = BATON_CFG_BOOL,
     .default_value = "false",
     .help = "true: a message that may have gone out unconfirmed (baton died delivering it, "
             "or the server never answered its final dot) is sent again with the same "
             "idempotency key (the provider must drop repeats); false: it is logged 'uncertain' "
             "and never sent twice"},
    {.name = "address",
     .type = BATON_CFG_STRING,
     .help = "the profiles field holding the recipient's address"},
    {.name = "consent",
     .type = BATON_CFG_STRING,
     .help = "the boolean profiles field that must be true for a message to go out"},
    {0}};
static const baton_config_key action_keys[] = {
    {.name = "plugin",
     .type = BATON_CFG_STRING,
     .required = 1,
     .help = "the plugin that runs this entry"},
    {.name = "timeout",
     .type = BATON_CFG_DURATION,
     .default_value = "10s",
     .help = "one call's time limit"},
    {.name = "retries",
     .type = BATON_CFG_INT,
     .default_value = "3",
     .has_range = 1,
     .min = 0,
     .max = 100,
     .help = "attempts after the first, for transient failures"},
    {.name = "rate",
     .type = BATON_CFG_FLOAT,
     .default_value = "0",
     .has_range = 1,
     .min = 0,
     .max = 1e7,
     .help = "calls per second at most (0: no limit)"},
    {0}};

const baton_config_key *plugin_host_keys(baton_kind kind)
{
    switch (kind) {
    case BATON_KIND_CHANNEL: return channel_keys;
    case BATON_KIND_ACTION: return action_keys;
    case BATON_KIND_SOURCE: return source_keys;
    default: return plugin_key;
    }
}

/* Where each host key lands in the instance's settings struct (the
 * type comes from the key's declaration above). */
typedef struct host_bind {
    const char *key;
    size_t offset;
} host_bind;
#define CH(f) offsetof(channel_settings, f)
static const host_bind channel_binds[] = {{"rate", CH(rate)},
                                          {"connections", CH(connections)},
                                          {"batch", CH(batch)},
                                          {"retries", CH(retries)},
                                          {"retry_backoff", CH(retry_backoff_ms)},
                                          {"retry_for", CH(retry_for_ms)},
                                          {"max_backoff", CH(max_backoff_ms)},
                                          {"queue", CH(queue)},
                                          {"resend_uncertain", CH(resend_uncertain)},
                                          {"address", CH(address)},
                                          {"consent", CH(consent)},
                                          {NULL, 0}};
#undef CH
static const host_bind action_binds[] = {{"timeout", offsetof(action_settings, timeout_ms)},
                                         {"retries", offsetof(action_settings, retries)},
                                         {"rate", offsetof(action_settings, rate)},
                                         {NULL, 0}};
static const host_bind source_binds[] = {{"schema", offsetof(source_settings, schema)},
                                         {"writable", offsetof(source_settings, writable)},
                                         {NULL, 0}};

static void bind_host_keys(instance *inst)
{
    const host_bind *b = inst->kind == BATON_KIND_CHANNEL  ? channel_binds
                         : inst->kind == BATON_KIND_ACTION ? action_binds
                         : inst->kind == BATON_KIND_SOURCE ? source_binds
                                                           : NULL;
    char *base = (char *)&inst->host;
    for (; b && b->key; b++) {
        const keymap_value *v = keymap_get(&inst->values, b->key);
        void *at = base + b->offset;
        if (!v)
            continue;
        switch (v->key->type) {
        case BATON_CFG_INT:
        case BATON_CFG_BOOL: *(int *)at = (int)v->i; break;
        case BATON_CFG_DURATION: *(int64_t *)at = v->i; break;
        case BATON_CFG_FLOAT: *(double *)at = v->f; break;
        default: *(const char **)at = v->s && *v->s ? v->s : NULL; break;
        }
    }
}

/* ------------------------------------------------------------------ */
/* Instances and their lifecycle                                       */
/* ------------------------------------------------------------------ */

static const baton_config_key tracking_keys[] = {
    {.name = "opens",
     .type = BATON_CFG_BOOL,
     .default_value = "false",
     .help = "an open pixel at the end of the html part"},
    {.name = "clicks",
     .type = BATON_CFG_BOOL,
     .default_value = "false",
     .help = "the html part's http(s) links go through signed redirects"},
    {0}};

/* A channel's `tracking = { opens = true; clicks = true; }` (a group,
 * which the key maps do not take). 0, or -1 with errors in d. */
static int read_tracking(instance *inst, const conf_use *use, const char *dir, diag *d)
{
    const config_setting_t *g =
        use->group ? config_setting_get_member(use->group, "tracking") : NULL;
    if (!g)
        return 0;
    char where[256];
    snprintf(where, sizeof where, "%s.tracking", use->where);
    if (!config_setting_is_group(g)) {
        diag_error(d, config_setting_source_file(g), (int)config_setting_source_line(g),
                   "%s must be a group: tracking = { opens = true; clicks = true; }", where);
        return -1;
    }
    const baton_config_key *maps[] = {tracking_keys};
    keymap_values vals = {0};
    size_t errs = keymap_validate(g, where, maps, 1, NULL, dir, &vals, d);
    if (!errs) {
        inst->host.channel.track_opens = (int)keymap_get(&vals, "opens")->i;
        inst->host.channel.track_clicks = (int)keymap_get(&vals, "clicks")->i;
    }
    keymap_values_free(&vals);
    return errs ? -1 : 0;
}

instance *instance_create(plugin *p, const conf_use *use, const char *dir, diag *d)
{
    if (p->desc.kind != use->kind) {
        const char *k = kind_name(p->desc.kind), *want = kind_name(use->kind);
        diag_error(d, use->file, use->line,
                   "%s: plugin '%s' is %s %s plugin; %s needs %s %s plugin", use->where, p->name,
                   strchr("aeiou", k[0]) ? "an" : "a", k, use->section,
                   strchr("aeiou", want[0]) ? "an" : "a", want);
        return NULL;
    }
    instance *inst = xcalloc(1, sizeof *inst);
    inst->name = xstrdup(use->name);
    inst->where = xstrdup(use->where);
    inst->who = xasprintf("%s %s", kind_name(use->kind), use->name);
    inst->kind = use->kind;
    inst->plugin = p;
    inst->file = use->file ? xstrdup(use->file) : NULL;
    pthread_mutex_init(&inst->counters_lock, NULL);
    inst->line = use->line;
    const baton_config_key *maps[] = {plugin_host_keys(use->kind), p->desc.config};
    /* `enabled` was read (and its type checked) with the configuration;
     * `tracking` is a group, read below */
    static const char *const read_already[] = {"enabled", "tracking", NULL};
    if (keymap_validate(use->group, use->where, maps, 2,
                        use->kind == BATON_KIND_CHANNEL ? read_already : NULL, dir, &inst->values,
                        d) ||
        (use->kind == BATON_KIND_CHANNEL && read_tracking(inst, use, dir, d) != 0)) {
        instance_destroy(inst);
        return NULL;
    }
    bind_host_keys(inst);
    return inst;
}

/* The host table is assembled above this layer (core/hostapi), which
 * hands it down once at start-up. */
static const baton_host *g_host;
void plugin_host_use(const baton_host *table)
{
    g_host = table;
}

int instance_init(instance *inst)
{
    if (inst->phase != INSTANCE_NEW)
        return inst->phase == INSTANCE_STOPPED ? -1 : 0;
    inst->error[0] = '\0';
    void *state = NULL;
    if (!g_host) {
        snprintf(inst->error, sizeof inst->error, "no host table installed (plugin_host_use)");
        return -1;
    }
    if (inst->plugin->desc.init(inst, g_host, &state) != 0) {
        if (!inst->error[0])
            snprintf(inst->error, sizeof inst->error, "init failed (the plugin gave no reason)");
        return -1;
    }
    inst->state = state;
    inst->phase = INSTANCE_READY;
    inst->plugin->live++;
    return 0;
}

int instance_start(instance *inst)
{
    if (inst->phase != INSTANCE_READY)
        return inst->phase == INSTANCE_RUNNING ? 0 : -1;
    if (inst->plugin->desc.start && inst->plugin->desc.start(inst->state) != 0) {
        if (!inst->error[0])
            snprintf(inst->error, sizeof inst->error, "start failed (the plugin gave no reason)");
        return -1;
    }
    inst->phase = INSTANCE_RUNNING;
    inst->plugin->running++;
    return 0;
}

void instance_stop(instance *inst)
{
    if (inst->phase != INSTANCE_RUNNING)
        return;
    if (inst->plugin->desc.stop)
        inst->plugin->desc.stop(inst->state);
    inst->phase = INSTANCE_STOPPED;
    inst->plugin->running--;
}

void instance_destroy(instance *inst)
{
    if (!inst)
        return;
    instance_stop(inst);
    if (inst->phase == INSTANCE_READY || inst->phase == INSTANCE_STOPPED) {
        inst->plugin->desc.destroy(inst->state);
        inst->plugin->live--;
    }
    keymap_values_free(&inst->values);
    for (size_t i = 0; i < inst->ncounters; i++) {
        free(inst->counters[i]->name);
        free(inst->counters[i]);
    }
    pthread_mutex_destroy(&inst->counters_lock);
    free(inst->file);
    free(inst->name);
    free(inst->where);
    free(inst->who);
    free(inst);
}

const baton_channel_ops *instance_channel(const instance *inst)
{
    return inst->kind == BATON_KIND_CHANNEL ? inst->plugin->desc.ops : NULL;
}
const baton_action_ops *instance_action(const instance *inst)
{
    return inst->kind == BATON_KIND_ACTION ? inst->plugin->desc.ops : NULL;
}
typedef struct probe_ctx {
    instance *inst;
    diag *d;
    FILE *out;
} probe_ctx;

static void probe_note(void *ud, baton_log_level level, const char *text)
{
    probe_ctx *c = ud;
    if (level <= BATON_LOG_WARN)
        diag_warn(c->d, c->inst->file, c->inst->line, "%s: %s", c->inst->where, text);
    else
        fprintf(c->out, "%s: %s\n", c->inst->where, text);
}

void instance_probe(instance *inst, diag *d, FILE *out)
{
    /* the host's copy of the ops is zero-padded: a plugin built before
     * 1.5 has no probe */
    const baton_event_ops *o = &inst->plugin->ops.event;
    if (inst->kind != BATON_KIND_EVENT || inst->phase != INSTANCE_READY ||
        o->size <= offsetof(baton_event_ops, probe) || !o->probe)
        return;
    probe_ctx c = {inst, d, out};
    o->probe(inst->state, probe_note, &c);
}

const baton_source_ops *instance_source(const instance *inst)
{
    return inst->kind == BATON_KIND_SOURCE ? inst->plugin->desc.ops : NULL;
}

static pthread_rwlock_t g_sink_lock = PTHREAD_RWLOCK_INITIALIZER;
static event_sink_fn g_sink;
static void (*g_flush)(void *ud);
static void *g_sink_ud;

void plugin_host_set_event_sink(event_sink_fn fn, void (*flush)(void *ud), void *ud)
{
    pthread_rwlock_wrlock(&g_sink_lock);
    g_sink = fn;
    g_flush = flush;
    g_sink_ud = ud;
    pthread_rwlock_unlock(&g_sink_lock);
}

void plugin_event_flush(baton_instance *inst)
{
    pthread_rwlock_rdlock(&g_sink_lock);
    if (g_sink && g_flush)
        g_flush(g_sink_ud);
    pthread_rwlock_unlock(&g_sink_lock);
}

int plugin_event_submit(baton_instance *inst, const char *json, size_t len, void (*ack)(void *),
                        void *ack_ctx)
{
    pthread_rwlock_rdlock(&g_sink_lock);
    int rc = g_sink ? g_sink(g_sink_ud, inst, json, len, ack, ack_ctx) : 1;
    pthread_rwlock_unlock(&g_sink_lock);
    return rc;
}
