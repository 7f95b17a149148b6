/* A host evicts a guest of another process: `evict host PATH` creates
 * the segment, attaches a guest of its own (peer 1) and prints "ready";
 * `evict guest PATH` (started after that) attaches as peer 2 and says
 * hello. The host cuts peer 2 off: its receive and send, and the host's
 * send to it and receive from it, all fail with SHMHUB_ERR_CUT_OFF and
 * the same line, while peer 1 goes on. Once told on standard input that
 * the guest's process has gone ("gone"), the host reclaims its entry
 * (unless a second eviction already freed it). */
#define _POSIX_C_SOURCE 200809L
#include "check.h"

static unsigned char buf[4096];
static char expected[8192];

/* The line of a call refused because peer 2 was evicted. */
static const char *cut_off_line(const char *path) {
    snprintf(expected, sizeof expected, "%s: peer 2 is cut off: evicted by the host", path);
    return expected;
}

static int host(const char *path) {
    shmhub_config cfg = {.max_guests = 2, .ring_capacity = 8, .slot_size = 4096,
                         .slots_per_pool = 4};
    shmhub_host *h = shmhub_host_create(path, &cfg);
    CHECK(h != NULL);
    shmhub_guest *stays = shmhub_guest_attach(path);
    CHECK(stays != NULL);
    CHECK_EQ(shmhub_guest_peer_id(stays), 1);
    printf("ready\n");
    fflush(stdout);

    uint8_t peer = 0;
    CHECK_EQ(shmhub_host_recv(h, &peer, buf, sizeof buf, 10000), 5);
    CHECK(memcmp(buf, "hello", 5) == 0);
    CHECK_EQ(peer, 2);

    /* Its process lives (it waits in a receive): the entry is kept. */
    CHECK_EQ(shmhub_host_evict(h, 2), 0);
    CHECK_EQ(shmhub_host_send(h, 2, (const uint8_t *)"x", 1, 0), SHMHUB_ERR_CUT_OFF);
    CHECK_LAST(SHMHUB_ERR_CUT_OFF, cut_off_line(path));
    CHECK_EQ(shmhub_host_recv_from(h, 2, buf, sizeof buf, 0), SHMHUB_ERR_CUT_OFF);
    CHECK_LAST(SHMHUB_ERR_CUT_OFF, cut_off_line(path));
    /* Evicting it again only tries to free the entry: 0 while the guest's
     * process lives, 1 if it has already seen the eviction and ended (the
     * two processes race here; either is right). */
    int freed_early = shmhub_host_evict(h, 2);
    CHECK(freed_early == 0 || freed_early == 1);

    /* Peer 1 goes on, both ways. */
    CHECK_EQ(shmhub_guest_send(stays, (const uint8_t *)"still here", 10, 1000), SHMHUB_OK);
    peer = 0;
    CHECK_EQ(shmhub_host_recv(h, &peer, buf, sizeof buf, 10000), 10);
    CHECK_EQ(peer, 1);
    CHECK(memcmp(buf, "still here", 10) == 0);
    CHECK_EQ(shmhub_host_send(h, 1, (const uint8_t *)"so is the host", 14, 1000), SHMHUB_OK);
    CHECK_EQ(shmhub_guest_recv(stays, buf, sizeof buf, 10000), 14);
    CHECK(memcmp(buf, "so is the host", 14) == 0);

    /* The guest's process has gone: its entry is freed, and empty. */
    char line[16];
    CHECK(fgets(line, sizeof line, stdin) != NULL);
    CHECK(strcmp(line, "gone\n") == 0);
    CHECK_EQ(shmhub_host_reclaim_dead(h), freed_early ? 0 : 1);
    CHECK_EVICT_REFUSED(h, 2, path);
    shmhub_guest *successor = shmhub_guest_attach(path);
    CHECK(successor != NULL);
    CHECK_EQ(shmhub_guest_peer_id(successor), 2);
    CHECK_EQ(shmhub_guest_recv(successor, buf, sizeof buf, 0), SHMHUB_ERR_TIMED_OUT);

    shmhub_guest_detach(successor);
    shmhub_guest_detach(stays);
    shmhub_host_destroy(h);
    printf("host ok\n");
    return 0;
}

static int guest(const char *path) {
    shmhub_guest *g = shmhub_guest_attach(path);
    CHECK(g != NULL);
    CHECK_EQ(shmhub_guest_peer_id(g), 2);
    CHECK_EQ(shmhub_guest_send(g, (const uint8_t *)"hello", 5, 1000), SHMHUB_OK);

    /* Waiting as long as it takes: the eviction ends the wait. */
    CHECK_EQ(shmhub_guest_recv(g, buf, sizeof buf, -1), SHMHUB_ERR_CUT_OFF);
    CHECK_LAST(SHMHUB_ERR_CUT_OFF, cut_off_line(path));
    CHECK_EQ(shmhub_guest_send(g, (const uint8_t *)"after", 5, -1), SHMHUB_ERR_CUT_OFF);
    CHECK_LAST(SHMHUB_ERR_CUT_OFF, cut_off_line(path));
    CHECK_EQ(shmhub_guest_recv(g, buf, sizeof buf, 0), SHMHUB_ERR_CUT_OFF);

    shmhub_guest_detach(g);
    printf("guest ok\n");
    return 0;
}

HOST_AND_GUEST_MAIN("evict")
