#include "support/cpu.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The CPU seconds a /proc/.../stat file holds (fields 14 and 15, after
 * the command), and its command name when name is not NULL. */
static double stat_cpu(const char *path, char *name, size_t namelen)
{
    char line[1024];
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    double s = 0;
    if (fgets(line, sizeof line, f)) {
        char *l = strchr(line, '('), *r = strrchr(line, ')');
        unsigned long ut = 0, st = 0;
        if (l && r && name)
            snprintf(name, namelen, "%.*s", (int)(r - l - 1), l + 1);
        if (r &&
            sscanf(r + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
            s = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
    }
    fclose(f);
    return s;
}

double cpu_of(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    return stat_cpu(path, NULL, 0);
}

size_t threads_cpu(tcpu *out, size_t max)
{
    size_t n = 0;
    DIR *d = opendir("/proc/self/task");
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char path[300], name[16] = "";
        snprintf(path, sizeof path, "/proc/self/task/%s/stat", de->d_name);
        double s = stat_cpu(path, name, sizeof name);
        size_t i = 0;
        while (i < n && strcmp(out[i].name, name))
            i++;
        if (i == n && n < max) {
            snprintf(out[n].name, sizeof out[0].name, "%s", name);
            out[n++].s = 0;
        }
        if (i < n)
            out[i].s += s;
    }
    if (d)
        closedir(d);
    return n;
}

static int by_cpu(const void *a, const void *b)
{
    double x = ((const tcpu *)a)->s, y = ((const tcpu *)b)->s;
    return x < y ? 1 : x > y ? -1 : 0;
}

void print_threads(const char *phase, const char *unit, const tcpu *before, size_t nb, long count)
{
    tcpu now[64];
    size_t n = threads_cpu(now, 64);
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < nb; k++)
            if (!strcmp(now[i].name, before[k].name))
                now[i].s -= before[k].s;
    qsort(now, n, sizeof *now, by_cpu);
    printf("%s: CPU per %s by thread:", phase, unit);
    const char *sep = " ";
    for (size_t i = 0; i < n; i++)
        if (now[i].s * 1e6 / count >= 0.5) {
            printf("%s%s %.1f us", sep, now[i].name, now[i].s * 1e6 / count);
            sep = ", ";
        }
    printf("\n");
}
