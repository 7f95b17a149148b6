/* Every error code a C program can meet, in one process (`errors DIR`,
 * segments made in DIR), with the line shmhub_last_error gives for it;
 * and the calls around them: reservations, reclaims, evictions, sizes,
 * strerror.
 * SHMHUB_ERR_INTERNAL (a caught panic) cannot be caused from C: the
 * crate's Rust tests cover it. */
#define _POSIX_C_SOURCE 200809L
#include <unistd.h>

#include "check.h"

static unsigned char buf[8192];
static char path[4096], other[4096], junk[4096], missing[4096], expected[16384];

static void invalid_arguments(void) {
    CHECK(shmhub_host_create(NULL, NULL) == NULL);
    CHECK_LAST(SHMHUB_ERR_INVALID, "path is NULL");
    CHECK(shmhub_host_create("", NULL) == NULL);
    CHECK_LAST(SHMHUB_ERR_INVALID, "path is empty");
    CHECK(shmhub_guest_attach(NULL) == NULL);
    CHECK_LAST(SHMHUB_ERR_INVALID, "path is NULL");

    shmhub_config bad = {.ring_capacity = 3};
    CHECK(shmhub_host_create(path, &bad) == NULL);
    snprintf(expected, sizeof expected, "%s: invalid ring_capacity = 3: must be a power of two in 2..=65536", path);
    CHECK_LAST(SHMHUB_ERR_INVALID, expected);
    CHECK(access(path, F_OK) != 0);

    CHECK_EQ(shmhub_host_send(NULL, 1, buf, 1, 0), SHMHUB_ERR_INVALID);
    CHECK_LAST(SHMHUB_ERR_INVALID, "host is NULL");
    CHECK_EQ(shmhub_host_recv(NULL, NULL, buf, 1, 0), SHMHUB_ERR_INVALID);
    CHECK_EQ(shmhub_host_recv_from(NULL, 1, buf, 1, 0), SHMHUB_ERR_INVALID);
    CHECK_EQ(shmhub_host_reserve_peer(NULL), SHMHUB_ERR_INVALID);
    CHECK_EQ(shmhub_host_release_peer(NULL, 1), SHMHUB_ERR_INVALID);
    CHECK_EQ(shmhub_host_reclaim_dead(NULL), SHMHUB_ERR_INVALID);
    CHECK_EQ(shmhub_host_evict(NULL, 1), SHMHUB_ERR_INVALID);
    CHECK_EQ(shmhub_host_config(NULL, NULL), SHMHUB_ERR_INVALID);
    CHECK_EQ(shmhub_guest_send(NULL, buf, 1, 0), SHMHUB_ERR_INVALID);
    CHECK_LAST(SHMHUB_ERR_INVALID, "guest is NULL");
    CHECK_EQ(shmhub_guest_recv(NULL, buf, 1, 0), SHMHUB_ERR_INVALID);
    CHECK_EQ(shmhub_guest_peer_id(NULL), SHMHUB_ERR_INVALID);
    CHECK_EQ(shmhub_guest_config(NULL, NULL), SHMHUB_ERR_INVALID);
    /* Freeing NULL does nothing. */
    shmhub_host_destroy(NULL);
    shmhub_guest_detach(NULL);
}

static void files(void) {
    /* No such directory, no such file, a file that is not a segment. */
    CHECK(shmhub_host_create(missing, NULL) == NULL);
    snprintf(expected, sizeof expected, "%s: No such file or directory (os error 2)", missing);
    CHECK_LAST(SHMHUB_ERR_IO, expected);
    CHECK(shmhub_guest_attach(missing) == NULL);
    CHECK_LAST(SHMHUB_ERR_IO, expected);

    FILE *f = fopen(junk, "wb");
    CHECK(f != NULL);
    memset(buf, 0xab, sizeof buf);
    CHECK_EQ(fwrite(buf, 1, sizeof buf, f), sizeof buf);
    CHECK_EQ(fclose(f), 0);
    CHECK(shmhub_guest_attach(junk) == NULL);
    snprintf(expected, sizeof expected, "%s: not a shmhub segment (magic 0xabababababababab)", junk);
    CHECK_LAST(SHMHUB_ERR_CORRUPT, expected);
    CHECK_EQ(unlink(junk), 0);
}

static void sizes(shmhub_host *h) {
    shmhub_config got;
    CHECK_EQ(shmhub_host_config(h, NULL), SHMHUB_ERR_INVALID);
    CHECK_LAST(SHMHUB_ERR_INVALID, "cfg_out is NULL");
    CHECK_EQ(shmhub_host_config(h, &got), SHMHUB_OK);
    CHECK_EQ(got.max_guests, 1);
    CHECK_EQ(got.ring_capacity, 4);
    CHECK_EQ(got.slot_size, 4096);
    CHECK_EQ(got.slots_per_pool, 2);
    CHECK_EQ(got.max_payload, 4096); /* 0: slot_size */
    CHECK_EQ(got.heartbeat_interval_ms, 0);
    shmhub_config d = shmhub_config_default();
    CHECK_EQ(d.max_guests, 8);
    CHECK_EQ(d.ring_capacity, 256);
    CHECK_EQ(d.max_payload, 65536);
}

/* A host with one guest entry, rings of 4 and 2 slots of 4 KiB. */
static void one_guest(void) {
    shmhub_config cfg = {.max_guests = 1, .ring_capacity = 4, .slot_size = 4096,
                         .slots_per_pool = 2};
    shmhub_host *h = shmhub_host_create(path, &cfg);
    CHECK(h != NULL);
    sizes(h);

    /* The file exists now. */
    CHECK(shmhub_host_create(path, NULL) == NULL);
    snprintf(expected, sizeof expected,
             "%s: already exists: a shmhub segment in use (its host, pid %d, is alive): "
             "`shmhub rm %s` asks everyone to leave and removes it (or "
             "`shmhub::admin::remove_segment`)",
             path, (int)getpid(), path);
    CHECK_LAST(SHMHUB_ERR_IO, expected);

    /* Nobody attached as guest 1 yet; there is no guest 2. */
    CHECK_EQ(shmhub_host_send(h, 1, (const uint8_t *)"x", 1, 0), SHMHUB_ERR_BUSY);
    snprintf(expected, sizeof expected, "%s: peer 1 is empty, not attached or reserved", path);
    CHECK_LAST(SHMHUB_ERR_BUSY, expected);
    CHECK_EQ(shmhub_host_recv_from(h, 1, buf, sizeof buf, 0), SHMHUB_ERR_BUSY);
    CHECK_EQ(shmhub_host_send(h, 2, (const uint8_t *)"x", 1, 0), SHMHUB_ERR_INVALID);
    snprintf(expected, sizeof expected,
             "%s: peer id 2 is out of range (this segment has guests 1..=1)", path);
    CHECK_LAST(SHMHUB_ERR_INVALID, expected);
    CHECK_EQ(shmhub_host_send(h, 0, (const uint8_t *)"x", 1, 0), SHMHUB_ERR_INVALID);
    CHECK_EQ(shmhub_host_recv_from(h, 0, buf, sizeof buf, 0), SHMHUB_ERR_INVALID);
    CHECK_EQ(shmhub_host_release_peer(h, 1), SHMHUB_ERR_BUSY);

    shmhub_guest *g = shmhub_guest_attach(path);
    CHECK(g != NULL);
    CHECK_EQ(shmhub_guest_peer_id(g), 1);

    /* The only entry is taken. */
    CHECK(shmhub_guest_attach(path) == NULL);
    snprintf(expected, sizeof expected, "%s: hub is full: the 1 guest entry is taken", path);
    CHECK_LAST(SHMHUB_ERR_BUSY, expected);
    CHECK_EQ(shmhub_host_reserve_peer(h), SHMHUB_ERR_BUSY);
    CHECK(shmhub_guest_attach_id(path, 1) == NULL);
    snprintf(expected, sizeof expected, "%s: peer 1 is attached, not reserved", path);
    CHECK_LAST(SHMHUB_ERR_BUSY, expected);
    CHECK_EQ(shmhub_host_reclaim_dead(h), 0);

    /* Arguments. */
    CHECK_EQ(shmhub_host_send(h, 1, NULL, 1, 0), SHMHUB_ERR_INVALID);
    CHECK_LAST(SHMHUB_ERR_INVALID, "data (with a len above 0) is NULL");
    CHECK_EQ(shmhub_guest_recv(g, NULL, 1, 0), SHMHUB_ERR_INVALID);
    CHECK_LAST(SHMHUB_ERR_INVALID, "buf (with a cap above 0) is NULL");
    CHECK_EQ(shmhub_guest_send(g, buf, 1, -2), SHMHUB_ERR_INVALID);
    CHECK_LAST_HAS(SHMHUB_ERR_INVALID, "timeout_ms is -2");
    CHECK_EQ(shmhub_host_recv(h, NULL, buf, 1, -5), SHMHUB_ERR_INVALID);

    /* Too large for the segment. */
    CHECK_EQ(shmhub_host_send(h, 1, buf, 4097, 0), SHMHUB_ERR_TOO_LARGE);
    snprintf(expected, sizeof expected,
             "%s: payload of 4097 bytes exceeds the max payload of 4096 bytes", path);
    CHECK_LAST(SHMHUB_ERR_TOO_LARGE, expected);
    CHECK_EQ(shmhub_guest_send(g, buf, 4097, -1), SHMHUB_ERR_TOO_LARGE);

    /* Full: the host's two slots, then the ring of four. */
    CHECK_EQ(shmhub_host_send(h, 1, buf, 1000, 0), SHMHUB_OK);
    CHECK_EQ(shmhub_host_send(h, 1, buf, 1000, 0), SHMHUB_OK);
    CHECK_EQ(shmhub_host_send(h, 1, buf, 1000, 0), SHMHUB_ERR_FULL);
    CHECK_LAST_HAS(SHMHUB_ERR_FULL, path);
    long long start = now_ms();
    CHECK_EQ(shmhub_host_send(h, 1, buf, 1000, 30), SHMHUB_ERR_FULL);
    CHECK(now_ms() - start >= 29);
    CHECK_EQ(shmhub_host_send(h, 1, (const uint8_t *)"a", 1, 0), SHMHUB_OK);
    CHECK_EQ(shmhub_host_send(h, 1, (const uint8_t *)"b", 1, 0), SHMHUB_OK);
    CHECK_EQ(shmhub_host_send(h, 1, (const uint8_t *)"c", 1, 0), SHMHUB_ERR_FULL);
    snprintf(expected, sizeof expected, "%s: host-to-guest ring of peer 1 is full", path);
    CHECK_LAST(SHMHUB_ERR_FULL, expected);
    for (int i = 0; i < 2; i++) CHECK_EQ(shmhub_guest_recv(g, buf, sizeof buf, 0), 1000);
    CHECK_EQ(shmhub_guest_recv(g, buf, sizeof buf, 0), 1);
    CHECK_EQ(buf[0], 'a');
    CHECK_EQ(shmhub_guest_recv(g, buf, sizeof buf, 0), 1);
    CHECK_EQ(buf[0], 'b');

    /* Nothing queued either way. */
    CHECK_EQ(shmhub_guest_recv(g, buf, sizeof buf, 0), SHMHUB_ERR_TIMED_OUT);
    snprintf(expected, sizeof expected, "%s: timed out", path);
    CHECK_LAST(SHMHUB_ERR_TIMED_OUT, expected);
    CHECK_EQ(shmhub_host_recv(h, NULL, buf, sizeof buf, 0), SHMHUB_ERR_TIMED_OUT);
    CHECK_LAST(SHMHUB_ERR_TIMED_OUT, expected);
    CHECK_EQ(shmhub_host_recv_from(h, 1, buf, sizeof buf, 20), SHMHUB_ERR_TIMED_OUT);

    /* Buffers too small, on both sides: the message stays first in line. */
    unsigned char big[3000];
    fill(big, sizeof big, 3);
    CHECK_EQ(shmhub_host_send(h, 1, big, sizeof big, 0), SHMHUB_OK);
    CHECK_EQ(shmhub_host_send(h, 1, (const uint8_t *)"next", 4, 0), SHMHUB_OK);
    CHECK_EQ(shmhub_guest_recv(g, buf, 10, 0), SHMHUB_ERR_BUFFER_TOO_SMALL);
    snprintf(expected, sizeof expected,
             "%s: the message from the host is 3000 bytes, more than the buffer's 10; it stays queued",
             path);
    CHECK_LAST(SHMHUB_ERR_BUFFER_TOO_SMALL, expected);
    CHECK_EQ(shmhub_guest_recv(g, buf, 2999, 0), SHMHUB_ERR_BUFFER_TOO_SMALL);
    CHECK_EQ(shmhub_guest_recv(g, NULL, 0, 0), 3000);
    CHECK_EQ(shmhub_guest_recv(g, NULL, 0, -1), 3000);
    CHECK_EQ(shmhub_guest_recv(g, buf, 3000, 0), 3000);
    CHECK(matches(buf, 3000, 3));
    CHECK_EQ(shmhub_guest_recv(g, buf, 4, 0), 4);
    CHECK(memcmp(buf, "next", 4) == 0);

    fill(big, sizeof big, 5);
    CHECK_EQ(shmhub_guest_send(g, big, sizeof big, 0), SHMHUB_OK);
    CHECK_EQ(shmhub_guest_send(g, NULL, 0, 0), SHMHUB_OK); /* empty */
    uint8_t peer = 0;
    CHECK_EQ(shmhub_host_recv(h, &peer, buf, 100, 0), SHMHUB_ERR_BUFFER_TOO_SMALL);
    CHECK_EQ(peer, 1);
    snprintf(expected, sizeof expected,
             "%s: the message from peer 1 is 3000 bytes, more than the buffer's 100; it stays queued",
             path);
    CHECK_LAST(SHMHUB_ERR_BUFFER_TOO_SMALL, expected);
    CHECK_EQ(shmhub_host_recv_from(h, 1, NULL, 0, 0), 3000);
    peer = 0;
    CHECK_EQ(shmhub_host_recv(h, &peer, NULL, 0, 0), 3000);
    CHECK_EQ(peer, 1);
    CHECK_EQ(shmhub_host_recv(h, &peer, buf, sizeof buf, 0), 3000);
    CHECK(matches(buf, 3000, 5));
    CHECK_EQ(shmhub_host_recv_from(h, 1, buf, 0, 0), 0); /* the empty one */
    CHECK_EQ(shmhub_host_recv_from(h, 1, buf, sizeof buf, 0), SHMHUB_ERR_TIMED_OUT);

    /* A message kept for a short buffer is freed with its handle. */
    CHECK_EQ(shmhub_host_send(h, 1, big, sizeof big, 0), SHMHUB_OK);
    CHECK_EQ(shmhub_guest_recv(g, NULL, 0, 0), 3000);

    /* The host leaves: the guest is told, receiving and sending. */
    shmhub_host_destroy(h);
    CHECK(access(path, F_OK) != 0); /* the file is removed */
    /* What the host sent before leaving comes first. */
    CHECK_EQ(shmhub_guest_recv(g, buf, sizeof buf, -1), 3000);
    CHECK_EQ(shmhub_guest_recv(g, buf, sizeof buf, -1), SHMHUB_ERR_PEER_GONE);
    snprintf(expected, sizeof expected, "%s: the host has left the segment", path);
    CHECK_LAST(SHMHUB_ERR_PEER_GONE, expected);
    CHECK_EQ(shmhub_guest_send(g, (const uint8_t *)"x", 1, 0), SHMHUB_ERR_PEER_GONE);
    shmhub_guest_detach(g);
}

/* Guests that leave, and guests the host reserved an entry for. */
static void leaving_and_reserving(void) {
    shmhub_host *h = shmhub_host_create(other, NULL);
    CHECK(h != NULL);
    shmhub_guest *g = shmhub_guest_attach(other);
    CHECK(g != NULL);
    int id = shmhub_guest_peer_id(g);
    CHECK_EQ(id, 1);
    CHECK_EQ(shmhub_guest_send(g, (const uint8_t *)"last words", 10, 0), SHMHUB_OK);
    shmhub_guest_detach(g);
    /* What the guest sent before leaving comes first, then its leaving. */
    CHECK_EQ(shmhub_host_recv_from(h, (uint8_t)id, buf, sizeof buf, 1000), 10);
    CHECK(memcmp(buf, "last words", 10) == 0);
    CHECK_EQ(shmhub_host_recv_from(h, (uint8_t)id, buf, sizeof buf, 1000), SHMHUB_ERR_PEER_GONE);
    snprintf(expected, sizeof expected, "%s: peer 1 has left the segment", other);
    CHECK_LAST(SHMHUB_ERR_PEER_GONE, expected);
    /* A send to the entry it left, empty again, says it left, as the
     * receive does. */
    CHECK_EQ(shmhub_host_send(h, (uint8_t)id, (const uint8_t *)"x", 1, 0), SHMHUB_ERR_PEER_GONE);
    snprintf(expected, sizeof expected, "%s: peer 1 has left the segment", other);
    CHECK_LAST(SHMHUB_ERR_PEER_GONE, expected);

    /* A reserved entry: sent to before its guest comes. */
    int reserved = shmhub_host_reserve_peer(h);
    CHECK(reserved >= 1 && reserved <= 8);
    CHECK_EQ(shmhub_host_send(h, (uint8_t)reserved, (const uint8_t *)"welcome", 7, 0), SHMHUB_OK);
    shmhub_guest *r = shmhub_guest_attach_id(other, (uint8_t)reserved);
    CHECK(r != NULL);
    CHECK_EQ(shmhub_guest_peer_id(r), reserved);
    CHECK_EQ(shmhub_guest_recv(r, buf, sizeof buf, 1000), 7);
    CHECK(memcmp(buf, "welcome", 7) == 0);
    int released = shmhub_host_reserve_peer(h);
    CHECK(released >= 1 && released != reserved);
    CHECK_EQ(shmhub_host_release_peer(h, (uint8_t)released), SHMHUB_OK);
    CHECK_EQ(shmhub_host_release_peer(h, (uint8_t)released), SHMHUB_ERR_BUSY);
    shmhub_guest_detach(r);
    shmhub_host_destroy(h);
    CHECK(access(other, F_OK) != 0);
}

/* A guest the host evicts (here, in the same process: tests/c/evict.c does
 * it across two): every call to it, from it and its own is cut off. */
static void evicting(void) {
    shmhub_host *h = shmhub_host_create(other, NULL);
    CHECK(h != NULL);
    CHECK_EVICT_REFUSED(h, 1, other);
    CHECK_EQ(shmhub_host_evict(h, 9), SHMHUB_ERR_INVALID);
    snprintf(expected, sizeof expected,
             "%s: peer id 9 is out of range (this segment has guests 1..=8)", other);
    CHECK_LAST(SHMHUB_ERR_INVALID, expected);

    shmhub_guest *g = shmhub_guest_attach(other);
    CHECK(g != NULL);
    CHECK_EQ(shmhub_guest_send(g, (const uint8_t *)"queued", 6, 0), SHMHUB_OK);
    /* This process holds the guest: its entry waits until it is gone. */
    CHECK_EQ(shmhub_host_evict(h, 1), 0);
    snprintf(expected, sizeof expected, "%s: peer 1 is cut off: evicted by the host", other);
    CHECK_EQ(shmhub_guest_send(g, (const uint8_t *)"x", 1, 0), SHMHUB_ERR_CUT_OFF);
    CHECK_LAST(SHMHUB_ERR_CUT_OFF, expected);
    CHECK_EQ(shmhub_guest_recv(g, buf, sizeof buf, 0), SHMHUB_ERR_CUT_OFF);
    CHECK_LAST(SHMHUB_ERR_CUT_OFF, expected);
    CHECK_EQ(shmhub_host_send(h, 1, (const uint8_t *)"x", 1, 0), SHMHUB_ERR_CUT_OFF);
    CHECK_LAST(SHMHUB_ERR_CUT_OFF, expected);
    /* What it sent before is not received either. */
    CHECK_EQ(shmhub_host_recv_from(h, 1, buf, sizeof buf, 0), SHMHUB_ERR_CUT_OFF);
    CHECK_LAST(SHMHUB_ERR_CUT_OFF, expected);
    CHECK_EQ(shmhub_host_recv(h, NULL, buf, sizeof buf, 0), SHMHUB_ERR_TIMED_OUT);
    shmhub_guest_detach(g);
    shmhub_host_destroy(h);
    CHECK(access(other, F_OK) != 0);
}

static void descriptions(void) {
    int codes[] = {SHMHUB_OK, SHMHUB_ERR_TIMED_OUT, SHMHUB_ERR_FULL, SHMHUB_ERR_PEER_GONE,
                   SHMHUB_ERR_TOO_LARGE, SHMHUB_ERR_BUFFER_TOO_SMALL, SHMHUB_ERR_INVALID,
                   SHMHUB_ERR_BUSY, SHMHUB_ERR_CORRUPT, SHMHUB_ERR_IO, SHMHUB_ERR_INTERNAL,
                   SHMHUB_ERR_CUT_OFF};
    size_t n = sizeof codes / sizeof codes[0];
    for (size_t i = 0; i < n; i++) {
        CHECK(strcmp(shmhub_strerror(codes[i]), "unknown error code") != 0);
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(shmhub_strerror(codes[i]), shmhub_strerror(codes[j])) != 0);
    }
    CHECK(strcmp(shmhub_strerror(SHMHUB_ERR_TIMED_OUT), "timed out") == 0);
    CHECK(strcmp(shmhub_strerror(SHMHUB_ERR_CUT_OFF), "cut off: the host quarantined this guest") == 0);
    CHECK(strcmp(shmhub_strerror(1), "unknown error code") == 0);
    CHECK(strlen(shmhub_version()) > 0);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: errors DIR\n");
        return 2;
    }
    snprintf(path, sizeof path, "%s/errors.shm", argv[1]);
    snprintf(other, sizeof other, "%s/other.shm", argv[1]);
    snprintf(junk, sizeof junk, "%s/junk.shm", argv[1]);
    snprintf(missing, sizeof missing, "%s/no/such/dir.shm", argv[1]);
    /* Nothing has failed on this thread yet. */
    CHECK_EQ(shmhub_last_error_code(), SHMHUB_OK);
    CHECK(strcmp(shmhub_last_error(), "") == 0);

    invalid_arguments();
    files();
    one_guest();
    leaving_and_reserving();
    evicting();
    descriptions();
    printf("errors ok\n");
    return 0;
}
