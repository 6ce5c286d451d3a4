/* Minimal libesmtp client: the SMTP sink's ceiling for the benchmark.
 * usage: smtp_client PORT COUNT THREADS PER_SESSION; prints "<rate> msg/s". */
#include <stddef.h>

#include <libesmtp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static int port, per_session;
static long per_thread;
static const char body[] = "From: <news@example.com>\r\nTo: <a@example.com>\r\n"
                           "Subject: ceiling\r\nMessage-ID: <x@example.com>\r\n"
                           "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\nHello.\r\n";

static void *run(void *arg)
{
    char hp[64];
    snprintf(hp, sizeof hp, "127.0.0.1:%d", port);
    for (long done = 0; done < per_thread;) {
        smtp_session_t s = smtp_create_session();
        smtp_set_server(s, hp);
        for (int i = 0; i < per_session && done < per_thread; i++, done++) {
            smtp_message_t m = smtp_add_message(s);
            smtp_set_reverse_path(m, "news@example.com");
            smtp_add_recipient(m, "a@example.com");
            smtp_set_message_str(m, (void *)body);
        }
        if (!smtp_start_session(s))
            fprintf(stderr, "smtp_client: session failed\n");
        smtp_destroy_session(s);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 5)
        return 2;
    port = atoi(argv[1]);
    long count = atol(argv[2]);
    int threads = atoi(argv[3]);
    per_session = atoi(argv[4]);
    per_thread = count / threads;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    pthread_t t[64];
    for (int i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, run, NULL);
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double s = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
    printf("%.0f\n", per_thread * threads / s);
    return 0;
}
