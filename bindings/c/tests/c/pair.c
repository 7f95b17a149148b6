/* A host and a guest in two processes: `pair host PATH` creates the
 * segment and prints "ready"; `pair guest PATH` (started after that)
 * attaches. Between them: inline and slot payloads both ways, a message
 * too large for the buffer kept and received again, timeouts of 0 and
 * of 100 ms on both sides, and the guest's leaving seen by the host. */
#define _POSIX_C_SOURCE 200809L
#include "check.h"

enum { BIG = 10 * 1024, GUEST_SEED = 13, HOST_SEED = 7 };

static unsigned char buf[64 * 1024];
static unsigned char big[BIG];

/* A receive of `timeout_ms` times out, after at least that long. */
#define CHECK_TIMES_OUT(call, timeout_ms)                                            \
    do {                                                                             \
        long long start_ = now_ms();                                                 \
        CHECK_EQ(call, SHMHUB_ERR_TIMED_OUT);                                        \
        CHECK(now_ms() - start_ >= (timeout_ms) - 1);                                \
    } while (0)

static int host(const char *path) {
    shmhub_config cfg = {.max_guests = 2, .ring_capacity = 8, .slot_size = 16384,
                         .slots_per_pool = 8};
    shmhub_host *h = shmhub_host_create(path, &cfg);
    CHECK(h != NULL);
    printf("ready\n");
    fflush(stdout);

    /* The guest's hello, inline, from any guest. */
    uint8_t peer = 0;
    CHECK_EQ(shmhub_host_recv(h, &peer, buf, sizeof buf, 10000), 5);
    CHECK(memcmp(buf, "hello", 5) == 0);
    CHECK(peer >= 1 && peer <= 2);

    /* Inline and slot payloads to the guest. */
    CHECK_EQ(shmhub_host_send(h, peer, (const uint8_t *)"hi", 2, 1000), SHMHUB_OK);
    fill(big, BIG, HOST_SEED);
    CHECK_EQ(shmhub_host_send(h, peer, big, BIG, 1000), SHMHUB_OK);

    /* The guest's slot payload, from it alone, first asking its length. */
    CHECK_EQ(shmhub_host_recv_from(h, peer, NULL, 0, 10000), BIG);
    CHECK_EQ(shmhub_host_recv_from(h, peer, buf, sizeof buf, 0), BIG);
    CHECK(matches(buf, BIG, GUEST_SEED));

    /* Nothing more until the host says bye: timeouts. */
    CHECK_TIMES_OUT(shmhub_host_recv(h, &peer, buf, sizeof buf, 0), 0);
    CHECK_TIMES_OUT(shmhub_host_recv(h, NULL, buf, sizeof buf, 100), 100);
    CHECK_TIMES_OUT(shmhub_host_recv_from(h, peer, buf, sizeof buf, 100), 100);

    CHECK_EQ(shmhub_host_send(h, peer, (const uint8_t *)"bye", 3, 1000), SHMHUB_OK);
    /* The guest detaches on bye: then there is nobody to receive from. */
    CHECK_EQ(shmhub_host_recv_from(h, peer, buf, sizeof buf, 10000), SHMHUB_ERR_PEER_GONE);
    CHECK_LAST_HAS(SHMHUB_ERR_PEER_GONE, "has left the segment");

    shmhub_host_destroy(h);
    printf("host ok\n");
    return 0;
}

static int guest(const char *path) {
    shmhub_guest *g = shmhub_guest_attach(path);
    CHECK(g != NULL);
    CHECK(shmhub_guest_peer_id(g) >= 1);
    shmhub_config cfg;
    CHECK_EQ(shmhub_guest_config(g, &cfg), SHMHUB_OK);
    CHECK_EQ(cfg.max_payload, 16384);

    CHECK_EQ(shmhub_guest_send(g, (const uint8_t *)"hello", 5, 1000), SHMHUB_OK);

    /* Inline. */
    CHECK_EQ(shmhub_guest_recv(g, buf, sizeof buf, 10000), 2);
    CHECK(memcmp(buf, "hi", 2) == 0);

    /* A slot payload into a buffer too small: kept, asked for, received. */
    unsigned char small[100];
    CHECK_EQ(shmhub_guest_recv(g, small, sizeof small, 10000), SHMHUB_ERR_BUFFER_TOO_SMALL);
    CHECK_LAST_HAS(SHMHUB_ERR_BUFFER_TOO_SMALL, "is 10240 bytes, more than the buffer's 100");
    CHECK_EQ(shmhub_guest_recv(g, NULL, 0, 0), BIG);
    CHECK_EQ(shmhub_guest_recv(g, big, BIG, 0), BIG);
    CHECK(matches(big, BIG, HOST_SEED));

    /* Nothing queued: timeouts. */
    CHECK_TIMES_OUT(shmhub_guest_recv(g, buf, sizeof buf, 0), 0);
    CHECK_TIMES_OUT(shmhub_guest_recv(g, buf, sizeof buf, 100), 100);

    /* A slot payload to the host. */
    fill(big, BIG, GUEST_SEED);
    CHECK_EQ(shmhub_guest_send(g, big, BIG, 1000), SHMHUB_OK);

    CHECK_EQ(shmhub_guest_recv(g, buf, sizeof buf, -1), 3);
    CHECK(memcmp(buf, "bye", 3) == 0);
    shmhub_guest_detach(g);
    printf("guest ok\n");
    return 0;
}

HOST_AND_GUEST_MAIN("pair")
