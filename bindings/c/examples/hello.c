/*
 * hello.c: a shmhub host and a guest in two processes.
 *
 * The host creates a segment, reserves a guest entry, starts this same
 * program again as that guest, and sends it two messages: "hello" (small
 * enough to travel inside the descriptor) and 10000 bytes (which travel in
 * a slot). The guest answers each in capitals, and leaves when the host
 * does.
 *
 * Build and run, from the repository's root:
 *
 *   cargo build --release -p shmhub-c
 *   cc bindings/c/examples/hello.c -I bindings/c/include \
 *      -L target/release -lshmhub_c -Wl,-rpath,"$PWD/target/release" -o hello
 *   ./hello
 *
 * The segment is made in /dev/shm (or $SHMHUB_EXAMPLE_DIR).
 */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shmhub.h"

static unsigned char buf[64 * 1024];

static int fail(const char *who) {
    fprintf(stderr, "%s: error: %s\n", who, shmhub_last_error());
    return 1;
}

/* The guest: answers every message in capitals until the host leaves. */
static int guest(const char *path, int id) {
    shmhub_guest *g = shmhub_guest_attach_id(path, (uint8_t)id);
    if (g == NULL) return fail("guest");
    printf("guest %d: attached\n", id);
    int status = 0;
    for (;;) {
        int64_t n = shmhub_guest_recv(g, buf, sizeof buf, -1);
        if (n == SHMHUB_ERR_PEER_GONE) {
            printf("guest %d: the host has left\n", id);
            break;
        }
        if (n < 0) {
            status = fail("guest");
            break;
        }
        for (int64_t i = 0; i < n; i++) buf[i] = (unsigned char)toupper(buf[i]);
        if (shmhub_guest_send(g, buf, (size_t)n, -1) != SHMHUB_OK) {
            status = fail("guest");
            break;
        }
    }
    shmhub_guest_detach(g);
    return status;
}

/* The host. */
int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0); /* the two processes' lines in order */
    if (argc == 4 && strcmp(argv[1], "guest") == 0) return guest(argv[2], atoi(argv[3]));

    const char *dir = getenv("SHMHUB_EXAMPLE_DIR");
    if (dir == NULL) dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    char path[4096];
    snprintf(path, sizeof path, "%s/shmhub-hello-%ld", dir, (long)getpid());

    shmhub_config cfg = {.max_guests = 4, .slot_size = 16 * 1024}; /* the rest: defaults */
    shmhub_host *h = shmhub_host_create(path, &cfg);
    if (h == NULL) return fail("host");
    int id = shmhub_host_reserve_peer(h);
    if (id < 0) return fail("host");
    printf("host: created %s, reserved guest %d\n", path, id);

    /* This program again, as the guest. */
    char id_text[16];
    snprintf(id_text, sizeof id_text, "%d", id);
    pid_t child = fork();
    if (child == 0) {
        execl(argv[0], argv[0], "guest", path, id_text, (char *)NULL);
        perror("exec");
        _exit(127);
    }

    /* Sent before the guest has attached: they wait in its ring. */
    static unsigned char big[10000];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (unsigned char)('a' + i % 26);
    if (shmhub_host_send(h, (uint8_t)id, (const uint8_t *)"hello", 5, -1) != SHMHUB_OK ||
        shmhub_host_send(h, (uint8_t)id, big, sizeof big, -1) != SHMHUB_OK)
        return fail("host");

    int status = 0;
    for (int answers = 0; answers < 2; answers++) {
        uint8_t from = 0;
        int64_t n = shmhub_host_recv(h, &from, buf, sizeof buf, 10000);
        if (n < 0) {
            status = fail("host");
            break;
        }
        printf("host: guest %d answered %lld bytes: \"%.*s%s\"\n", from, (long long)n,
               n > 26 ? 26 : (int)n, (const char *)buf, n > 26 ? "..." : "");
    }

    shmhub_host_destroy(h); /* the guest sees the host leave; the file is removed */
    int child_status = 0;
    waitpid(child, &child_status, 0);
    if (!WIFEXITED(child_status) || WEXITSTATUS(child_status) != 0) status = 1;
    if (status == 0) printf("done\n");
    return status;
}
