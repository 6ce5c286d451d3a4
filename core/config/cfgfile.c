/* cfgfile — versioned reads and race-checked saves of the files users
 * edit; see cfgfile.h. */
#include "config/cfgfile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libconfig.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/mem.h"

/* One save at a time in this process: the check of the version and the
 * rename are not interleaved with another console save. */
static pthread_mutex_t save_lock = PTHREAD_MUTEX_INITIALIZER;

void cfgfile_version(const char *text, size_t n, char out[CFGFILE_VERSION_LEN])
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a, 64 bits */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)text[i];
        h *= 1099511628211ull;
    }
    h ^= (uint64_t)n * 0x9e3779b97f4a7c15ull;
    snprintf(out, CFGFILE_VERSION_LEN, "%016llx", (unsigned long long)h);
}

int cfgfile_read(const char *path, char **text, size_t *n, char ver[CFGFILE_VERSION_LEN], char *err,
                 size_t errlen)
{
    *text = NULL;
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    size_t cap = 4096, len = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (len + 1 >= cap) {
            if (cap > CFGFILE_MAX) {
                snprintf(err, errlen, "%s: larger than %u bytes", path, CFGFILE_MAX);
                goto fail;
            }
            cap *= 2;
            buf = xrealloc(buf, cap);
        }
        size_t r = fread(buf + len, 1, cap - len - 1, f);
        len += r;
        if (r == 0)
            break;
    }
    if (ferror(f)) {
        snprintf(err, errlen, "%s: read error", path);
        goto fail;
    }
    fclose(f);
    buf[len] = 0;
    *text = buf;
    *n = len;
    if (ver)
        cfgfile_version(buf, len, ver);
    return 0;
fail:
    fclose(f);
    free(buf);
    return -1;
}

static int mkdirs(const char *path, char *err, size_t errlen)
{
    char *p = xstrdup(path);
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == 0) {
            char c = *s;
            *s = 0;
            if (mkdir(p, 0700) != 0 && errno != EEXIST) {
                snprintf(err, errlen, "%s: %s", p, strerror(errno));
                free(p);
                return -1;
            }
            *s = c;
            if (!c)
                break;
        }
    }
    free(p);
    return 0;
}

/* A name that is safe as one path component. */
static int safe_name(const char *s)
{
    if (!s || !*s || !strcmp(s, ".") || !strcmp(s, ".."))
        return 0;
    for (; *s; s++)
        if (*s == '/' || *s == '\\' || (unsigned char)*s < 0x20)
            return 0;
    return 1;
}

static char *versions_dir(const char *data_dir, const char *kind, const char *name)
{
    size_t l = strlen(data_dir) + strlen(kind) + strlen(name) + 16;
    char *d = xmalloc(l);
    snprintf(d, l, "%s/versions/%s/%s", data_dir, kind, name);
    return d;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Write text to path through a temporary file and a rename. */
static int replace_file(const char *path, const char *text, size_t n, mode_t mode, char *err,
                        size_t errlen)
{
    size_t l = strlen(path) + 16;
    char *tmp = xmalloc(l);
    snprintf(tmp, l, "%s.tmp-XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        free(tmp);
        return -1;
    }
    fchmod(fd, mode);
    if (write_all(fd, text, n) != 0 || fsync(fd) != 0) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        free(tmp);
        return -1;
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        unlink(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    return 0;
}

int cfgfile_save(const char *path, const char *data_dir, const char *kind, const char *name,
                 const char *text, size_t n, const char *base, cfgfile_saved *out, char *err,
                 size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!safe_name(kind) || !safe_name(name)) {
        snprintf(err, errlen, "'%s/%s' cannot name a folder of versions", kind, name);
        return -1;
    }
    if (n > CFGFILE_MAX) {
        snprintf(err, errlen, "the text is larger than %u bytes", CFGFILE_MAX);
        return -1;
    }
    pthread_mutex_lock(&save_lock);
    int rc = -1;
    char *old = NULL, *vdir = NULL;
    size_t oldn = 0;
    char oldver[CFGFILE_VERSION_LEN] = "";
    struct stat st;
    mode_t mode = 0644;
    int exists = stat(path, &st) == 0;
    if (exists) {
        mode = st.st_mode & 0777;
        if (cfgfile_read(path, &old, &oldn, oldver, err, errlen) != 0)
            goto done;
    }
    if (base && strcmp(base, exists ? oldver : "") != 0) {
        out->current = old ? old : xstrdup("");
        old = NULL;
        snprintf(out->current_version, sizeof out->current_version, "%s", oldver);
        rc = 1;
        goto done;
    }
    if (exists) {
        vdir = versions_dir(data_dir, kind, name);
        if (mkdirs(vdir, err, errlen) != 0)
            goto done;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        char stamp[40];
        strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%S", &tm);
        /* milliseconds and the old version keep two saves in a second apart */
        snprintf(out->previous, sizeof out->previous, "%s.%03ldZ-%s", stamp, ts.tv_nsec / 1000000,
                 oldver);
        size_t l = strlen(vdir) + strlen(out->previous) + 8;
        char *vp = xmalloc(l);
        snprintf(vp, l, "%s/%s.cfg", vdir, out->previous);
        int r = replace_file(vp, old, oldn, 0600, err, errlen);
        free(vp);
        if (r != 0)
            goto done;
    }
    if (replace_file(path, text, n, mode, err, errlen) != 0)
        goto done;
    cfgfile_version(text, n, out->version);
    rc = 0;
done:
    pthread_mutex_unlock(&save_lock);
    free(old);
    free(vdir);
    return rc;
}

static int cmp_desc(const void *a, const void *b)
{
    return strcmp(*(char *const *)b, *(char *const *)a);
}

json_t *cfgfile_versions(const char *data_dir, const char *kind, const char *name)
{
    json_t *o = json_object(), *arr = json_array();
    json_object_set_new(o, "versions", arr);
    if (!safe_name(kind) || !safe_name(name))
        return o;
    char *vdir = versions_dir(data_dir, kind, name);
    DIR *d = opendir(vdir);
    if (!d) {
        free(vdir);
        return o;
    }
    char **names = NULL;
    size_t nn = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 5 || e->d_name[0] == '.' || strcmp(e->d_name + l - 4, ".cfg"))
            continue;
        if (nn == cap) {
            cap = cap ? cap * 2 : 16;
            names = xrealloc(names, cap * sizeof *names);
        }
        names[nn++] = xstrndup(e->d_name, l - 4);
    }
    closedir(d);
    qsort(names, nn, sizeof *names, cmp_desc);
    for (size_t i = 0; i < nn; i++) {
        json_t *v = json_object();
        json_object_set_new(v, "id", json_string(names[i]));
        /* 20261201T235012.123Z-... -> 2026-12-01T23:50:12.123Z */
        const char *s = names[i];
        char at[32] = "";
        if (strlen(s) >= 20)
            snprintf(at, sizeof at, "%.4s-%.2s-%.2sT%.2s:%.2s:%.2s%.5s", s, s + 4, s + 6, s + 9,
                     s + 11, s + 13, s + 15);
        json_object_set_new(v, "saved_at", json_string(at));
        size_t l = strlen(vdir) + strlen(s) + 8;
        char *p = xmalloc(l);
        snprintf(p, l, "%s/%s.cfg", vdir, s);
        struct stat st;
        json_object_set_new(v, "size",
                            json_integer(stat(p, &st) == 0 ? (json_int_t)st.st_size : 0));
        free(p);
        json_array_append_new(arr, v);
        free(names[i]);
    }
    free(names);
    free(vdir);
    return o;
}

int cfgfile_version_text(const char *data_dir, const char *kind, const char *name, const char *id,
                         char **text, size_t *n, char *err, size_t errlen)
{
    *text = NULL;
    if (!safe_name(kind) || !safe_name(name) || !safe_name(id) || id[0] == '.') {
        snprintf(err, errlen, "no version '%s'", id ? id : "");
        return -1;
    }
    char *vdir = versions_dir(data_dir, kind, name);
    size_t l = strlen(vdir) + strlen(id) + 8;
    char *p = xmalloc(l);
    snprintf(p, l, "%s/%s.cfg", vdir, id);
    free(vdir);
    int rc = 0;
    if (access(p, R_OK) != 0) {
        snprintf(err, errlen, "no version '%s'", id);
        rc = -1;
    } else {
        rc = cfgfile_read(p, text, n, NULL, err, errlen);
    }
    free(p);
    return rc;
}

/* Skip a string, a comment or blanks from text[i]; returns the next index. */
static size_t skip_string(const char *t, size_t i)
{
    for (i++; t[i] && t[i] != '"'; i++)
        if (t[i] == '\\' && t[i + 1])
            i++;
    return t[i] ? i + 1 : i;
}

static size_t skip_comment(const char *t, size_t i)
{
    if (t[i] == '#' || (t[i] == '/' && t[i + 1] == '/')) {
        while (t[i] && t[i] != '\n')
            i++;
        return i;
    }
    if (t[i] == '/' && t[i + 1] == '*') {
        const char *e = strstr(t + i + 2, "*/");
        return e ? (size_t)(e - t) + 2 : strlen(t);
    }
    return i;
}

static int is_ident(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '*';
}

/* Offset of the first character of line (1-based). */
static size_t line_offset(const char *t, int line)
{
    size_t i = 0;
    for (int l = 1; l < line && t[i]; i++)
        if (t[i] == '\n')
            l++;
    return i;
}

int cfgtext_set_channel_enabled(const char *text, const char *channel, int enabled, char **out,
                                char *err, size_t errlen)
{
    *out = NULL;
    config_t lc;
    config_init(&lc);
    int rc = -1;
    if (!config_read_string(&lc, text)) {
        snprintf(err, errlen, "line %d: %s", config_error_line(&lc), config_error_text(&lc));
        goto done;
    }
    config_setting_t *chs = config_lookup(&lc, "channels");
    config_setting_t *g = chs ? config_setting_get_member(chs, channel) : NULL;
    if (!g || !config_setting_is_group(g)) {
        snprintf(err, errlen, "no channel '%s' in the configuration", channel);
        goto done;
    }
    /* libconfig knows the line the group's name is on; find "name" then
     * its '{' from there, outside strings and comments */
    size_t i = line_offset(text, config_setting_source_line(g));
    size_t nl = strlen(channel), open = 0;
    int found = 0;
    while (text[i]) {
        if (text[i] == '"') {
            i = skip_string(text, i);
            continue;
        }
        size_t c = skip_comment(text, i);
        if (c != i) {
            i = c;
            continue;
        }
        if (!found && !strncmp(text + i, channel, nl) && !is_ident(text[i + nl]) &&
            (i == 0 || !is_ident(text[i - 1]))) {
            found = 1;
            i += nl;
            continue;
        }
        if (found && text[i] == '{') {
            open = i;
            break;
        }
        i++;
    }
    if (!open) {
        snprintf(err, errlen, "channel '%s': its group was not found in the text", channel);
        goto done;
    }
    /* the group's own `enabled`, at depth 1 */
    int depth = 0;
    size_t at = 0, vstart = 0, vend = 0;
    for (i = open; text[i]; i++) {
        if (text[i] == '"') {
            i = skip_string(text, i) - 1;
            continue;
        }
        size_t c = skip_comment(text, i);
        if (c != i) {
            i = c - 1;
            continue;
        }
        if (text[i] == '{' || text[i] == '[' || text[i] == '(')
            depth++;
        else if (text[i] == '}' || text[i] == ']' || text[i] == ')') {
            if (--depth == 0)
                break;
        } else if (depth == 1 && !strncmp(text + i, "enabled", 7) && !is_ident(text[i + 7]) &&
                   !is_ident(text[i - 1])) {
            size_t j = i + 7;
            while (text[j] == ' ' || text[j] == '\t')
                j++;
            if (text[j] != '=' && text[j] != ':')
                continue;
            j++;
            while (text[j] == ' ' || text[j] == '\t')
                j++;
            vstart = j;
            while (is_ident(text[j]))
                j++;
            vend = j;
            at = i;
            break;
        }
    }
    const char *val = enabled ? "true" : "false";
    size_t tl = strlen(text);
    if (at) {
        char *o = xmalloc(tl + 8);
        memcpy(o, text, vstart);
        strcpy(o + vstart, val);
        strcpy(o + vstart + strlen(val), text + vend);
        *out = o;
    } else {
        char ins[32];
        snprintf(ins, sizeof ins, " enabled = %s;", val);
        char *o = xmalloc(tl + sizeof ins);
        memcpy(o, text, open + 1);
        strcpy(o + open + 1, ins);
        strcpy(o + open + 1 + strlen(ins), text + open + 1);
        *out = o;
    }
    rc = 0;
done:
    config_destroy(&lc);
    return rc;
}

int cfgfile_scratch(const char *path, const char *text, size_t n, char **tmp, char *err,
                    size_t errlen)
{
    *tmp = NULL;
    const char *slash = strrchr(path, '/');
    size_t dl = slash ? (size_t)(slash - path) + 1 : 0;
    const char *base = slash ? slash + 1 : path;
    size_t l = dl + strlen(base) + 24;
    char *p = xmalloc(l);
    snprintf(p, l, "%.*s.%s.check-XXXXXX", (int)dl, path, base);
    int fd = mkstemp(p);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", p, strerror(errno));
        free(p);
        return -1;
    }
    if (write_all(fd, text, n) != 0) {
        snprintf(err, errlen, "%s: %s", p, strerror(errno));
        close(fd);
        unlink(p);
        free(p);
        return -1;
    }
    close(fd);
    *tmp = p;
    return 0;
}
