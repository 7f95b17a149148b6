/* Checks for the C test programs: a failed one prints where, what, and
 * the library's last error, and exits with status 1. */
#ifndef SHMHUB_TEST_CHECK_H
#define SHMHUB_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shmhub.h"

#define FAIL(...)                                                                    \
    do {                                                                             \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                              \
        fprintf(stderr, __VA_ARGS__);                                                \
        fprintf(stderr, " (last error %d: %s)\n", shmhub_last_error_code(),          \
                shmhub_last_error());                                                \
        exit(1);                                                                     \
    } while (0)

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) FAIL("check failed: %s", #cond);                                \
    } while (0)

/* Two integers equal. */
#define CHECK_EQ(got, want)                                                          \
    do {                                                                             \
        long long got_ = (long long)(got), want_ = (long long)(want);                \
        if (got_ != want_) FAIL("%s is %lld, not %lld", #got, got_, want_);          \
    } while (0)

/* The last failure on this thread was `code`, with exactly `text` as its line. */
#define CHECK_LAST(code, text)                                                       \
    do {                                                                             \
        CHECK_EQ(shmhub_last_error_code(), code);                                    \
        if (strcmp(shmhub_last_error(), (text)) != 0)                                \
            FAIL("last error is \"%s\", not \"%s\"", shmhub_last_error(), (text));   \
    } while (0)

/* The last failure on this thread was `code`, its line containing `part`. */
#define CHECK_LAST_HAS(code, part)                                                   \
    do {                                                                             \
        CHECK_EQ(shmhub_last_error_code(), code);                                    \
        if (strstr(shmhub_last_error(), (part)) == NULL)                             \
            FAIL("last error \"%s\" does not say \"%s\"", shmhub_last_error(), (part)); \
    } while (0)

/* Evicting guest `peer` of the segment at `path` is refused: its entry
 * holds no guest to cut off (empty, not attached, goodbye or quarantined).
 * A macro, so that a failure names the line that asked. */
#define CHECK_EVICT_REFUSED(host, peer, path)                                        \
    do {                                                                             \
        char line_[4096 + 128];                                                      \
        CHECK_EQ(shmhub_host_evict((host), (peer)), SHMHUB_ERR_BUSY);                \
        snprintf(line_, sizeof line_,                                                \
                 "%s: peer %d is empty, not attached, goodbye or quarantined",       \
                 (path), (int)(peer));                                               \
        CHECK_LAST(SHMHUB_ERR_BUSY, line_);                                          \
    } while (0)

static inline long long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* `len` bytes of a pattern that differs with `seed`. */
static inline void fill(unsigned char *buf, size_t len, unsigned seed) {
    for (size_t i = 0; i < len; i++) buf[i] = (unsigned char)(i * seed + seed);
}

static inline int matches(const unsigned char *buf, size_t len, unsigned seed) {
    for (size_t i = 0; i < len; i++)
        if (buf[i] != (unsigned char)(i * seed + seed)) return 0;
    return 1;
}

/* The main() of a program run once as the host (`NAME host PATH`) and once
 * as a guest (`NAME guest PATH`) of the segment at PATH: it calls the
 * program's host() or guest(). */
#define HOST_AND_GUEST_MAIN(name)                                                    \
    int main(int argc, char **argv) {                                                \
        if (argc == 3 && strcmp(argv[1], "host") == 0) return host(argv[2]);        \
        if (argc == 3 && strcmp(argv[1], "guest") == 0) return guest(argv[2]);      \
        fprintf(stderr, "usage: " name " host|guest PATH\n");                      \
        return 2;                                                                    \
    }

#endif
