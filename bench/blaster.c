/* blaster: the trivial sender that wsload's own receive cost is measured against. It accepts
 * WebSocket clients, acks whatever they send, and writes pre-framed wsload-marked messages
 * (publisher 0, seq 1, 2, ...) to every client as fast as the kernel takes them, framed once
 * per batch. No parsing beyond the handshake, no queues: nothing in it can be the bottleneck
 * before wsload is.
 *   blaster PORT [SIZE]   then: wsload fanout --publishers 1 --rate 0.001 ws://127.0.0.1:PORT/ */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ws_frame.h"
#include "ws_handshake.h"

#define MAX_CLIENTS 20000
#define BATCH 64

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Answers the upgrade on a fresh blocking socket; 0 on success. */
static int handshake(int fd)
{
    char req[8192];
    size_t n = 0;
    while (n < sizeof req - 1) {
        ssize_t r = read(fd, req + n, sizeof req - 1 - n);
        if (r <= 0)
            return -1;
        n += (size_t)r;
        req[n] = '\0';
        if (strstr(req, "\r\n\r\n"))
            break;
    }
    char *k = strcasestr(req, "Sec-WebSocket-Key:");
    if (!k)
        return -1;
    k += 18;
    while (*k == ' ')
        k++;
    char accept[WS_ACCEPT_LEN + 1], resp[256];
    ws_handshake_accept(k, strcspn(k, "\r\n"), accept);
    size_t rn = ws_handshake_response(resp, sizeof resp, accept, strstr(req, "ws.json.v1") ? "ws.json.v1" : NULL);
    return write(fd, resp, rn) == (ssize_t)rn ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: blaster PORT [SIZE]\n");
        return 2;
    }
    int size = argc > 2 ? atoi(argv[2]) : 64;
    int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 4096) < 0) {
        perror("blaster");
        return 1;
    }
    static struct pollfd pf[MAX_CLIENTS + 1];
    int n = 0;
    pf[0] = (struct pollfd){.fd = lfd, .events = POLLIN};
    static uint8_t batch[BATCH * 1024];
    uint64_t seq = 0;
    for (;;) {
        /* A batch of frames, each one framed once and written to every client. */
        size_t len = 0;
        for (int i = 0; i < BATCH; i++) {
            char body[1024];
            int bn = snprintf(body, sizeof body, "{\"op\":\"msg\",\"ch\":\"ch.0\",\"seq\":%llu,\"data\":\"wsl:0:%llu:%llu:",
                              (unsigned long long)seq + 1, (unsigned long long)seq + 1,
                              (unsigned long long)now_ns());
            while (bn < size + 40 && bn < (int)sizeof body - 3)
                body[bn++] = 'x';
            body[bn++] = '"';
            body[bn++] = '}';
            len += ws_frame_header(batch + len, WS_OP_TEXT, true, false, (uint64_t)bn, NULL);
            memcpy(batch + len, body, (size_t)bn);
            len += (size_t)bn;
            seq++;
        }
        int timeout = n ? 0 : -1;
        if (poll(pf, (nfds_t)n + 1, timeout) > 0) {
            if (pf[0].revents & POLLIN && n < MAX_CLIENTS) {
                int fd = accept(lfd, NULL, NULL);
                if (fd >= 0 && handshake(fd) == 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    pf[++n] = (struct pollfd){.fd = fd, .events = POLLIN};
                    /* The subscriber's "sub" gets its ack once it arrives (read below). */
                } else if (fd >= 0) {
                    close(fd);
                }
            }
            for (int i = 1; i <= n; i++) {
                if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
                    continue;
                uint8_t junk[4096];
                ssize_t r = read(pf[i].fd, junk, sizeof junk);
                if (r <= 0) {
                    close(pf[i].fd);
                    pf[i--] = pf[n--];
                    continue;
                }
                static const uint8_t ack[] = "\x81\x0c{\"op\":\"ack\"}";
                if (write(pf[i].fd, ack, sizeof ack - 1) < 0) {
                }
            }
        }
        /* Blocking writes: a client whose buffer is full holds the loop until it reads, which
         * keeps every client in step with the fastest rate wsload can take. */
        for (int i = 1; i <= n; i++) {
            size_t off = 0;
            while (off < len) {
                ssize_t w = send(pf[i].fd, batch + off, len - off, MSG_NOSIGNAL);
                if (w < 0 && errno == EINTR)
                    continue;
                if (w <= 0)
                    break;
                off += (size_t)w;
            }
        }
    }
}
